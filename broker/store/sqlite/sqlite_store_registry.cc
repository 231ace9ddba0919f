// SqliteStore: the registry outbox (migration 4). Registration
// intents are inserted in the transaction that records the certificate, so
// a certificate the broker has issued always has its deliveries queued.
#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {
namespace sqlite_internal {

const char kIntentColumns[] =
    "id, registry, kind, serial, imsi, device_id, payload, created_at, state, "
    "attempts, next_attempt_ms, last_error, result, done_at";

RegistrationIntent ReadIntent(SqliteStatement& row) {
  RegistrationIntent r;
  r.id = row.Int(0);
  r.registry = row.Text(1);
  r.kind = row.Text(2);
  r.serial = row.Text(3);
  r.imsi = row.Text(4);
  r.device_id = row.Text(5);
  r.payload = row.Text(6);
  r.created_at = absl::FromUnixSeconds(row.Int(7));
  r.state = row.Text(8);
  r.attempts = row.Int(9);
  r.next_attempt_at = absl::FromUnixMillis(row.Int(10));
  r.last_error = row.Text(11);
  r.result = row.Text(12);
  r.done_at = absl::FromUnixSeconds(row.Int(13));
  return r;
}

}  // namespace sqlite_internal
namespace {

using sqlite_internal::kIntentColumns;
using sqlite_internal::ReadIntent;
using sqlite_internal::Unix;

absl::Status InsertIntent(SqliteConnection& db, const RegistrationIntent& r) {
  return db.ExecBound(
      "INSERT INTO registry_outbox (registry, kind, serial, imsi, device_id, "
      "payload, created_at, state, next_attempt_ms) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) "
      "ON CONFLICT (registry, kind, serial) DO NOTHING",
      "registry outbox",
      {r.registry, r.kind, r.serial, r.imsi, r.device_id, r.payload,
       Unix(r.created_at), absl::ToUnixMillis(r.next_attempt_at)});
}

}  // namespace

absl::StatusOr<bool> SqliteStore::Exists(const std::string& sql) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return reader_->QueryRow(sql, "registry outbox", {}, [](SqliteStatement&) {});
}

absl::Status SqliteStore::RecordIssuanceWithIntents(
    const CertificateRecord& cert, const AuditEvent& event,
    const std::vector<RegistrationIntent>& intents) {
  (void)FlushAudit();  // events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    if (absl::Status s = RecordIssuanceIn(db, cert, event); !s.ok()) return s;
    for (const RegistrationIntent& r : intents) {
      if (absl::Status s = InsertIntent(db, r); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::SkipRevokedRegistrations(absl::Time now) {
  // Register entries of certificates revoked before delivery are skipped:
  // registering them would only be undone. (Looked up first on the reader:
  // an idle outbox costs no write.)
  auto any = Exists(
      "SELECT 1 FROM registry_outbox WHERE state = 'pending' AND kind = "
      "'register' AND serial IN (SELECT serial FROM certificates WHERE "
      "status = 'revoked') LIMIT 1");
  if (!any.ok()) return any.status();
  if (!*any) return absl::OkStatus();
  return Write([&](SqliteConnection& db) -> absl::Status {
    return db.ExecBound(
        "UPDATE registry_outbox SET state = 'skipped', done_at = ?, "
        "last_error = 'certificate revoked before registration' "
        "WHERE state = 'pending' AND kind = 'register' AND serial IN "
        "(SELECT serial FROM certificates WHERE status = 'revoked')",
        "registry outbox", {Unix(now)});
  });
}

absl::StatusOr<std::vector<RegistrationIntent>> SqliteStore::DueIntents(
    absl::Time now, size_t limit) {
  if (absl::Status s = SkipRevokedRegistrations(now); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(read_mu_);
  std::vector<RegistrationIntent> out;
  absl::Status s = reader_->Query(
      absl::StrCat("SELECT ", kIntentColumns,
                   " FROM registry_outbox WHERE state = 'pending' AND "
                   "next_attempt_ms <= ? ORDER BY next_attempt_ms, id LIMIT ?"),
      "registry outbox", {absl::ToUnixMillis(now), limit},
      [&](SqliteStatement& row) {
        out.push_back(ReadIntent(row));
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

absl::Status SqliteStore::FinishIntent(int64_t id, const std::string& state,
                                       const std::string& result,
                                       absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    return db.ExecBound(
        "UPDATE registry_outbox SET state = ?, result = ?, done_at = ?, "
        "attempts = attempts + 1, lease_holder = '', lease_expires_ms = 0 "
        "WHERE id = ? AND state = 'pending'",
        "registry outbox", {state, result, Unix(at), id});
  });
}

absl::Status SqliteStore::DeferIntent(int64_t id, const std::string& error,
                                      absl::Time next_attempt_at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    return db.ExecBound(
        "UPDATE registry_outbox SET last_error = ?, next_attempt_ms = ?, "
        "attempts = attempts + 1, lease_holder = '', lease_expires_ms = 0 "
        "WHERE id = ? AND state = 'pending'",
        "registry outbox",
        {absl::string_view(error).substr(0, 512),
         absl::ToUnixMillis(next_attempt_at), id});
  });
}

absl::StatusOr<std::vector<RegistrationIntent>> SqliteStore::IntentsOf(
    const std::string& serial) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::vector<RegistrationIntent> out;
  absl::Status s = reader_->Query(
      absl::StrCat("SELECT ", kIntentColumns,
                   " FROM registry_outbox WHERE serial = ? ORDER BY id"),
      "registry outbox", {serial}, [&](SqliteStatement& row) {
        out.push_back(ReadIntent(row));
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

absl::Status SqliteStore::ListPendingIntents(
    int64_t after_id, size_t limit,
    const std::function<bool(const RegistrationIntent&)>& fn) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::string sql = absl::StrCat(
      "SELECT ", kIntentColumns,
      " FROM registry_outbox WHERE state = 'pending' AND id > ? ORDER BY id");
  if (limit > 0) absl::StrAppend(&sql, " LIMIT ", limit);
  return reader_->Query(
      sql, "registry outbox", {after_id},
      [&](SqliteStatement& row) { return fn(ReadIntent(row)); });
}

absl::StatusOr<int64_t> SqliteStore::EnqueueRemovals(absl::Time now) {
  // Read first: most of the time there is nothing to add, and no write.
  auto any = Exists(
      "SELECT 1 FROM registry_outbox r JOIN certificates c ON c.serial = "
      "r.serial JOIN subscribers s ON s.imsi = r.imsi WHERE r.kind = "
      "'register' AND r.state = 'done' AND (c.status = 'revoked' OR "
      "s.status = 'terminated') AND NOT EXISTS (SELECT 1 FROM registry_outbox "
      "x WHERE x.registry = r.registry AND x.kind = 'remove' AND x.serial = "
      "r.serial) LIMIT 1");
  if (!any.ok()) return any.status();
  if (!*any) return 0;
  int64_t added = 0;
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    // The removal carries the registration's answer (what the adapter
    // needs to undo it, e.g. AWS's certificateId) in front of the payload.
    absl::Status s = db.ExecBound(
        "INSERT INTO registry_outbox (registry, kind, serial, imsi, "
        "device_id, payload, created_at, state, next_attempt_ms, result) "
        "SELECT r.registry, 'remove', r.serial, r.imsi, r.device_id, "
        "r.payload, ?, 'pending', ?, r.result FROM registry_outbox r "
        "JOIN certificates c ON c.serial = r.serial "
        "JOIN subscribers s ON s.imsi = r.imsi "
        "WHERE r.kind = 'register' AND r.state = 'done' AND "
        "(c.status = 'revoked' OR s.status = 'terminated') "
        "ON CONFLICT (registry, kind, serial) DO NOTHING",
        "registry removals", {Unix(now), absl::ToUnixMillis(now)});
    if (!s.ok()) return s;
    added = db.Changes();
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return added;
}

absl::StatusOr<int64_t> SqliteStore::RequeueRegistrations(
    const std::vector<RegistrationIntent>& intents) {
  if (intents.empty()) return 0;
  int64_t queued = 0;
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    queued = 0;
    for (const RegistrationIntent& r : intents) {
      auto revoked = db.QueryRow(
          "SELECT 1 FROM certificates WHERE serial = ? AND status = 'revoked'",
          "registry outbox", {r.serial}, [](SqliteStatement&) {});
      if (!revoked.ok()) return revoked.status();
      if (*revoked) continue;
      std::string state;
      auto found = db.QueryRow(
          "SELECT state FROM registry_outbox WHERE registry = ? AND kind = "
          "'register' AND serial = ?",
          "registry outbox", {r.registry, r.serial},
          [&](SqliteStatement& row) { state = row.Text(0); });
      if (!found.ok()) return found.status();
      absl::Status w;
      if (!*found) {
        RegistrationIntent fresh = r;
        fresh.kind = "register";
        w = InsertIntent(db, fresh);
      } else if (state == "pending") {
        w = db.ExecBound(
            "UPDATE registry_outbox SET payload = ? WHERE registry = ? AND "
            "kind = 'register' AND serial = ? AND state = 'pending'",
            "registry outbox", {r.payload, r.registry, r.serial});
      } else {
        w = db.ExecBound(
            "INSERT INTO registry_outbox (registry, kind, serial, imsi, "
            "device_id, payload, created_at, state, next_attempt_ms) "
            "VALUES (?, 'update', ?, ?, ?, ?, ?, 'pending', ?) "
            "ON CONFLICT (registry, kind, serial) DO UPDATE SET "
            "payload = excluded.payload, created_at = excluded.created_at, "
            "state = 'pending', attempts = 0, last_error = '', done_at = 0, "
            "next_attempt_ms = excluded.next_attempt_ms",
            "registry outbox",
            {r.registry, r.serial, r.imsi, r.device_id, r.payload,
             Unix(r.created_at), absl::ToUnixMillis(r.next_attempt_at)});
      }
      if (!w.ok()) return w;
      ++queued;
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return queued;
}

absl::StatusOr<OutboxStats> SqliteStore::GetOutboxStats(absl::Time now) {
  std::lock_guard<std::mutex> lock(read_mu_);
  OutboxStats stats;
  int64_t oldest = 0;
  auto read = reader_->QueryRow(
      "SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM registry_outbox "
      "WHERE state = 'pending'",
      "registry outbox", {}, [&](SqliteStatement& row) {
        stats.depth = row.Int(0);
        oldest = row.Int(1);
      });
  if (!read.ok()) return read.status();
  if (stats.depth > 0) {
    stats.oldest_age = now - absl::FromUnixSeconds(oldest);
    if (stats.oldest_age < absl::ZeroDuration()) {
      stats.oldest_age = absl::ZeroDuration();
    }
  }
  return stats;
}

}  // namespace simprov
