// The PostgreSQL schema: versioned migrations, applied in order in one
// transaction under an advisory lock (postgres_store.cc). Never edit a
// released step: add a new one. It matches the SQLite schema after all of
// its migrations (there were no PostgreSQL deployments before). Text keys
// compare bytewise (COLLATE "C"), as SQLite's do, so listings and cursors
// order the same on both.
#include "broker/store/postgres/postgres_store_internal.h"

namespace simprov::pg_internal {

const char* const kMigrations[] = {
    // 1: the whole schema.
    R"sql(
CREATE TABLE subscribers (
  imsi         TEXT COLLATE "C" PRIMARY KEY,
  sealed_keys  BYTEA NOT NULL,
  amf          BYTEA NOT NULL,
  sqn_seq      BIGINT NOT NULL,
  sqn_ind      BIGINT NOT NULL,
  last_sqn     BIGINT NOT NULL DEFAULT 0,
  group_name   TEXT COLLATE "C" NOT NULL,
  iccid        TEXT NOT NULL DEFAULT '',
  msisdn       TEXT NOT NULL DEFAULT '',
  status       TEXT NOT NULL DEFAULT 'active',
  device_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
  created_at   BIGINT NOT NULL,
  updated_at   BIGINT NOT NULL,
  imei         TEXT NOT NULL DEFAULT '',
  last_seen    BIGINT NOT NULL DEFAULT 0,
  replaced_by  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX subscribers_group ON subscribers (group_name, imsi);
CREATE INDEX subscribers_device ON subscribers (device_id);
CREATE TABLE certificates (
  serial             TEXT COLLATE "C" PRIMARY KEY,
  imsi               TEXT COLLATE "C" NOT NULL REFERENCES subscribers (imsi),
  device_id          TEXT NOT NULL,
  not_before         BIGINT NOT NULL,
  not_after          BIGINT NOT NULL,
  der                BYTEA NOT NULL,
  status             TEXT NOT NULL DEFAULT 'valid',
  issued_at          BIGINT NOT NULL,
  revocation_reason  TEXT NOT NULL DEFAULT '',
  revoked_at         BIGINT NOT NULL DEFAULT 0,
  renewed_from       TEXT COLLATE "C" NOT NULL DEFAULT '',
  superseded_at      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX certificates_imsi ON certificates (imsi, issued_at);
CREATE INDEX certificates_status ON certificates (status, not_after);
CREATE INDEX certificates_renewed_from ON certificates (renewed_from);
CREATE INDEX certificates_superseded ON certificates (superseded_at, status);
CREATE TABLE certificate_sha256 (
  serial  TEXT COLLATE "C" PRIMARY KEY,
  sha256  BYTEA NOT NULL
);
CREATE INDEX certificate_sha256_hash ON certificate_sha256 (sha256);
CREATE TABLE groups (
  name        TEXT COLLATE "C" PRIMARY KEY,
  policy      TEXT NOT NULL,
  updated_at  BIGINT NOT NULL
);
CREATE TABLE crl_state (
  id          INTEGER PRIMARY KEY,
  crl_number  BIGINT NOT NULL
);
INSERT INTO crl_state (id, crl_number) VALUES (1, 0);
CREATE TABLE audit (
  id      BIGSERIAL PRIMARY KEY,
  at      BIGINT NOT NULL,
  actor   TEXT COLLATE "C" NOT NULL,
  action  TEXT NOT NULL,
  target  TEXT COLLATE "C" NOT NULL DEFAULT '',
  result  TEXT NOT NULL DEFAULT '',
  reason  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_target ON audit (target, id);
CREATE INDEX audit_at ON audit (at, id);
CREATE FUNCTION simprov_audit_append_only() RETURNS trigger
  LANGUAGE plpgsql AS $$
  BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION simprov_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION simprov_audit_append_only();
CREATE TABLE token_apps (
  name        TEXT COLLATE "C" PRIMARY KEY,
  key_hash    BYTEA NOT NULL,
  created_at  BIGINT NOT NULL
);
CREATE TABLE token_revocations (
  jti         TEXT PRIMARY KEY,
  revoked_at  BIGINT NOT NULL
);
CREATE INDEX token_revocations_at ON token_revocations (revoked_at);
CREATE TABLE token_device_revocations (
  imsi        TEXT PRIMARY KEY,
  revoked_at  BIGINT NOT NULL
);
CREATE TABLE registry_outbox (
  id               BIGSERIAL PRIMARY KEY,
  registry         TEXT NOT NULL,
  kind             TEXT NOT NULL,
  serial           TEXT COLLATE "C" NOT NULL,
  imsi             TEXT NOT NULL,
  device_id        TEXT NOT NULL,
  payload          TEXT NOT NULL,
  created_at       BIGINT NOT NULL,
  state            TEXT NOT NULL DEFAULT 'pending',
  attempts         BIGINT NOT NULL DEFAULT 0,
  next_attempt_ms  BIGINT NOT NULL,
  last_error       TEXT NOT NULL DEFAULT '',
  result           TEXT NOT NULL DEFAULT '',
  done_at          BIGINT NOT NULL DEFAULT 0,
  UNIQUE (registry, kind, serial)
);
CREATE INDEX registry_outbox_due ON registry_outbox (state, next_attempt_ms);
CREATE INDEX registry_outbox_serial ON registry_outbox (serial);
)sql",
    // 2: shared broker state: challenge sessions (seq gives insertion
    // order), per-key rate limits (GCRA theoretical arrival time), leases
    // on outbox entries, named leases for once-per-cluster work, and
    // admin-certificate revocations.
    R"sql(
CREATE TABLE sessions (
  seq           BIGSERIAL PRIMARY KEY,
  id            BYTEA NOT NULL UNIQUE,
  imsi          TEXT COLLATE "C" NOT NULL,
  rand          BYTEA NOT NULL,
  autn          BYTEA NOT NULL,
  xres_hash     BYTEA NOT NULL,
  sealed_keys   BYTEA NOT NULL,
  created_ms    BIGINT NOT NULL,
  decoy         BIGINT NOT NULL,
  decoy_reason  TEXT NOT NULL,
  device_id     TEXT NOT NULL,
  group_name    TEXT NOT NULL
);
CREATE INDEX sessions_imsi ON sessions (imsi, seq);
CREATE INDEX sessions_created ON sessions (created_ms);
CREATE TABLE rate_limits (
  key     TEXT COLLATE "C" PRIMARY KEY,
  tat_ms  BIGINT NOT NULL
);
CREATE INDEX rate_limits_tat ON rate_limits (tat_ms);
ALTER TABLE registry_outbox ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE registry_outbox ADD COLUMN lease_expires_ms BIGINT NOT NULL
  DEFAULT 0;
CREATE TABLE leases (
  name        TEXT COLLATE "C" PRIMARY KEY,
  holder      TEXT NOT NULL,
  expires_ms  BIGINT NOT NULL
);
CREATE TABLE admin_revocations (
  serial      TEXT COLLATE "C" PRIMARY KEY,
  revoked_at  BIGINT NOT NULL
);
)sql",
};

const int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);

const char* const kTables[] = {
    "subscribers",     "certificates",      "certificate_sha256",
    "groups",          "crl_state",         "audit",
    "token_apps",      "token_revocations", "token_device_revocations",
    "registry_outbox", "admin_revocations",
};

const int kTableCount = sizeof(kTables) / sizeof(kTables[0]);

}  // namespace simprov::pg_internal
