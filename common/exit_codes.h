// Exit codes shared by every simprov command line (documented in
// docs/cli.md). Scripts rely on these numbers: never renumber.
#ifndef SIMPROV_COMMON_EXIT_CODES_H_
#define SIMPROV_COMMON_EXIT_CODES_H_

#include "absl/status/status.h"

namespace simprov {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,        // internal or unexpected error
  kExitUsage = 2,        // bad usage or bad input (flags, files, arguments)
  kExitRefused = 3,      // refused: by the SIM or by the broker
  kExitUnreachable = 4,  // broker unreachable or unavailable (retryable)
  kExitRateLimited = 5,  // rate-limited; retry later
  kExitInvalid = 6,      // the token checked is not valid (token verify)
};

// Maps a status to the exit code a CLI returns for it.
inline int ExitCodeFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return kExitUsage;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kExitRefused;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnreachable;
    case absl::StatusCode::kResourceExhausted:
      return kExitRateLimited;
    default:
      return kExitError;
  }
}

}  // namespace simprov

#endif  // SIMPROV_COMMON_EXIT_CODES_H_
