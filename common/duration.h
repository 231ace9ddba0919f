// Human durations on command lines and in config: "90s", "5m", "2h", "30d",
// "1h30m", "250ms". A bare number is rejected (units are never guessed).
#ifndef SIMPROV_COMMON_DURATION_H_
#define SIMPROV_COMMON_DURATION_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace simprov {

absl::StatusOr<absl::Duration> ParseHumanDuration(absl::string_view text);

// "host:port" or "[v6]:port" -> host (without brackets) and port.
struct HostPort {
  std::string host;
  int port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

}  // namespace simprov

#endif  // SIMPROV_COMMON_DURATION_H_
