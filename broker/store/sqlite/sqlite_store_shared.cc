// SqliteStore: shared broker state (migration 7): challenge sessions, rate
// limits, outbox leases, named leases, admin-certificate revocations.
//
// Each method is one statement or one write closure, i.e. one transaction
// on the single writer. The SQL is portable to PostgreSQL as written
// (DELETE/UPDATE ... RETURNING, INSERT ... ON CONFLICT ... DO UPDATE ...
// WHERE, subqueries with ORDER BY/LIMIT); there `seq INTEGER PRIMARY KEY`
// becomes an identity column and BLOB bytea. Where SQLite's single writer
// serializes and PostgreSQL (READ COMMITTED) does not:
//  - PutSession: lock the IMSI first (e.g. pg_advisory_xact_lock on its
//    hash) so that concurrent inserts for one IMSI keep the per-IMSI cap;
//    the total cap may then overshoot by the number of concurrent inserts.
//  - ClaimIntents: the subquery selects FOR UPDATE SKIP LOCKED, so
//    concurrent claimers take disjoint entries without waiting.
//  - TakeSession*, TakeRateToken, TryAcquireLease, RevokeAdminCertificate
//    are single statements that lock the row they change: atomic as they
//    are (a DELETE that finds its row deleted meanwhile returns nothing).
#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {
namespace {

using sqlite_internal::kIntentColumns;
using sqlite_internal::ReadIntent;
using sqlite_internal::Unix;

constexpr char kSessionColumns[] =
    "id, imsi, rand, autn, xres_hash, sealed_keys, created_ms, decoy, "
    "decoy_reason, device_id, group_name";

StoredSession ReadSession(SqliteStatement& row) {
  StoredSession s;
  s.id = row.Blob(0);
  s.imsi = row.Text(1);
  s.rand = row.Blob(2);
  s.autn = row.Blob(3);
  s.xres_hash = row.Blob(4);
  s.sealed_keys = row.Blob(5);
  s.created = absl::FromUnixMillis(row.Int(6));
  s.decoy = row.Int(7) != 0;
  s.decoy_reason = row.Text(8);
  s.device_id = row.Text(9);
  s.group = row.Text(10);
  return s;
}

int64_t Cap(size_t n) {
  return static_cast<int64_t>(
      std::min<size_t>(std::max<size_t>(n, 1), size_t{1} << 40));
}

}  // namespace

absl::Status SqliteStore::PutSession(const StoredSession& s,
                                     const SessionCaps& caps) {
  const int64_t per_imsi = Cap(caps.per_imsi);
  const int64_t total = Cap(caps.total);
  return Write([&](SqliteConnection& db) -> absl::Status {
    // Keep the newest per_imsi - 1 of this IMSI, making room for `s`.
    absl::Status st = db.ExecBound(
        "DELETE FROM sessions WHERE imsi = ? AND seq NOT IN (SELECT seq FROM "
        "sessions WHERE imsi = ? ORDER BY seq DESC LIMIT ?)",
        "sessions", {s.imsi, s.imsi, per_imsi - 1});
    if (!st.ok()) return st;
    int64_t count = 0;
    auto counted =
        db.QueryRow("SELECT COUNT(*) FROM sessions", "sessions", {},
                    [&](SqliteStatement& row) { count = row.Int(0); });
    if (!counted.ok()) return counted.status();
    if (count >= total) {
      st = db.ExecBound(
          "DELETE FROM sessions WHERE seq IN (SELECT seq FROM sessions ORDER "
          "BY seq LIMIT ?)",
          "sessions", {count - total + 1});
      if (!st.ok()) return st;
    }
    st = db.ExecBound(
        "INSERT INTO sessions (id, imsi, rand, autn, xres_hash, sealed_keys, "
        "created_ms, decoy, decoy_reason, device_id, group_name) VALUES (?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "sessions",
        {s.id, s.imsi, s.rand, s.autn, s.xres_hash, s.sealed_keys,
         absl::ToUnixMillis(s.created), s.decoy ? 1 : 0, s.decoy_reason,
         s.device_id, s.group});
    if (absl::IsAlreadyExists(st)) {
      return absl::AlreadyExistsError("a session with this id exists");
    }
    return st;
  });
}

absl::StatusOr<StoredSession> SqliteStore::TakeSession(const Bytes& id) {
  std::optional<StoredSession> out;
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    auto found =
        db.QueryRow(absl::StrCat("DELETE FROM sessions WHERE id = ? RETURNING ",
                                 kSessionColumns),
                    "sessions", {id},
                    [&](SqliteStatement& row) { out = ReadSession(row); });
    return found.status();
  });
  if (!st.ok()) return st;
  if (!out) return absl::NotFoundError("no such session");
  return std::move(*out);
}

absl::StatusOr<StoredSession> SqliteStore::TakeSessionByRand(
    const std::string& imsi, const Bytes& rand) {
  std::optional<StoredSession> out;
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    auto found = db.QueryRow(
        absl::StrCat("DELETE FROM sessions WHERE seq = (SELECT seq FROM "
                     "sessions WHERE imsi = ? AND rand = ? ORDER BY seq "
                     "LIMIT 1) RETURNING ",
                     kSessionColumns),
        "sessions", {imsi, rand},
        [&](SqliteStatement& row) { out = ReadSession(row); });
    return found.status();
  });
  if (!st.ok()) return st;
  if (!out) return absl::NotFoundError("no session with that RAND");
  return std::move(*out);
}

absl::StatusOr<int64_t> SqliteStore::ExpireSessions(absl::Time before) {
  const int64_t cutoff = absl::ToUnixMillis(before);
  {
    // Read first: when nothing has expired, no write.
    std::lock_guard<std::mutex> lock(read_mu_);
    auto any =
        reader_->QueryRow("SELECT 1 FROM sessions WHERE created_ms < ? LIMIT 1",
                          "sessions", {cutoff}, [](SqliteStatement&) {});
    if (!any.ok()) return any.status();
    if (!*any) return 0;
  }
  int64_t n = 0;
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    absl::Status s = db.ExecBound("DELETE FROM sessions WHERE created_ms < ?",
                                  "sessions", {cutoff});
    n = db.Changes();
    return s;
  });
  if (!st.ok()) return st;
  return n;
}

absl::StatusOr<int64_t> SqliteStore::CountSessions(const std::string& imsi) {
  std::lock_guard<std::mutex> lock(read_mu_);
  int64_t n = 0;
  auto read = [&](SqliteStatement& row) { n = row.Int(0); };
  auto found =
      imsi.empty()
          ? reader_->QueryRow("SELECT COUNT(*) FROM sessions", "sessions", {},
                              read)
          : reader_->QueryRow("SELECT COUNT(*) FROM sessions WHERE imsi = ?",
                              "sessions", {imsi}, read);
  if (!found.ok()) return found.status();
  return n;
}

absl::StatusOr<bool> SqliteStore::TakeRateToken(const std::string& key,
                                                int burst,
                                                absl::Duration refill,
                                                absl::Time now) {
  const int64_t t = std::max<int64_t>(absl::ToInt64Milliseconds(refill), 1);
  const int64_t tau = t * std::max(burst, 1);
  const int64_t now_ms = absl::ToUnixMillis(now);
  bool allowed = false;
  // GCRA: the new arrival time is max(tat, now) + t; allowed while it is
  // at most tau ahead of now. The upsert's WHERE refuses the update
  // otherwise, and then RETURNING yields no row.
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    auto found = db.QueryRow(
        "INSERT INTO rate_limits (key, tat_ms) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET tat_ms = (CASE WHEN "
        "rate_limits.tat_ms > ? THEN rate_limits.tat_ms ELSE ? END) + ? "
        "WHERE (CASE WHEN rate_limits.tat_ms > ? THEN rate_limits.tat_ms "
        "ELSE ? END) + ? - ? <= ? RETURNING tat_ms",
        "rate limits",
        {key, now_ms + t, now_ms, now_ms, t, now_ms, now_ms, t, now_ms, tau},
        [&](SqliteStatement&) { allowed = true; });
    return found.status();
  });
  if (!st.ok()) return st;
  return allowed;
}

absl::StatusOr<int64_t> SqliteStore::ForgetIdleRateLimits(absl::Time now) {
  const int64_t now_ms = absl::ToUnixMillis(now);
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    auto any =
        reader_->QueryRow("SELECT 1 FROM rate_limits WHERE tat_ms <= ? LIMIT 1",
                          "rate limits", {now_ms}, [](SqliteStatement&) {});
    if (!any.ok()) return any.status();
    if (!*any) return 0;
  }
  int64_t n = 0;
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    absl::Status s = db.ExecBound("DELETE FROM rate_limits WHERE tat_ms <= ?",
                                  "rate limits", {now_ms});
    n = db.Changes();
    return s;
  });
  if (!st.ok()) return st;
  return n;
}

absl::StatusOr<std::vector<RegistrationIntent>> SqliteStore::ClaimIntents(
    absl::Time now, size_t limit, const std::string& holder,
    absl::Duration lease) {
  if (absl::Status s = SkipRevokedRegistrations(now); !s.ok()) return s;
  const int64_t now_ms = absl::ToUnixMillis(now);
  const int64_t until_ms = absl::ToUnixMillis(now + lease);
  std::vector<RegistrationIntent> out;
  if (limit == 0) return out;
  {
    // Read first: an idle outbox costs no write.
    std::lock_guard<std::mutex> lock(read_mu_);
    auto any = reader_->QueryRow(
        "SELECT 1 FROM registry_outbox WHERE state = 'pending' AND "
        "next_attempt_ms <= ? AND lease_expires_ms <= ? LIMIT 1",
        "registry outbox", {now_ms, now_ms}, [](SqliteStatement&) {});
    if (!any.ok()) return any.status();
    if (!*any) return out;
  }
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    out.clear();
    return db.Query(
        absl::StrCat(
            "UPDATE registry_outbox SET lease_holder = ?, lease_expires_ms = "
            "? WHERE id IN (SELECT id FROM registry_outbox WHERE state = "
            "'pending' AND next_attempt_ms <= ? AND lease_expires_ms <= ? "
            "ORDER BY next_attempt_ms, id LIMIT ?) RETURNING ",
            kIntentColumns),
        "registry outbox",
        {holder, until_ms, now_ms, now_ms, static_cast<int64_t>(limit)},
        [&](SqliteStatement& row) {
          out.push_back(ReadIntent(row));
          return true;
        });
  });
  if (!st.ok()) return st;
  // RETURNING gives no order.
  std::sort(out.begin(), out.end(),
            [](const RegistrationIntent& a, const RegistrationIntent& b) {
              if (a.next_attempt_at != b.next_attempt_at) {
                return a.next_attempt_at < b.next_attempt_at;
              }
              return a.id < b.id;
            });
  return out;
}

absl::StatusOr<bool> SqliteStore::TryAcquireLease(const std::string& name,
                                                  const std::string& holder,
                                                  absl::Duration ttl,
                                                  absl::Time now) {
  const int64_t now_ms = absl::ToUnixMillis(now);
  bool held = false;
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    auto found = db.QueryRow(
        "INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
        "expires_ms = excluded.expires_ms WHERE leases.holder = "
        "excluded.holder OR leases.expires_ms <= ? RETURNING holder",
        "leases", {name, holder, absl::ToUnixMillis(now + ttl), now_ms},
        [&](SqliteStatement&) { held = true; });
    return found.status();
  });
  if (!st.ok()) return st;
  return held;
}

absl::Status SqliteStore::ReleaseLease(const std::string& name,
                                       const std::string& holder) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    return db.ExecBound("DELETE FROM leases WHERE name = ? AND holder = ?",
                        "leases", {name, holder});
  });
}

absl::StatusOr<LeaseRow> SqliteStore::GetLease(const std::string& name) {
  std::lock_guard<std::mutex> lock(read_mu_);
  LeaseRow r;
  auto found = reader_->QueryRow(
      "SELECT name, holder, expires_ms FROM leases WHERE name = ?", "leases",
      {name}, [&](SqliteStatement& row) {
        r.name = row.Text(0);
        r.holder = row.Text(1);
        r.expires = absl::FromUnixMillis(row.Int(2));
      });
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(absl::StrCat("no lease ", name));
  return r;
}

absl::StatusOr<bool> SqliteStore::RevokeAdminCertificate(
    const std::string& serial, absl::Time at) {
  bool added = false;
  absl::Status st = Write([&](SqliteConnection& db) -> absl::Status {
    auto found = db.QueryRow(
        "INSERT INTO admin_revocations (serial, revoked_at) VALUES (?, ?) "
        "ON CONFLICT (serial) DO NOTHING RETURNING serial",
        "admin revocations", {serial, Unix(at)},
        [&](SqliteStatement&) { added = true; });
    return found.status();
  });
  if (!st.ok()) return st;
  return added;
}

absl::StatusOr<bool> SqliteStore::AdminCertificateRevoked(
    const std::string& serial) {
  auto reader = LeaseReader();
  if (!reader.ok()) return reader.status();
  return (*reader)->QueryRow("SELECT 1 FROM admin_revocations WHERE serial = ?",
                             "admin revocations", {serial},
                             [](SqliteStatement&) {});
}

absl::StatusOr<std::vector<std::string>> SqliteStore::ListAdminRevocations() {
  auto reader = LeaseReader();
  if (!reader.ok()) return reader.status();
  std::vector<std::string> out;
  absl::Status s =
      (*reader)->Query("SELECT serial FROM admin_revocations ORDER BY serial",
                       "admin revocations", {}, [&](SqliteStatement& row) {
                         out.push_back(row.Text(0));
                         return true;
                       });
  if (!s.ok()) return s;
  return out;
}

}  // namespace simprov
