// Device tokens on the agent side (docs/tokens.md): asks the broker's
// Tokens service for a token over mutual TLS with the credentials in DIR,
// and keeps a fresh token in a file for local applications.
#ifndef SIMPROV_AGENT_TOKEN_CLIENT_H_
#define SIMPROV_AGENT_TOKEN_CLIENT_H_

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/bootstrap_client.h"
#include "common/clock.h"

namespace simprov {

struct TokenRequestSpec {
  std::vector<std::string> audiences;
  std::vector<std::string> scopes;
  absl::Duration ttl = absl::ZeroDuration();  // zero: the broker's default
};

struct DeviceToken {
  std::string token;  // JWS compact
  std::string jti;
  absl::Time issued_at;
  absl::Time expires_at;
};

// One IssueToken call with the credential set in `dir` (device.key,
// chain.pem, ca.pem).
absl::StatusOr<DeviceToken> RequestDeviceToken(const BrokerEndpoint& broker,
                                               const std::string& dir,
                                               const TokenRequestSpec& spec,
                                               absl::Duration timeout);

// When a token issued at `issued` and expiring at `expires` is refreshed:
// at 2/3 of its life.
absl::Time TokenRefreshTime(absl::Time issued, absl::Time expires);

// Keeps `path` (0600, replaced atomically) holding a fresh token: refreshed
// at 2/3 of its life, after every credential renewal (Renewed()), and
// retried with backoff after a failure. Runs on its own thread.
class TokenFileKeeper {
 public:
  TokenFileKeeper(BrokerEndpoint broker, std::string dir, std::string path,
                  TokenRequestSpec spec, absl::Duration timeout, Clock& clock);
  ~TokenFileKeeper();
  void Start();
  // The credential set changed: get a token bound to the new certificate.
  void Renewed();
  void Stop();

 private:
  void Loop();

  const BrokerEndpoint broker_;
  const std::string dir_;
  const std::string path_;
  const TokenRequestSpec spec_;
  const absl::Duration timeout_;
  Clock& clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;     // guarded by mu_
  bool renewed_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace simprov

#endif  // SIMPROV_AGENT_TOKEN_CLIENT_H_
