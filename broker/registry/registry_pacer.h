// Paces the outbox's deliveries to each registry: at most `rate` a second
// (Registry::rate, the URL's rate=), and none at all while a registry that
// answered "slow down" (a ThrottledError) backs off. The backoff is the
// registry's Retry-After when it gave one, else doubles from `base` to
// `max` with each throttling answer in a row; a delivery that goes through
// resets it. Pacing is about the registry's real request rate, so it runs
// on the monotonic clock, not the broker's injectable one.
#ifndef SIMPROV_BROKER_REGISTRY_REGISTRY_PACER_H_
#define SIMPROV_BROKER_REGISTRY_REGISTRY_PACER_H_

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "absl/time/time.h"

namespace simprov {

class RegistryPacer {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  RegistryPacer(absl::Duration base, absl::Duration max)
      : base_(base), max_(max) {}

  enum class Slot {
    kGo,      // deliver now
    kWait,    // the rate allows the next delivery at *at: wait, ask again
    kPaused,  // backing off until *at: skip this registry for now
  };
  // Asks for the next delivery to `registry` at `rate` per second (0:
  // unlimited). kGo takes the slot.
  Slot Acquire(const std::string& registry, double rate, SteadyTime now,
               SteadyTime* at);

  // A throttling answer: pauses the registry. Returns the pause.
  absl::Duration Throttled(const std::string& registry,
                           absl::Duration retry_after, SteadyTime now);
  // A delivery that was not throttled: the backoff starts over.
  void Delivered(const std::string& registry);

 private:
  struct State {
    SteadyTime next_slot{};
    SteadyTime paused_until{};
    int throttled_in_a_row = 0;
  };
  const absl::Duration base_;
  const absl::Duration max_;
  std::mutex mu_;
  std::map<std::string, State> states_;  // guarded by mu_
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_REGISTRY_REGISTRY_PACER_H_
