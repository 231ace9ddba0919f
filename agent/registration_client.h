// Waiting for the IoT registries (docs/registry.md): asks the
// broker's DeviceRegistry service, over mutual TLS with the credential set
// in DIR, whether this certificate is registered yet, and keeps the
// "registry" part of DIR/bootstrap.json up to date with the answer.
#ifndef SIMPROV_AGENT_REGISTRATION_CLIENT_H_
#define SIMPROV_AGENT_REGISTRATION_CLIENT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/bootstrap_client.h"

namespace simprov {

// One RegistrationStatus call; returns the registry JSON ({"status": ...,
// "registries": [...]}).
absl::StatusOr<std::string> FetchRegistrationStatus(
    const BrokerEndpoint& broker, const std::string& dir,
    absl::Duration timeout);

// Polls (every `poll`, backing off to 10 s) until the status is
// "registered" (or "none": no registry), rewriting bootstrap.json's
// "registry" each time it changes. DeadlineExceeded after `wait`, naming
// why the registration still waits.
absl::Status WaitRegistered(const BrokerEndpoint& broker,
                            const std::string& dir, absl::Duration wait,
                            absl::Duration rpc_timeout,
                            absl::Duration poll = absl::Seconds(1));

}  // namespace simprov

#endif  // SIMPROV_AGENT_REGISTRATION_CLIENT_H_
