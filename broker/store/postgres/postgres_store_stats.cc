// PostgresStore: fleet counts for the broker's gauges (store_stats.h). Two
// aggregate reads; the certificates one scans the table, which is why the
// broker caches the result (fleet_gauges.h).
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/postgres/postgres_store_internal.h"

namespace simprov {

using pg_internal::Unix;

absl::StatusOr<FleetStats> PostgresStore::GetFleetStats(absl::Time now) {
  constexpr int64_t kDay = 86400;
  // One pass: the status a certificate counts under (store_stats.h), and
  // for current valid ones how far their notAfter is.
  auto certs = Read(
      "SELECT "
      "COUNT(*) FILTER (WHERE not_after <= $1::bigint), "
      "COUNT(*) FILTER (WHERE not_after > $1::bigint AND status = "
      "'revoked'), "
      "COUNT(*) FILTER (WHERE not_after > $1::bigint AND status <> "
      "'revoked' AND superseded_at <> 0), "
      "COUNT(*) FILTER (WHERE not_after > $1::bigint AND status <> "
      "'revoked' AND superseded_at = 0), "
      "COUNT(*) FILTER (WHERE not_after > $1::bigint AND status <> "
      "'revoked' AND superseded_at = 0 AND not_after <= $1::bigint + "
      "$2::bigint), "
      "COUNT(*) FILTER (WHERE not_after > $1::bigint AND status <> "
      "'revoked' AND superseded_at = 0 AND not_after <= $1::bigint + "
      "$3::bigint), "
      "COUNT(*) FILTER (WHERE not_after > $1::bigint AND status <> "
      "'revoked' AND superseded_at = 0 AND not_after <= $1::bigint + "
      "$4::bigint), "
      "COUNT(*) FILTER (WHERE not_after > $1::bigint AND status <> "
      "'revoked' AND superseded_at = 0 AND not_after <= $1::bigint + "
      "$5::bigint) "
      "FROM certificates",
      {pg::Int(Unix(now)), pg::Int(kDay), pg::Int(7 * kDay), pg::Int(30 * kDay),
       pg::Int(90 * kDay)});
  if (!certs.ok()) return certs.status();
  FleetStats stats;
  stats.certificates_expired = certs->Int(0, 0);
  stats.certificates_revoked = certs->Int(0, 1);
  stats.certificates_superseded = certs->Int(0, 2);
  stats.certificates_valid = certs->Int(0, 3);
  stats.expiring_within_1d = certs->Int(0, 4);
  stats.expiring_within_7d = certs->Int(0, 5);
  stats.expiring_within_30d = certs->Int(0, 6);
  stats.expiring_within_90d = certs->Int(0, 7);
  auto subs = Read(
      "SELECT status, COUNT(*) FROM subscribers GROUP BY status ORDER BY "
      "status COLLATE \"C\"",
      {});
  if (!subs.ok()) return subs.status();
  for (int i = 0; i < subs->rows(); ++i) {
    stats.subscribers[subs->Text(i, 0)] = subs->Int(i, 1);
  }
  return stats;
}

}  // namespace simprov
