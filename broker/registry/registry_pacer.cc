#include "broker/registry/registry_pacer.h"

#include <algorithm>

namespace simprov {

RegistryPacer::Slot RegistryPacer::Acquire(const std::string& registry,
                                           double rate, SteadyTime now,
                                           SteadyTime* at) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = states_[registry];
  if (now < s.paused_until) {
    *at = s.paused_until;
    return Slot::kPaused;
  }
  if (rate <= 0) return Slot::kGo;
  if (now < s.next_slot) {
    *at = s.next_slot;
    return Slot::kWait;
  }
  // One delivery every 1/rate seconds, no bursts: a slot missed while idle
  // is not saved up for later.
  s.next_slot = now + std::chrono::duration_cast<SteadyTime::duration>(
                          std::chrono::duration<double>(1.0 / rate));
  *at = now;
  return Slot::kGo;
}

absl::Duration RegistryPacer::Throttled(const std::string& registry,
                                        absl::Duration retry_after,
                                        SteadyTime now) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = states_[registry];
  absl::Duration pause = base_;
  for (int i = 0; i < s.throttled_in_a_row && pause < max_; ++i) pause *= 2;
  pause = std::min(pause, max_);
  if (retry_after > absl::ZeroDuration()) pause = retry_after;
  ++s.throttled_in_a_row;
  s.paused_until =
      std::max(s.paused_until, now + absl::ToChronoNanoseconds(pause));
  return pause;
}

void RegistryPacer::Delivered(const std::string& registry) {
  std::lock_guard<std::mutex> lock(mu_);
  states_[registry].throttled_in_a_row = 0;
}

}  // namespace simprov
