// The --issue-hook webhook (docs/registry.md): before signing, the
// broker POSTs a JSON event to the customer's URL, signed with HMAC-SHA-256:
//
//   X-Simprov-Timestamp: <unix seconds>
//   X-Simprov-Signature: v1=<hex HMAC-SHA-256(secret, timestamp "." body)>
//
// A 2xx answer whose JSON has "allow": true (or no "allow") lets the
// certificate be issued; its optional "thing" and "topics" replace the
// registry templates for this device. "allow": false, any other status,
// or no answer within the timeout refuses (PermissionDenied, no
// certificate); with `allow_on_timeout` an unanswered hook lets it pass.
#ifndef SIMPROV_BROKER_REGISTRY_ISSUE_HOOK_H_
#define SIMPROV_BROKER_REGISTRY_ISSUE_HOOK_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/enrol/issuance_hooks.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

struct IssueHookOptions {
  std::string url;  // https://..., or http:// on loopback only
  Bytes secret;     // HMAC key; never logged
  absl::Duration timeout = absl::Seconds(5);
  bool allow_on_timeout = false;
};

// The signature header value for `body` sent at `timestamp`.
std::string IssueHookSignature(const Bytes& secret,
                               const std::string& timestamp,
                               const std::string& body);

class IssueHook {
 public:
  // InvalidArgument for a URL that is neither https nor loopback http.
  static absl::StatusOr<std::unique_ptr<IssueHook>> Create(
      IssueHookOptions options, Clock& clock);

  // OK with the answer's registry details ("" if none), PermissionDenied
  // when refused.
  absl::StatusOr<std::string> Call(const IssuanceContext& c);

 private:
  IssueHook(IssueHookOptions options, Clock& clock, std::string scheme_host,
            std::string path)
      : options_(std::move(options)),
        clock_(clock),
        scheme_host_(std::move(scheme_host)),
        path_(std::move(path)) {}

  const IssueHookOptions options_;
  Clock& clock_;
  const std::string scheme_host_;
  const std::string path_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_REGISTRY_ISSUE_HOOK_H_
