// IoT registries (docs/registry.md): where a device is registered
// once its certificate is issued, so that it can connect to the customer's
// IoT platform with exactly its own permissions.
//
// One interface, several adapters (Mosquitto dynamic security, AWS IoT
// Core). Adapters are idempotent: registering what is already registered,
// or removing what is gone, succeeds, so the outbox may retry after a crash
// without harm. Configured by URL (--registry, --registry-file):
//   mosquitto://USER:PASS@HOST:PORT?tls=1&ca=FILE&topics=T1,T2&...
//   aws-iot://REGION?policy=NAME&thing=TEMPLATE&endpoint=URL&...
// Query values are percent-decoded; `name=` names the registry (default:
// the scheme), `password_env=VAR` reads the password from the environment,
// `rate=N` caps the deliveries the outbox makes per second (default 10 for
// aws-iot, unlimited for mosquitto; 0 means unlimited).
#ifndef SIMPROV_BROKER_REGISTRY_REGISTRY_H_
#define SIMPROV_BROKER_REGISTRY_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "nlohmann/json.hpp"

namespace simprov {

// What a registry needs to know of one device certificate. Templates are
// expanded when the certificate is issued; this is stored in the outbox.
struct DeviceRegistration {
  std::string serial;
  std::string imsi;  // the certificate CN: Mosquitto's username
  std::string device_id;
  std::string group;
  std::string cert_pem;
  std::string thing;                // the thing / client name
  std::vector<std::string> topics;  // expanded topic filters
  // The issue hook chose the thing / the topics: a policy change that
  // registers the device again keeps them.
  bool thing_from_hook = false;
  bool topics_from_hook = false;

  std::string ToJson() const;
  static absl::StatusOr<DeviceRegistration> FromJson(absl::string_view json);
};

// A parsed registry URL. Secrets (password) are never printed: Redacted()
// is what logs and errors show.
struct RegistryUrl {
  std::string scheme;  // "mosquitto" or "aws-iot"
  std::string user;
  std::string password;
  std::string host;
  int port = 0;
  std::map<std::string, std::string> query;  // percent-decoded
  std::string name;                          // query "name" or the scheme
  // Deliveries per second (query "rate"); 0: unlimited.
  double rate = 0;

  std::string Get(const std::string& key, const std::string& def = "") const;
  std::string Redacted() const;
};

// Parses URL; `password_env=VAR` fills the password from the environment.
absl::StatusOr<RegistryUrl> ParseRegistryUrl(absl::string_view url);
// "%23%7Bimsi%7D" -> "#{imsi}"; '+' stays '+'. InvalidArgument on a bad
// escape.
absl::StatusOr<std::string> PercentDecode(absl::string_view s);
// A registry's "slow down" answer (HTTP 429, ThrottlingException): the
// outbox pauses every delivery to that registry, for `retry_after` when the
// registry said how long (zero: it did not), and does not count the attempt
// against the entry. ResourceExhausted with the wait as a payload.
absl::Status ThrottledError(absl::string_view message,
                            absl::Duration retry_after);
// True for a ThrottledError; `retry_after` (may be null) gets its wait.
bool IsThrottled(const absl::Status& s, absl::Duration* retry_after);
// An HTTP Retry-After value: delta-seconds or an HTTP-date (relative to
// `now`). Zero when absent or unparsable; never negative.
absl::Duration ParseRetryAfter(absl::string_view value, absl::Time now);

// True for a literal loopback address or name: an IPv4 address in
// 127.0.0.0/8 (dotted quad), ::1 (bracketed or not, or ::ffff:127.x.y.z),
// or "localhost". Not a name that merely starts with "127.".
bool IsLoopbackHost(absl::string_view host);
// A registry file: one URL a line; blank lines and lines starting with '#'
// are ignored.
absl::StatusOr<std::vector<std::string>> ReadRegistryFile(
    const std::string& path);

class Registry {
 public:
  virtual ~Registry() = default;
  const std::string& name() const { return name_; }
  virtual std::string kind() const = 0;
  // Deliveries per second the outbox may make here (RegistryUrl::rate);
  // 0: unlimited.
  double rate() const { return rate_; }
  void set_rate(double rate) { rate_ = rate; }

  // Templates this registry uses when a group binding does not say.
  virtual std::string DefaultThingTemplate() const { return "#{device_id}"; }
  virtual std::vector<std::string> DefaultTopicTemplates() const {
    return {"devices/#{device_id}/#"};
  }

  // Registers the device; returns a JSON object the removal will need.
  // Unavailable (retry) when the registry cannot be reached; other codes
  // are retried too, with the message shown by `registry pending`.
  virtual absl::StatusOr<std::string> Register(
      const DeviceRegistration& device) = 0;
  // Undoes Register for one certificate; `registered` is what Register
  // returned. `still_valid` are the registrations here of the device's
  // other valid certificates (same device id or same IMSI): what they need
  // (a client, a role, a thing) stays, and only this certificate's own
  // objects go; with none left, everything of the device goes.
  virtual absl::Status Remove(
      const DeviceRegistration& device, const std::string& registered,
      const std::vector<DeviceRegistration>& still_valid) = 0;
  // What the device needs to connect (host, port, client_id, topics,
  // thing, server_ca ...), for the enrolment answer.
  virtual nlohmann::json ConnectionInfo(
      const DeviceRegistration& device) const = 0;

 protected:
  explicit Registry(std::string name) : name_(std::move(name)) {}

 private:
  const std::string name_;
  double rate_ = 0;
};

// Adapters by scheme. InvalidArgument for a bad URL or unknown scheme.
absl::StatusOr<std::unique_ptr<Registry>> NewMosquittoRegistry(
    const RegistryUrl& url);
absl::StatusOr<std::unique_ptr<Registry>> NewAwsIotRegistry(
    const RegistryUrl& url, Clock& clock);
absl::StatusOr<std::unique_ptr<Registry>> NewRegistry(const RegistryUrl& url,
                                                      Clock& clock);

}  // namespace simprov

#endif  // SIMPROV_BROKER_REGISTRY_REGISTRY_H_
