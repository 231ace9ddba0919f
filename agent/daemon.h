// The agent's long-running mode and the steps it shares with the one-shot
// commands: SIM bootstrap with bounded retries, mutual-TLS renewal, and the
// renewal schedule.
//
// Schedule: renew at 2/3 of the certificate's lifetime counted from
// issuance (the server time of the answer, not the backdated NotBefore),
// earlier by a random jitter of up to 1/12 of the lifetime so that a fleet
// provisioned together does not renew together. A refused renewal (expired,
// revoked, suspended) or an expired certificate falls back to a SIM
// bootstrap; an unreachable broker is retried with bounded exponential
// backoff and jitter. The old set stays usable until the new one is in place.
#ifndef SIMPROV_AGENT_DAEMON_H_
#define SIMPROV_AGENT_DAEMON_H_

#include <signal.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/bootstrap_client.h"
#include "agent/token_client.h"
#include "common/clock.h"

namespace simprov {

struct AgentConfig {
  BrokerEndpoint broker;
  std::string sim_spec;       // --sim
  KeySpec key;                // --key (agent/keys/device_key.h)
  std::string out;            // --out
  std::string pinned_ca_pem;  // contents of --broker-ca; empty: none
  AgentOptions options;
  int attempts = 3;      // per SIM bootstrap, when unreachable
  std::string on_renew;  // shell command run after a new set is in place
  absl::Duration min_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  // --token-file: keep a fresh device token there (docs/tokens.md).
  std::string token_file;
  TokenRequestSpec token_spec;
};

// TLS that does not verify against the pinned CA: not a network hiccup.
bool TlsVerificationFailed(const absl::Status& s);
// Worth retrying later (broker down, deadline, rate limit).
bool Retryable(const absl::Status& s);

// Full jitter: a random duration in [d/2, d].
absl::Duration Jittered(absl::Duration d, Random& random);

// Bootstraps with the SIM (up to config.attempts tries) and writes the set.
absl::StatusOr<Credentials> BootstrapAndWrite(const AgentConfig& config,
                                              Clock& clock, Random& random);
// Renews with the set in config.out and writes the new set.
absl::StatusOr<Credentials> RenewAndWrite(const AgentConfig& config,
                                          Clock& clock, Random& random);

// Sets the system clock; injected so that tests never change the machine's.
class ClockSetter {
 public:
  virtual ~ClockSetter() = default;
  virtual absl::Status Set(absl::Time t) = 0;
  // clock_settime(CLOCK_REALTIME): needs CAP_SYS_TIME.
  static ClockSetter& System();
};

struct ClockCheck {
  AuthenticatedTime authenticated;
  absl::Time local;
  absl::Duration skew;  // local - authenticated
  bool set = false;     // the clock was set
};

// The authenticated time never goes backwards within one boot: it is at
// least the last authenticated time (kept in `state_path`, with the boot id
// and the elapsed clock's reading) plus the elapsed time since. Records `t`
// (or the floor) as the new last authenticated time. `state_path` empty:
// no floor, nothing recorded.
// `now_elapsed`: the elapsed clock's reading at the moment `t` describes.
absl::Time ApplyTimeFloor(const std::string& state_path, absl::Time t,
                          absl::Time now_elapsed, const std::string& boot_id);
// /proc/sys/kernel/random/boot_id, or empty.
std::string BootId();

// Gets authenticated time through a fresh AKA exchange and compares it with
// `local`; with `setter`, sets the clock when |skew| exceeds `max_skew`.
// With config.out set, applies ApplyTimeFloor with DIR/time.json.
absl::StatusOr<ClockCheck> CheckClock(const AgentConfig& config, Clock& local,
                                      Random& random, ClockSetter* setter,
                                      absl::Duration max_skew);

// When a certificate issued at `issued` and expiring at `not_after` is due.
absl::Time RenewalTime(absl::Time issued, absl::Time not_after, Random& random);

// Runs until one of `stop` arrives (they must be blocked in every thread).
// Returns the exit code.
int RunDaemon(const AgentConfig& config, const sigset_t& stop, Clock& clock,
              Random& random);

}  // namespace simprov

#endif  // SIMPROV_AGENT_DAEMON_H_
