// The fleet's gauges on /metrics (names in docs/operations.md):
// certificates by status and by time to expiry, subscribers by status.
// Counting reads every certificate, so the counts are cached: the broker's
// sweeper calls MaybeRefresh, which reads the store at most once per
// refresh interval; a scrape only renders the cached counts.
#ifndef SIMPROV_BROKER_OPS_FLEET_GAUGES_H_
#define SIMPROV_BROKER_OPS_FLEET_GAUGES_H_

#include <mutex>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "broker/ops/metrics.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

class FleetGauges {
 public:
  // Registers simprov_certificates{status}, simprov_certificates_expiring
  // {within}, simprov_subscribers{status} and
  // simprov_fleet_stats_age_seconds in `registry`.
  FleetGauges(MetricsRegistry& registry, Store& store, Clock& clock,
              absl::Duration refresh);

  // Reads the store when none has been read yet or `refresh` has passed
  // since the last read. On an error the old counts stay (their age
  // grows).
  absl::Status MaybeRefresh();
  // Reads the store now.
  absl::Status Refresh();

 private:
  MetricsRegistry::GaugeSamples Certificates() const;
  MetricsRegistry::GaugeSamples Expiring() const;
  MetricsRegistry::GaugeSamples Subscribers() const;
  double AgeSeconds() const;

  Store& store_;
  Clock& clock_;
  const absl::Duration refresh_;
  std::mutex refresh_mu_;  // one store read at a time
  mutable std::mutex mu_;
  std::optional<FleetStats> stats_;                 // guarded by mu_
  absl::Time read_at_ = absl::InfinitePast();       // guarded by mu_
  absl::Time attempted_at_ = absl::InfinitePast();  // guarded by mu_
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_OPS_FLEET_GAUGES_H_
