#include "broker/ops/broker_metrics.h"

#include "absl/strings/match.h"

namespace simprov {

BrokerMetrics::BrokerMetrics(MetricsRegistry& registry)
    : registry_(registry),
      bootstraps_(registry.AddCounterFamily(
          "simprov_bootstraps_total",
          "Bootstrap (enrol) attempts after a challenge, by result",
          {"result"})),
      renewals_(registry.AddCounterFamily("simprov_renewals_total",
                                          "Certificate renewals, by result",
                                          {"result"})),
      renewals_refused_(registry.AddCounterFamily(
          "simprov_renewals_refused_total",
          "Renewals refused because the presented certificate was "
          "superseded (suspected clones), by reason",
          {"reason"})),
      time_(registry.AddCounterFamily("simprov_time_requests_total",
                                      "Authenticated time requests, by result",
                                      {"result"})),
      tokens_(registry.AddCounterFamily("simprov_tokens_total",
                                        "Device token requests, by result",
                                        {"result"})),
      challenge_failures_(registry.AddCounterFamily(
          "simprov_challenge_failures_total",
          "AKA challenges that failed or were decoys, by reason", {"reason"})),
      store_write_(registry.AddHistogram(
          "simprov_store_write_seconds",
          "Store write latency (queue wait and group commit), seconds")) {
  // Zero-valued children so dashboards see the series before the first
  // event.
  for (CounterFamily* f : {&bootstraps_, &renewals_, &tokens_}) {
    f->WithLabels({"ok"});
  }
  renewals_refused_.WithLabels({"superseded"});
}

std::string BrokerMetrics::RefusalLabel(absl::string_view reason) {
  if (reason == "RES does not match" ||
      reason == "request MAC does not verify") {
    return "auth_failed";
  }
  if (reason == "unknown IMSI") return "unknown_imsi";
  if (absl::StrContains(reason, "subscriber is")) return "inactive";
  if (absl::StrContains(reason, "session")) return "session";
  if (absl::StrContains(reason, "revoked")) return "revoked";
  if (reason == "superseded") return "superseded";
  if (absl::StrContains(reason, "IMEI")) return "imei";
  if (absl::StrContains(reason, "broker identity")) return "broker_identity";
  if (absl::StrContains(reason, "CSR") || absl::StrContains(reason, "key")) {
    return "csr";
  }
  return "policy";
}

std::string BrokerMetrics::StatusLabel(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return "ok";
    case absl::StatusCode::kUnauthenticated:
      return "unauthenticated";
    case absl::StatusCode::kPermissionDenied:
      return "denied";
    case absl::StatusCode::kInvalidArgument:
      return "invalid";
    case absl::StatusCode::kFailedPrecondition:
      return "refused";
    case absl::StatusCode::kUnavailable:
      return "unavailable";
    default:
      return "error";
  }
}

void BrokerMetrics::Succeeded(absl::string_view action) {
  if (action == "bootstrap") {
    bootstraps_.WithLabels({"ok"}).Inc();
  } else if (action == "renew") {
    renewals_.WithLabels({"ok"}).Inc();
  } else if (action == "time") {
    time_.WithLabels({"ok"}).Inc();
  }
}

void BrokerMetrics::Refused(absl::string_view action,
                            absl::string_view reason) {
  const std::string label = RefusalLabel(reason);
  if (label == "auth_failed") ChallengeFailure("mac");
  if (action == "bootstrap") {
    bootstraps_.WithLabels({label}).Inc();
  } else if (action == "renew") {
    renewals_.WithLabels({label}).Inc();
  } else if (action == "time") {
    time_.WithLabels({label}).Inc();
  }
}

void BrokerMetrics::RenewalRefused(absl::string_view reason) {
  renewals_refused_.WithLabels({std::string(reason)}).Inc();
}

void BrokerMetrics::ChallengeFailure(absl::string_view reason) {
  challenge_failures_.WithLabels({std::string(reason)}).Inc();
}

void BrokerMetrics::TokenRequest(const absl::Status& status) {
  tokens_.WithLabels({StatusLabel(status)}).Inc();
}

void BrokerMetrics::ObserveStoreWrite(absl::Duration d) {
  store_write_.Observe(absl::ToDoubleSeconds(d));
}

void BrokerMetrics::RegisterOutbox(std::function<double()> depth,
                                   std::function<double()> oldest_age_seconds) {
  registry_.AddGauge("simprov_outbox_depth",
                     "Registry outbox entries waiting for delivery",
                     std::move(depth));
  registry_.AddGauge("simprov_outbox_oldest_age_seconds",
                     "Age of the oldest outbox entry, seconds (0 when empty)",
                     std::move(oldest_age_seconds));
}

std::function<void(const std::string&)> BrokerMetrics::RegisterRegistries(
    const std::vector<std::string>& names) {
  CounterFamily& throttled = registry_.AddCounterFamily(
      "simprov_registry_throttled_total",
      "Throttling answers from an IoT registry (each pauses every delivery "
      "to it), by registry",
      {"registry"});
  for (const std::string& n : names) throttled.WithLabels({n});
  return [&throttled](const std::string& registry) {
    throttled.WithLabels({registry}).Inc();
  };
}

void BrokerMetrics::RegisterExpiry(ExpirySources sources) {
  registry_.AddGaugeFamily(
      "simprov_ca_not_after_seconds",
      "notAfter of each CA certificate the broker holds, Unix seconds, by "
      "role (root, intermediate, issuing; staged_* and retired_* for the "
      "staged and the retired generations) and serial",
      {"ca", "serial"}, std::move(sources.ca_not_after));
  registry_.AddGauge("simprov_crl_next_update_seconds",
                     "nextUpdate of the device CRL served, Unix seconds (0 "
                     "before the first)",
                     std::move(sources.crl_next_update));
  registry_.AddGaugeFamily(
      "simprov_token_key_not_after_seconds",
      "When each token signing key stops signing, Unix seconds, by kid",
      {"kid"}, std::move(sources.token_key_not_after));
  registry_.AddGauge("simprov_ca_activation_pending",
                     "1 while an operator CA is staged and not yet active",
                     std::move(sources.ca_activation_pending));
  registry_.AddGauge("simprov_ca_activation_time_seconds",
                     "When the staged CA activates, Unix seconds (0: none "
                     "staged)",
                     std::move(sources.ca_activation_time));
}

}  // namespace simprov
