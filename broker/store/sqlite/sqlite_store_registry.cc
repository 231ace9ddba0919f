// SqliteStore: the registry outbox (migration 4). Registration
// intents are inserted in the transaction that records the certificate, so
// a certificate the broker has issued always has its deliveries queued.
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {
namespace {

using sqlite_internal::Unix;

constexpr char kIntentColumns[] =
    "id, registry, kind, serial, imsi, device_id, payload, created_at, state, "
    "attempts, next_attempt_ms, last_error, result, done_at";

RegistrationIntent ReadIntent(StatementLease& st) {
  RegistrationIntent r;
  r.id = st->Int(0);
  r.registry = st->Text(1);
  r.kind = st->Text(2);
  r.serial = st->Text(3);
  r.imsi = st->Text(4);
  r.device_id = st->Text(5);
  r.payload = st->Text(6);
  r.created_at = absl::FromUnixSeconds(st->Int(7));
  r.state = st->Text(8);
  r.attempts = st->Int(9);
  r.next_attempt_at = absl::FromUnixMillis(st->Int(10));
  r.last_error = st->Text(11);
  r.result = st->Text(12);
  r.done_at = absl::FromUnixSeconds(st->Int(13));
  return r;
}

absl::Status InsertIntent(SqliteConnection& db, const RegistrationIntent& r) {
  auto st = db.Prepare(
      "INSERT INTO registry_outbox (registry, kind, serial, imsi, device_id, "
      "payload, created_at, state, next_attempt_ms) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) "
      "ON CONFLICT (registry, kind, serial) DO NOTHING");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, r.registry);
  (*st)->Bind(2, r.kind);
  (*st)->Bind(3, r.serial);
  (*st)->Bind(4, r.imsi);
  (*st)->Bind(5, r.device_id);
  (*st)->Bind(6, r.payload);
  (*st)->Bind(7, Unix(r.created_at));
  (*st)->Bind(8, absl::ToUnixMillis(r.next_attempt_at));
  int rc = (*st)->Step();
  if (rc != SQLITE_DONE) return db.Error(rc, "registry outbox");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> SqliteStore::Exists(const std::string& sql) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(sql);
  if (!st.ok()) return st.status();
  int rc = (*st)->Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return reader_->Error(rc, "registry outbox");
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

absl::StatusOr<std::vector<RegistrationIntent>> SqliteStore::DueIntents(
    absl::Time now, size_t limit) {
  // Register entries of certificates revoked before delivery are skipped:
  // registering them would only be undone. (Looked up first on the reader:
  // an idle outbox costs no write.)
  auto any = Exists(
      "SELECT 1 FROM registry_outbox WHERE state = 'pending' AND kind = "
      "'register' AND serial IN (SELECT serial FROM certificates WHERE "
      "status = 'revoked') LIMIT 1");
  if (!any.ok()) return any.status();
  absl::Status skipped =
      !*any
          ? absl::OkStatus()
          : Write([&](SqliteConnection& db) -> absl::Status {
              auto st = db.Prepare(
                  "UPDATE registry_outbox SET state = 'skipped', done_at = ?, "
                  "last_error = 'certificate revoked before registration' "
                  "WHERE state = 'pending' AND kind = 'register' AND serial IN "
                  "(SELECT serial FROM certificates WHERE status = 'revoked')");
              if (!st.ok()) return st.status();
              (*st)->Bind(1, Unix(now));
              int rc = (*st)->Step();
              if (rc != SQLITE_DONE) return db.Error(rc, "registry outbox");
              return absl::OkStatus();
            });
  if (!skipped.ok()) return skipped;
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(absl::StrCat(
      "SELECT ", kIntentColumns,
      " FROM registry_outbox WHERE state = 'pending' AND "
      "next_attempt_ms <= ? ORDER BY next_attempt_ms, id LIMIT ?"));
  if (!st.ok()) return st.status();
  (*st)->Bind(1, absl::ToUnixMillis(now));
  (*st)->Bind(2, static_cast<int64_t>(limit));
  std::vector<RegistrationIntent> out;
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return reader_->Error(rc, "registry outbox");
    out.push_back(ReadIntent(*st));
  }
  return out;
}

absl::Status SqliteStore::FinishIntent(int64_t id, const std::string& state,
                                       const std::string& result,
                                       absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    auto st = db.Prepare(
        "UPDATE registry_outbox SET state = ?, result = ?, done_at = ?, "
        "attempts = attempts + 1 WHERE id = ? AND state = 'pending'");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, state);
    (*st)->Bind(2, result);
    (*st)->Bind(3, Unix(at));
    (*st)->Bind(4, id);
    int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return db.Error(rc, "registry outbox");
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::DeferIntent(int64_t id, const std::string& error,
                                      absl::Time next_attempt_at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    auto st = db.Prepare(
        "UPDATE registry_outbox SET last_error = ?, next_attempt_ms = ?, "
        "attempts = attempts + 1 WHERE id = ? AND state = 'pending'");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, error.substr(0, 512));
    (*st)->Bind(2, absl::ToUnixMillis(next_attempt_at));
    (*st)->Bind(3, id);
    int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return db.Error(rc, "registry outbox");
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<RegistrationIntent>> SqliteStore::IntentsOf(
    const std::string& serial) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(
      absl::StrCat("SELECT ", kIntentColumns,
                   " FROM registry_outbox WHERE serial = ? ORDER BY id"));
  if (!st.ok()) return st.status();
  (*st)->Bind(1, serial);
  std::vector<RegistrationIntent> out;
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return reader_->Error(rc, "registry outbox");
    out.push_back(ReadIntent(*st));
  }
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
  auto st = reader_->Prepare(sql);
  if (!st.ok()) return st.status();
  (*st)->Bind(1, after_id);
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return reader_->Error(rc, "registry outbox");
    if (!fn(ReadIntent(*st))) return absl::OkStatus();
  }
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
    auto st = db.Prepare(
        "INSERT INTO registry_outbox (registry, kind, serial, imsi, "
        "device_id, payload, created_at, state, next_attempt_ms, result) "
        "SELECT r.registry, 'remove', r.serial, r.imsi, r.device_id, "
        "r.payload, ?, 'pending', ?, r.result FROM registry_outbox r "
        "JOIN certificates c ON c.serial = r.serial "
        "JOIN subscribers s ON s.imsi = r.imsi "
        "WHERE r.kind = 'register' AND r.state = 'done' AND "
        "(c.status = 'revoked' OR s.status = 'terminated') "
        "ON CONFLICT (registry, kind, serial) DO NOTHING");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, Unix(now));
    (*st)->Bind(2, absl::ToUnixMillis(now));
    int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return db.Error(rc, "registry removals");
    added = sqlite3_changes(db.raw());
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return added;
}

absl::StatusOr<OutboxStats> SqliteStore::GetOutboxStats(absl::Time now) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(
      "SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM registry_outbox "
      "WHERE state = 'pending'");
  if (!st.ok()) return st.status();
  int rc = (*st)->Step();
  if (rc != SQLITE_ROW) return reader_->Error(rc, "registry outbox");
  OutboxStats stats;
  stats.depth = (*st)->Int(0);
  if (stats.depth > 0) {
    stats.oldest_age = now - absl::FromUnixSeconds((*st)->Int(1));
    if (stats.oldest_age < absl::ZeroDuration()) {
      stats.oldest_age = absl::ZeroDuration();
    }
  }
  return stats;
}

}  // namespace simprov
