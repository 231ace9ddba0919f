// The SQLite store's schema: its migrations, in order.
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov::sqlite_internal {
namespace {

// Schema migrations, applied in order, each in its own transaction. Never
// edit a released step: add a new one. DML elsewhere stays portable SQL.
const char* const kMigrationSteps[] = {
    // 1: subscribers, certificates, audit.
    R"sql(
CREATE TABLE subscribers (
  imsi         TEXT PRIMARY KEY,
  sealed_keys  BLOB NOT NULL,
  amf          BLOB NOT NULL,
  sqn_seq      INTEGER NOT NULL,
  sqn_ind      INTEGER NOT NULL,
  last_sqn     INTEGER NOT NULL DEFAULT 0,
  group_name   TEXT NOT NULL,
  iccid        TEXT NOT NULL DEFAULT '',
  msisdn       TEXT NOT NULL DEFAULT '',
  status       TEXT NOT NULL DEFAULT 'active',
  device_id    TEXT NOT NULL DEFAULT '',
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);
CREATE INDEX subscribers_group ON subscribers (group_name, imsi);
CREATE TABLE certificates (
  serial      TEXT PRIMARY KEY,
  imsi        TEXT NOT NULL REFERENCES subscribers (imsi),
  device_id   TEXT NOT NULL,
  not_before  INTEGER NOT NULL,
  not_after   INTEGER NOT NULL,
  der         BLOB NOT NULL,
  status      TEXT NOT NULL DEFAULT 'valid',
  issued_at   INTEGER NOT NULL
);
CREATE INDEX certificates_imsi ON certificates (imsi, issued_at);
CREATE TABLE audit (
  id      INTEGER PRIMARY KEY,
  at      INTEGER NOT NULL,
  event   TEXT NOT NULL,
  imsi    TEXT NOT NULL DEFAULT '',
  detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_imsi ON audit (imsi, id);
)sql",
    // 2 (fleet lifecycle): groups; IMEI, last seen and replacement
    // on subscribers; revocation on certificates; the audit trail becomes
    // (time, actor, action, target, result, reason), old rows migrated,
    // append-only (triggers refuse UPDATE and DELETE).
    R"sql(
CREATE TABLE groups (
  name        TEXT PRIMARY KEY,
  policy      TEXT NOT NULL,
  updated_at  INTEGER NOT NULL
);
ALTER TABLE subscribers ADD COLUMN imei TEXT NOT NULL DEFAULT '';
ALTER TABLE subscribers ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscribers ADD COLUMN replaced_by TEXT NOT NULL DEFAULT '';
CREATE INDEX subscribers_device ON subscribers (device_id);
ALTER TABLE certificates ADD COLUMN revocation_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX certificates_status ON certificates (status, not_after);
CREATE TABLE crl_state (
  id          INTEGER PRIMARY KEY,
  crl_number  INTEGER NOT NULL
);
INSERT INTO crl_state (id, crl_number) VALUES (1, 0);
CREATE TABLE audit_v2 (
  id      INTEGER PRIMARY KEY,
  at      INTEGER NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  target  TEXT NOT NULL DEFAULT '',
  result  TEXT NOT NULL DEFAULT '',
  reason  TEXT NOT NULL DEFAULT ''
);
INSERT INTO audit_v2 (id, at, actor, action, target, result, reason)
  SELECT id, at,
    CASE WHEN imsi = '' THEN 'local' ELSE imsi END,
    CASE event
      WHEN 'bootstrap.issued' THEN 'bootstrap'
      WHEN 'bootstrap.refused' THEN 'bootstrap'
      WHEN 'renewal.issued' THEN 'renew'
      WHEN 'resync.refused' THEN 'resync'
      WHEN 'subscribers.imported' THEN 'import'
      ELSE event END,
    imsi,
    CASE WHEN event LIKE '%.refused' THEN 'refused' ELSE 'ok' END,
    detail
  FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v2 RENAME TO audit;
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_target ON audit (target, id);
CREATE INDEX audit_at ON audit (at, id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
)sql",
    // Tokens: applications allowed to introspect, and revoked
    // tokens (by jti, and every token of a device issued up to a time).
    R"sql(
CREATE TABLE token_apps (
  name        TEXT PRIMARY KEY,
  key_hash    BLOB NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE TABLE token_revocations (
  jti         TEXT PRIMARY KEY,
  revoked_at  INTEGER NOT NULL
);
CREATE INDEX token_revocations_at ON token_revocations (revoked_at);
CREATE TABLE token_device_revocations (
  imsi        TEXT PRIMARY KEY,
  revoked_at  INTEGER NOT NULL
);
)sql",
    // 4 (registries): the registry outbox. One row per delivery
    // (register or remove) of one certificate to one registry; rows stay
    // after delivery (the registration status, and what removal needs).
    R"sql(
CREATE TABLE registry_outbox (
  id               INTEGER PRIMARY KEY,
  registry         TEXT NOT NULL,
  kind             TEXT NOT NULL,
  serial           TEXT NOT NULL,
  imsi             TEXT NOT NULL,
  device_id        TEXT NOT NULL,
  payload          TEXT NOT NULL,
  created_at       INTEGER NOT NULL,
  state            TEXT NOT NULL DEFAULT 'pending',
  attempts         INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms  INTEGER NOT NULL,
  last_error       TEXT NOT NULL DEFAULT '',
  result           TEXT NOT NULL DEFAULT '',
  done_at          INTEGER NOT NULL DEFAULT 0,
  UNIQUE (registry, kind, serial)
);
CREATE INDEX registry_outbox_due ON registry_outbox (state, next_attempt_ms);
CREATE INDEX registry_outbox_serial ON registry_outbox (serial);
)sql",
    // 5 (certificate lineage): the certificate a renewal was made from,
    // and when a newer certificate of the subscriber superseded it. A
    // subscriber's valid certificates older than its newest are marked
    // superseded when the newest was issued (insertion order breaks ties).
    R"sql(
ALTER TABLE certificates ADD COLUMN renewed_from TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN superseded_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX certificates_renewed_from ON certificates (renewed_from);
CREATE INDEX certificates_superseded ON certificates (superseded_at, status);
UPDATE certificates SET superseded_at = (
  SELECT MAX(n.issued_at, 1) FROM certificates n
  WHERE n.imsi = certificates.imsi AND n.rowid <> certificates.rowid AND
    (n.issued_at > certificates.issued_at OR
     (n.issued_at = certificates.issued_at AND n.rowid > certificates.rowid))
  ORDER BY n.issued_at, n.rowid LIMIT 1)
WHERE status = 'valid' AND EXISTS (
  SELECT 1 FROM certificates n
  WHERE n.imsi = certificates.imsi AND
    (n.issued_at > certificates.issued_at OR
     (n.issued_at = certificates.issued_at AND n.rowid > certificates.rowid)));
)sql",
    // 6 (token binding): tokens name their certificate by the SHA-256 of
    // its DER (cnf x5t#S256): the hash of every certificate, to find it by.
    // Filled at issuance; here for the certificates issued before
    // (simprov_sha256 is registered on the connection that migrates).
    R"sql(
CREATE TABLE certificate_sha256 (
  serial  TEXT PRIMARY KEY,
  sha256  BLOB NOT NULL
);
INSERT INTO certificate_sha256 (serial, sha256)
  SELECT serial, simprov_sha256(der) FROM certificates;
CREATE INDEX certificate_sha256_hash ON certificate_sha256 (sha256);
)sql",
    // 7 (shared broker state): challenge sessions (seq gives insertion
    // order), per-key rate limits (GCRA theoretical arrival time), leases
    // on outbox entries, named leases for once-per-cluster work, and
    // admin-certificate revocations.
    R"sql(
CREATE TABLE sessions (
  seq           INTEGER PRIMARY KEY,
  id            BLOB NOT NULL UNIQUE,
  imsi          TEXT NOT NULL,
  rand          BLOB NOT NULL,
  autn          BLOB NOT NULL,
  xres_hash     BLOB NOT NULL,
  sealed_keys   BLOB NOT NULL,
  created_ms    INTEGER NOT NULL,
  decoy         INTEGER NOT NULL,
  decoy_reason  TEXT NOT NULL,
  device_id     TEXT NOT NULL,
  group_name    TEXT NOT NULL
);
CREATE INDEX sessions_imsi ON sessions (imsi, seq);
CREATE INDEX sessions_created ON sessions (created_ms);
CREATE TABLE rate_limits (
  key     TEXT PRIMARY KEY,
  tat_ms  INTEGER NOT NULL
);
CREATE INDEX rate_limits_tat ON rate_limits (tat_ms);
ALTER TABLE registry_outbox ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE registry_outbox ADD COLUMN lease_expires_ms INTEGER NOT NULL
  DEFAULT 0;
CREATE TABLE leases (
  name        TEXT PRIMARY KEY,
  holder      TEXT NOT NULL,
  expires_ms  INTEGER NOT NULL
);
CREATE TABLE admin_revocations (
  serial      TEXT PRIMARY KEY,
  revoked_at  INTEGER NOT NULL
);
)sql",
};

}  // namespace

absl::Span<const char* const> Migrations() { return kMigrationSteps; }

}  // namespace simprov::sqlite_internal
