#include "broker/ops/fleet_gauges.h"

#include <map>
#include <string>
#include <utility>

namespace simprov {

FleetGauges::FleetGauges(MetricsRegistry& registry, Store& store, Clock& clock,
                         absl::Duration refresh)
    : store_(store), clock_(clock), refresh_(refresh) {
  registry.AddGaugeFamily(
      "simprov_certificates",
      "Device certificates by status (valid, superseded, revoked, expired; "
      "each counted once), as of the last count",
      {"status"}, [this] { return Certificates(); });
  registry.AddGaugeFamily(
      "simprov_certificates_expiring",
      "Valid (current, unrevoked) device certificates expiring within 1d, "
      "7d, 30d, 90d (cumulative), as of the last count",
      {"within"}, [this] { return Expiring(); });
  registry.AddGaugeFamily("simprov_subscribers",
                          "Subscribers by status, as of the last count",
                          {"status"}, [this] { return Subscribers(); });
  registry.AddGauge("simprov_fleet_stats_age_seconds",
                    "Seconds since the certificate and subscriber counts "
                    "were read from the store (-1: never)",
                    [this] { return AgeSeconds(); });
}

absl::Status FleetGauges::MaybeRefresh() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (clock_.Now() < attempted_at_ + refresh_) return absl::OkStatus();
  }
  return Refresh();
}

absl::Status FleetGauges::Refresh() {
  std::lock_guard<std::mutex> one(refresh_mu_);
  const absl::Time now = clock_.Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    attempted_at_ = now;
  }
  absl::StatusOr<FleetStats> stats = store_.GetFleetStats(now);
  if (!stats.ok()) return stats.status();
  std::lock_guard<std::mutex> lock(mu_);
  stats_ = *std::move(stats);
  read_at_ = now;
  return absl::OkStatus();
}

MetricsRegistry::GaugeSamples FleetGauges::Certificates() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stats_) return {};
  const FleetStats& s = *stats_;
  return {{{"valid"}, static_cast<double>(s.certificates_valid)},
          {{"superseded"}, static_cast<double>(s.certificates_superseded)},
          {{"revoked"}, static_cast<double>(s.certificates_revoked)},
          {{"expired"}, static_cast<double>(s.certificates_expired)}};
}

MetricsRegistry::GaugeSamples FleetGauges::Expiring() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stats_) return {};
  const FleetStats& s = *stats_;
  return {{{"1d"}, static_cast<double>(s.expiring_within_1d)},
          {{"7d"}, static_cast<double>(s.expiring_within_7d)},
          {{"30d"}, static_cast<double>(s.expiring_within_30d)},
          {{"90d"}, static_cast<double>(s.expiring_within_90d)}};
}

MetricsRegistry::GaugeSamples FleetGauges::Subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stats_) return {};
  // The statuses the broker sets are always present (0 when none), so a
  // dashboard sees them before the first suspension.
  std::map<std::string, int64_t> counts = {{kStatusActive, 0},
                                           {kStatusSuspended, 0},
                                           {kStatusTerminated, 0},
                                           {kStatusReplaced, 0}};
  for (const auto& [status, n] : stats_->subscribers) counts[status] = n;
  MetricsRegistry::GaugeSamples out;
  for (const auto& [status, n] : counts) {
    out.push_back({{status}, static_cast<double>(n)});
  }
  return out;
}

double FleetGauges::AgeSeconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stats_) return -1;
  return static_cast<double>(absl::ToInt64Seconds(clock_.Now() - read_at_));
}

}  // namespace simprov
