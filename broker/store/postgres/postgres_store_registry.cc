// PostgresStore: the registry outbox. Registration intents are inserted
// in the transaction that records the certificate, so a certificate the
// broker has issued always has its deliveries queued.
#include "absl/strings/str_cat.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/postgres/postgres_store_internal.h"

namespace simprov {
namespace {

using pg_internal::Unix;

using pg_internal::kIntentColumns;
using pg_internal::ReadIntent;

}  // namespace

namespace pg_internal {

const char kIntentColumns[] =
    "id, registry, kind, serial, imsi, device_id, payload, created_at, state, "
    "attempts, next_attempt_ms, last_error, result, done_at";

RegistrationIntent ReadIntent(const pg::Result& r, int i) {
  RegistrationIntent x;
  x.id = r.Int(i, 0);
  x.registry = r.Text(i, 1);
  x.kind = r.Text(i, 2);
  x.serial = r.Text(i, 3);
  x.imsi = r.Text(i, 4);
  x.device_id = r.Text(i, 5);
  x.payload = r.Text(i, 6);
  x.created_at = absl::FromUnixSeconds(r.Int(i, 7));
  x.state = r.Text(i, 8);
  x.attempts = r.Int(i, 9);
  x.next_attempt_at = absl::FromUnixMillis(r.Int(i, 10));
  x.last_error = r.Text(i, 11);
  x.result = r.Text(i, 12);
  x.done_at = absl::FromUnixSeconds(r.Int(i, 13));
  return x;
}

}  // namespace pg_internal

namespace {

std::vector<RegistrationIntent> Intents(const pg::Result& r) {
  std::vector<RegistrationIntent> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadIntent(r, i));
  return out;
}

absl::Status InsertIntent(pg::Connection& db, const RegistrationIntent& r) {
  return db.Exec(
      "INSERT INTO registry_outbox (registry, kind, serial, imsi, device_id, "
      "payload, created_at, state, next_attempt_ms) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) "
      "ON CONFLICT (registry, kind, serial) DO NOTHING",
      {r.registry, r.kind, r.serial, r.imsi, r.device_id, r.payload,
       pg::Int(Unix(r.created_at)),
       pg::Int(absl::ToUnixMillis(r.next_attempt_at))});
}

// Substring of at most 512 bytes, not cutting a UTF-8 sequence (PostgreSQL
// refuses invalid UTF-8 in text).
std::string ErrorLine(const std::string& error) {
  if (error.size() <= 512) return error;
  size_t n = 512;
  while (n > 0 && (static_cast<unsigned char>(error[n]) & 0xc0) == 0x80) --n;
  return error.substr(0, n);
}

}  // namespace

absl::Status PostgresStore::RecordIssuanceWithIntents(
    const CertificateRecord& cert, const AuditEvent& event,
    const std::vector<RegistrationIntent>& intents) {
  (void)FlushAudit();  // events queued earlier come first
  return Tx([&](pg::Connection& db) -> absl::Status {
    if (absl::Status s = RecordIssuanceIn(db, cert, event); !s.ok()) return s;
    for (const RegistrationIntent& r : intents) {
      if (absl::Status s = InsertIntent(db, r); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::SkipRevokedRegistrations(absl::Time now) {
  // Register entries of certificates revoked before delivery are skipped:
  // registering them would only be undone. (Looked up first: an idle
  // outbox costs no write.)
  auto any = Read(
      "SELECT 1 FROM registry_outbox WHERE state = 'pending' AND kind = "
      "'register' AND serial IN (SELECT serial FROM certificates WHERE "
      "status = 'revoked') LIMIT 1",
      {});
  if (!any.ok()) return any.status();
  if (any->rows() > 0) {
    absl::Status skipped = Tx([&](pg::Connection& db) -> absl::Status {
      return db.Exec(
          "UPDATE registry_outbox SET state = 'skipped', done_at = $1, "
          "last_error = 'certificate revoked before registration' "
          "WHERE state = 'pending' AND kind = 'register' AND serial IN "
          "(SELECT serial FROM certificates WHERE status = 'revoked')",
          {pg::Int(Unix(now))});
    });
    if (!skipped.ok()) return skipped;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RegistrationIntent>> PostgresStore::DueIntents(
    absl::Time now, size_t limit) {
  if (absl::Status s = SkipRevokedRegistrations(now); !s.ok()) return s;
  auto r = Read(absl::StrCat("SELECT ", kIntentColumns,
                             " FROM registry_outbox WHERE state = 'pending' "
                             "AND next_attempt_ms <= $1 ORDER BY "
                             "next_attempt_ms, id LIMIT $2"),
                {pg::Int(absl::ToUnixMillis(now)), pg::Int(limit)});
  if (!r.ok()) return r.status();
  return Intents(*r);
}

absl::Status PostgresStore::FinishIntent(int64_t id, const std::string& state,
                                         const std::string& result,
                                         absl::Time at) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    return db.Exec(
        "UPDATE registry_outbox SET state = $1, result = $2, done_at = $3, "
        "attempts = attempts + 1, lease_holder = '', lease_expires_ms = 0 "
        "WHERE id = $4 AND state = 'pending'",
        {state, result, pg::Int(Unix(at)), pg::Int(id)});
  });
}

absl::Status PostgresStore::DeferIntent(int64_t id, const std::string& error,
                                        absl::Time next_attempt_at) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    return db.Exec(
        "UPDATE registry_outbox SET last_error = $1, next_attempt_ms = $2, "
        "attempts = attempts + 1, lease_holder = '', lease_expires_ms = 0 "
        "WHERE id = $3 AND state = 'pending'",
        {ErrorLine(error), pg::Int(absl::ToUnixMillis(next_attempt_at)),
         pg::Int(id)});
  });
}

absl::StatusOr<std::vector<RegistrationIntent>> PostgresStore::IntentsOf(
    const std::string& serial) {
  auto r = Read(absl::StrCat("SELECT ", kIntentColumns,
                             " FROM registry_outbox WHERE serial = $1 "
                             "ORDER BY id"),
                {serial});
  if (!r.ok()) return r.status();
  return Intents(*r);
}

absl::Status PostgresStore::ListPendingIntents(
    int64_t after_id, size_t limit,
    const std::function<bool(const RegistrationIntent&)>& fn) {
  auto r = Read(absl::StrCat("SELECT ", kIntentColumns,
                             " FROM registry_outbox WHERE state = 'pending' "
                             "AND id > $1 ORDER BY id LIMIT $2"),
                {pg::Int(after_id), pg_internal::Limit(limit)});
  if (!r.ok()) return r.status();
  for (int i = 0; i < r->rows(); ++i) {
    if (!fn(ReadIntent(*r, i))) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PostgresStore::EnqueueRemovals(absl::Time now) {
  // Read first: most of the time there is nothing to add, and no write.
  auto any = Read(
      "SELECT 1 FROM registry_outbox r JOIN certificates c ON c.serial = "
      "r.serial JOIN subscribers s ON s.imsi = r.imsi WHERE r.kind = "
      "'register' AND r.state = 'done' AND (c.status = 'revoked' OR "
      "s.status = 'terminated') AND NOT EXISTS (SELECT 1 FROM registry_outbox "
      "x WHERE x.registry = r.registry AND x.kind = 'remove' AND x.serial = "
      "r.serial) LIMIT 1",
      {});
  if (!any.ok()) return any.status();
  if (any->rows() == 0) return 0;
  int64_t added = 0;
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    // The removal carries the registration's answer (what the adapter
    // needs to undo it, e.g. AWS's certificateId).
    auto r = db.Query(
        "INSERT INTO registry_outbox (registry, kind, serial, imsi, "
        "device_id, payload, created_at, state, next_attempt_ms, result) "
        "SELECT r.registry, 'remove', r.serial, r.imsi, r.device_id, "
        "r.payload, $1, 'pending', $2, r.result FROM registry_outbox r "
        "JOIN certificates c ON c.serial = r.serial "
        "JOIN subscribers s ON s.imsi = r.imsi "
        "WHERE r.kind = 'register' AND r.state = 'done' AND "
        "(c.status = 'revoked' OR s.status = 'terminated') "
        "ON CONFLICT (registry, kind, serial) DO NOTHING",
        {pg::Int(Unix(now)), pg::Int(absl::ToUnixMillis(now))});
    if (!r.ok()) return r.status();
    added = r->affected();
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return added;
}

absl::StatusOr<int64_t> PostgresStore::RequeueRegistrations(
    const std::vector<RegistrationIntent>& intents) {
  if (intents.empty()) return 0;
  int64_t queued = 0;
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    queued = 0;
    for (const RegistrationIntent& r : intents) {
      auto revoked = db.Query(
          "SELECT 1 FROM certificates WHERE serial = $1 AND "
          "status = 'revoked'",
          {r.serial});
      if (!revoked.ok()) return revoked.status();
      if (revoked->rows() > 0) continue;
      auto found = db.Query(
          "SELECT state FROM registry_outbox WHERE registry = $1 AND kind = "
          "'register' AND serial = $2 FOR UPDATE",
          {r.registry, r.serial});
      if (!found.ok()) return found.status();
      absl::Status w;
      if (found->rows() == 0) {
        RegistrationIntent fresh = r;
        fresh.kind = "register";
        w = InsertIntent(db, fresh);
      } else if (found->Text(0, 0) == "pending") {
        w = db.Exec(
            "UPDATE registry_outbox SET payload = $1 WHERE registry = $2 AND "
            "kind = 'register' AND serial = $3 AND state = 'pending'",
            {r.payload, r.registry, r.serial});
      } else {
        w = db.Exec(
            "INSERT INTO registry_outbox (registry, kind, serial, imsi, "
            "device_id, payload, created_at, state, next_attempt_ms) "
            "VALUES ($1, 'update', $2, $3, $4, $5, $6, 'pending', $7) "
            "ON CONFLICT (registry, kind, serial) DO UPDATE SET "
            "payload = excluded.payload, created_at = excluded.created_at, "
            "state = 'pending', attempts = 0, last_error = '', done_at = 0, "
            "next_attempt_ms = excluded.next_attempt_ms",
            {r.registry, r.serial, r.imsi, r.device_id, r.payload,
             pg::Int(Unix(r.created_at)),
             pg::Int(absl::ToUnixMillis(r.next_attempt_at))});
      }
      if (!w.ok()) return w;
      ++queued;
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return queued;
}

absl::StatusOr<OutboxStats> PostgresStore::GetOutboxStats(absl::Time now) {
  auto r = Read(
      "SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM registry_outbox "
      "WHERE state = 'pending'",
      {});
  if (!r.ok()) return r.status();
  OutboxStats stats;
  stats.depth = r->Int(0, 0);
  if (stats.depth > 0) {
    stats.oldest_age = now - absl::FromUnixSeconds(r->Int(0, 1));
    if (stats.oldest_age < absl::ZeroDuration()) {
      stats.oldest_age = absl::ZeroDuration();
    }
  }
  return stats;
}

}  // namespace simprov
