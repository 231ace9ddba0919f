// PostgresStore: shared broker state: challenge sessions, rate limits,
// outbox leases, named leases, admin-certificate revocations (the same
// semantics as store.h says and sqlite_store_shared.cc implements).
//
// Under READ COMMITTED two things need more than the SQLite statements:
//  - PutSession takes a transaction-scoped advisory lock on the IMSI first,
//    so concurrent inserts for one IMSI keep its cap exactly; the total cap
//    may overshoot by the number of concurrent inserts.
//  - ClaimIntents selects FOR UPDATE SKIP LOCKED, so concurrent claimers on
//    several brokers take disjoint entries without waiting for each other.
// The rest are single statements that lock the rows they change.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/postgres/postgres_store_internal.h"

namespace simprov {
namespace {

using pg_internal::kIntentColumns;
using pg_internal::ReadIntent;
using pg_internal::Unix;

constexpr char kSessionColumns[] =
    "id, imsi, rand, autn, xres_hash, sealed_keys, created_ms, decoy, "
    "decoy_reason, device_id, group_name";

StoredSession ReadSession(const pg::Result& r, int i) {
  StoredSession s;
  s.id = r.Blob(i, 0);
  s.imsi = r.Text(i, 1);
  s.rand = r.Blob(i, 2);
  s.autn = r.Blob(i, 3);
  s.xres_hash = r.Blob(i, 4);
  s.sealed_keys = r.Blob(i, 5);
  s.created = absl::FromUnixMillis(r.Int(i, 6));
  s.decoy = r.Int(i, 7) != 0;
  s.decoy_reason = r.Text(i, 8);
  s.device_id = r.Text(i, 9);
  s.group = r.Text(i, 10);
  return s;
}

int64_t Cap(size_t n) {
  return static_cast<int64_t>(
      std::min<size_t>(std::max<size_t>(n, 1), size_t{1} << 40));
}

}  // namespace

bool PostgresStore::IsShared() const { return true; }

absl::Status PostgresStore::PutSession(const StoredSession& s,
                                       const SessionCaps& caps) {
  const int64_t per_imsi = Cap(caps.per_imsi);
  const int64_t total = Cap(caps.total);
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    if (absl::Status l = db.Exec(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", {s.imsi});
        !l.ok()) {
      return l;
    }
    // Keep the newest per_imsi - 1 of this IMSI, making room for `s`.
    if (absl::Status d = db.Exec(
            "DELETE FROM sessions WHERE imsi = $1 AND seq NOT IN (SELECT seq "
            "FROM sessions WHERE imsi = $1 ORDER BY seq DESC LIMIT $2)",
            {s.imsi, pg::Int(per_imsi - 1)});
        !d.ok()) {
      return d;
    }
    auto count = db.Query("SELECT COUNT(*) FROM sessions", {});
    if (!count.ok()) return count.status();
    const int64_t n = count->Int(0, 0);
    if (n >= total) {
      if (absl::Status d = db.Exec(
              "DELETE FROM sessions WHERE seq IN (SELECT seq FROM sessions "
              "ORDER BY seq LIMIT $1)",
              {pg::Int(n - total + 1)});
          !d.ok()) {
        return d;
      }
    }
    return db.Exec(
        "INSERT INTO sessions (id, imsi, rand, autn, xres_hash, sealed_keys, "
        "created_ms, decoy, decoy_reason, device_id, group_name) VALUES ($1, "
        "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        {s.id, s.imsi, s.rand, s.autn, s.xres_hash, s.sealed_keys,
         pg::Int(absl::ToUnixMillis(s.created)), pg::Int(s.decoy ? 1 : 0),
         s.decoy_reason, s.device_id, s.group});
  });
  if (absl::IsAlreadyExists(st)) {
    return absl::AlreadyExistsError("a session with this id exists");
  }
  return st;
}

absl::StatusOr<StoredSession> PostgresStore::TakeSession(const Bytes& id) {
  pg::Result r;
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    auto found =
        db.Query(absl::StrCat("DELETE FROM sessions WHERE id = $1 RETURNING ",
                              kSessionColumns),
                 {id});
    if (!found.ok()) return found.status();
    r = std::move(*found);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (r.rows() == 0) return absl::NotFoundError("no such session");
  return ReadSession(r, 0);
}

absl::StatusOr<StoredSession> PostgresStore::TakeSessionByRand(
    const std::string& imsi, const Bytes& rand) {
  pg::Result r;
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    auto found = db.Query(
        absl::StrCat("DELETE FROM sessions WHERE seq = (SELECT seq FROM "
                     "sessions WHERE imsi = $1 AND rand = $2 ORDER BY seq "
                     "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ",
                     kSessionColumns),
        {imsi, rand});
    if (!found.ok()) return found.status();
    r = std::move(*found);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (r.rows() == 0) return absl::NotFoundError("no session with that RAND");
  return ReadSession(r, 0);
}

absl::StatusOr<int64_t> PostgresStore::ExpireSessions(absl::Time before) {
  const int64_t cutoff = absl::ToUnixMillis(before);
  // Read first: when nothing has expired, no write.
  auto any = Read("SELECT 1 FROM sessions WHERE created_ms < $1 LIMIT 1",
                  {pg::Int(cutoff)});
  if (!any.ok()) return any.status();
  if (any->rows() == 0) return 0;
  int64_t n = 0;
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query("DELETE FROM sessions WHERE created_ms < $1",
                      {pg::Int(cutoff)});
    if (!r.ok()) return r.status();
    n = r->affected();
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return n;
}

absl::StatusOr<int64_t> PostgresStore::CountSessions(const std::string& imsi) {
  auto r = imsi.empty()
               ? Read("SELECT COUNT(*) FROM sessions", {})
               : Read("SELECT COUNT(*) FROM sessions WHERE imsi = $1", {imsi});
  if (!r.ok()) return r.status();
  return r->Int(0, 0);
}

absl::StatusOr<bool> PostgresStore::TakeRateToken(const std::string& key,
                                                  int burst,
                                                  absl::Duration refill,
                                                  absl::Time now) {
  const int64_t t = std::max<int64_t>(absl::ToInt64Milliseconds(refill), 1);
  const int64_t tau = t * std::max(burst, 1);
  const int64_t now_ms = absl::ToUnixMillis(now);
  bool allowed = false;
  // GCRA, as in the SQLite store: the upsert's WHERE refuses an arrival
  // more than tau ahead, and then RETURNING yields no row.
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query(
        "INSERT INTO rate_limits (key, tat_ms) VALUES ($1, $2::bigint + "
        "$3::bigint) ON CONFLICT (key) DO UPDATE SET tat_ms = "
        "GREATEST(rate_limits.tat_ms, $2::bigint) + $3::bigint WHERE "
        "GREATEST(rate_limits.tat_ms, $2::bigint) + $3::bigint - $2::bigint "
        "<= $4::bigint RETURNING tat_ms",
        {key, pg::Int(now_ms), pg::Int(t), pg::Int(tau)});
    if (!r.ok()) return r.status();
    allowed = r->rows() > 0;
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return allowed;
}

absl::StatusOr<int64_t> PostgresStore::ForgetIdleRateLimits(absl::Time now) {
  const int64_t now_ms = absl::ToUnixMillis(now);
  auto any = Read("SELECT 1 FROM rate_limits WHERE tat_ms <= $1 LIMIT 1",
                  {pg::Int(now_ms)});
  if (!any.ok()) return any.status();
  if (any->rows() == 0) return 0;
  int64_t n = 0;
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query("DELETE FROM rate_limits WHERE tat_ms <= $1",
                      {pg::Int(now_ms)});
    if (!r.ok()) return r.status();
    n = r->affected();
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return n;
}

absl::StatusOr<std::vector<RegistrationIntent>> PostgresStore::ClaimIntents(
    absl::Time now, size_t limit, const std::string& holder,
    absl::Duration lease) {
  if (absl::Status s = SkipRevokedRegistrations(now); !s.ok()) return s;
  std::vector<RegistrationIntent> out;
  if (limit == 0) return out;
  const int64_t now_ms = absl::ToUnixMillis(now);
  // Read first: an idle outbox costs no write.
  auto any = Read(
      "SELECT 1 FROM registry_outbox WHERE state = 'pending' AND "
      "next_attempt_ms <= $1 AND lease_expires_ms <= $1 LIMIT 1",
      {pg::Int(now_ms)});
  if (!any.ok()) return any.status();
  if (any->rows() == 0) return out;
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    out.clear();
    auto r = db.Query(
        absl::StrCat(
            "UPDATE registry_outbox SET lease_holder = $1, lease_expires_ms "
            "= $2 WHERE id IN (SELECT id FROM registry_outbox WHERE state = "
            "'pending' AND next_attempt_ms <= $3 AND lease_expires_ms <= $3 "
            "ORDER BY next_attempt_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
            "RETURNING ",
            kIntentColumns),
        {holder, pg::Int(absl::ToUnixMillis(now + lease)), pg::Int(now_ms),
         pg::Int(limit)});
    if (!r.ok()) return r.status();
    for (int i = 0; i < r->rows(); ++i) out.push_back(ReadIntent(*r, i));
    return absl::OkStatus();
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

absl::StatusOr<bool> PostgresStore::TryAcquireLease(const std::string& name,
                                                    const std::string& holder,
                                                    absl::Duration ttl,
                                                    absl::Time now) {
  bool held = false;
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query(
        "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
        "expires_ms = excluded.expires_ms WHERE leases.holder = "
        "excluded.holder OR leases.expires_ms <= $4 RETURNING holder",
        {name, holder, pg::Int(absl::ToUnixMillis(now + ttl)),
         pg::Int(absl::ToUnixMillis(now))});
    if (!r.ok()) return r.status();
    held = r->rows() > 0;
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return held;
}

absl::Status PostgresStore::ReleaseLease(const std::string& name,
                                         const std::string& holder) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    return db.Exec("DELETE FROM leases WHERE name = $1 AND holder = $2",
                   {name, holder});
  });
}

absl::StatusOr<LeaseRow> PostgresStore::GetLease(const std::string& name) {
  auto r = Read("SELECT name, holder, expires_ms FROM leases WHERE name = $1",
                {name});
  if (!r.ok()) return r.status();
  if (r->rows() == 0)
    return absl::NotFoundError(absl::StrCat("no lease ", name));
  LeaseRow row;
  row.name = r->Text(0, 0);
  row.holder = r->Text(0, 1);
  row.expires = absl::FromUnixMillis(r->Int(0, 2));
  return row;
}

absl::StatusOr<bool> PostgresStore::RevokeAdminCertificate(
    const std::string& serial, absl::Time at) {
  bool added = false;
  absl::Status st = Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query(
        "INSERT INTO admin_revocations (serial, revoked_at) VALUES ($1, $2) "
        "ON CONFLICT (serial) DO NOTHING RETURNING serial",
        {serial, pg::Int(Unix(at))});
    if (!r.ok()) return r.status();
    added = r->rows() > 0;
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return added;
}

absl::StatusOr<bool> PostgresStore::AdminCertificateRevoked(
    const std::string& serial) {
  auto r = Read("SELECT 1 FROM admin_revocations WHERE serial = $1", {serial});
  if (!r.ok()) return r.status();
  return r->rows() > 0;
}

absl::StatusOr<std::vector<std::string>> PostgresStore::ListAdminRevocations() {
  auto r = Read("SELECT serial FROM admin_revocations ORDER BY serial", {});
  if (!r.ok()) return r.status();
  std::vector<std::string> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->Text(i, 0));
  return out;
}

absl::Status PostgresStore::AppendAuditDurable(const AuditEvent& event) {
  (void)FlushAudit();  // events queued earlier come first (cheap when none)
  return Tx([&](pg::Connection& db) -> absl::Status {
    return pg_internal::InsertAudit(db, event);
  });
}

}  // namespace simprov
