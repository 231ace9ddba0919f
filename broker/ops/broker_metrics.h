// The broker's metrics (names in docs/operations.md), registered once in a
// MetricsRegistry and handed to the services that count them. Free-form
// refusal reasons are folded into a few low-cardinality label values.
#ifndef SIMPROV_BROKER_OPS_BROKER_METRICS_H_
#define SIMPROV_BROKER_OPS_BROKER_METRICS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "broker/ops/metrics.h"

namespace simprov {

class BrokerMetrics {
 public:
  explicit BrokerMetrics(MetricsRegistry& registry);

  // A device action ("bootstrap", "renew", "time") that succeeded.
  void Succeeded(absl::string_view action);
  // A device action refused with a reason as audited.
  void Refused(absl::string_view action, absl::string_view reason);
  // A renewal refused for a reason worth its own series: "superseded" (a
  // certificate a newer one replaced was presented: a suspected clone).
  void RenewalRefused(absl::string_view reason);
  // A challenge that cannot lead anywhere or was rejected: "mac" (RES or
  // request MAC wrong), "sync" (the SIM asked for resynchronisation),
  // "sync_refused" (AUTS did not verify), "unknown_imsi", "inactive".
  void ChallengeFailure(absl::string_view reason);
  // The outcome of a device token request.
  void TokenRequest(const absl::Status& status);
  // One store write (queue wait + group commit), wall time.
  void ObserveStoreWrite(absl::Duration d);

  // The outbox registers its gauges here: depth in entries and
  // the age of its oldest entry in seconds (0 when empty).
  void RegisterOutbox(std::function<double()> depth,
                      std::function<double()> oldest_age_seconds);

  // Registers simprov_registry_throttled_total{registry} with a zero
  // series per registry; returns what counts one throttling answer. Once.
  std::function<void(const std::string&)> RegisterRegistries(
      const std::vector<std::string>& names);

  // What expires, read at every scrape (each callback thread-safe and
  // cheap: in-memory state only). Times are Unix seconds.
  struct ExpirySources {
    // (ca role, serial) -> notAfter of each CA certificate held.
    std::function<MetricsRegistry::GaugeSamples()> ca_not_after;
    // nextUpdate of the CRL served (0 before the first).
    std::function<double()> crl_next_update;
    // (kid) -> when each token signing key stops signing.
    std::function<MetricsRegistry::GaugeSamples()> token_key_not_after;
    // Whether an operator CA is staged, and when it activates (0: none).
    std::function<double()> ca_activation_pending;
    std::function<double()> ca_activation_time;
  };
  void RegisterExpiry(ExpirySources sources);

  // The label value a refusal reason maps to.
  static std::string RefusalLabel(absl::string_view reason);
  static std::string StatusLabel(const absl::Status& status);

 private:
  MetricsRegistry& registry_;
  CounterFamily& bootstraps_;
  CounterFamily& renewals_;
  CounterFamily& renewals_refused_;
  CounterFamily& time_;
  CounterFamily& tokens_;
  CounterFamily& challenge_failures_;
  Histogram& store_write_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_OPS_BROKER_METRICS_H_
