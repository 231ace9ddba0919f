// SqliteStore: fleet counts for the broker's gauges (store_stats.h). Two
// aggregate reads on the reader connection; the certificates one scans the
// table, which is why the broker caches the result (fleet_gauges.h).
#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {

using sqlite_internal::Unix;

absl::StatusOr<FleetStats> SqliteStore::GetFleetStats(absl::Time now) {
  std::lock_guard<std::mutex> lock(read_mu_);
  FleetStats stats;
  const int64_t t = Unix(now);
  constexpr int64_t kDay = 86400;
  // One pass: the status a certificate counts under (store_stats.h), and
  // for current valid ones how far their notAfter is.
  auto certs = reader_->QueryRow(
      "SELECT "
      "COALESCE(SUM(not_after <= ?1), 0), "
      "COALESCE(SUM(not_after > ?1 AND status = 'revoked'), 0), "
      "COALESCE(SUM(not_after > ?1 AND status <> 'revoked' AND "
      "  superseded_at <> 0), 0), "
      "COALESCE(SUM(not_after > ?1 AND status <> 'revoked' AND "
      "  superseded_at = 0), 0), "
      "COALESCE(SUM(not_after > ?1 AND status <> 'revoked' AND "
      "  superseded_at = 0 AND not_after <= ?1 + ?2), 0), "
      "COALESCE(SUM(not_after > ?1 AND status <> 'revoked' AND "
      "  superseded_at = 0 AND not_after <= ?1 + ?3), 0), "
      "COALESCE(SUM(not_after > ?1 AND status <> 'revoked' AND "
      "  superseded_at = 0 AND not_after <= ?1 + ?4), 0), "
      "COALESCE(SUM(not_after > ?1 AND status <> 'revoked' AND "
      "  superseded_at = 0 AND not_after <= ?1 + ?5), 0) "
      "FROM certificates",
      "certificate counts", {t, kDay, 7 * kDay, 30 * kDay, 90 * kDay},
      [&](SqliteStatement& row) {
        stats.certificates_expired = row.Int(0);
        stats.certificates_revoked = row.Int(1);
        stats.certificates_superseded = row.Int(2);
        stats.certificates_valid = row.Int(3);
        stats.expiring_within_1d = row.Int(4);
        stats.expiring_within_7d = row.Int(5);
        stats.expiring_within_30d = row.Int(6);
        stats.expiring_within_90d = row.Int(7);
      });
  if (!certs.ok()) return certs.status();
  absl::Status subs = reader_->Query(
      "SELECT status, COUNT(*) FROM subscribers GROUP BY status ORDER BY "
      "status",
      "subscriber counts", {}, [&](SqliteStatement& row) {
        stats.subscribers[row.Text(0)] = row.Int(1);
        return true;
      });
  if (!subs.ok()) return subs;
  return stats;
}

}  // namespace simprov
