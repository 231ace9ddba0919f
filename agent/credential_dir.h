// The device's credential directory, switched atomically as one set.
//
//   DIR/device.key      PKCS#8 PEM, 0600 (the key never leaves the device),
//                       or the reference a hardware key store keeps
//                       (agent/keys/device_key.h)
//   DIR/device.crt      leaf certificate
//   DIR/chain.pem       leaf + issuing CA
//   DIR/ca.pem          trust anchor(s)
//   DIR/bootstrap.json  device_id, imsi, broker, serial, not_after,
//                       server_time, registry info
//
// Each name is a symlink into DIR/.current, itself a symlink to a complete,
// fsynced generation directory DIR/.gen-XXXXXXXX. Switching is one
// rename(2) of .current, so a crash at any moment leaves the old complete
// set or the new complete set, never a mix.
#ifndef SIMPROV_AGENT_CREDENTIAL_DIR_H_
#define SIMPROV_AGENT_CREDENTIAL_DIR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/bootstrap_client.h"
#include "common/clock.h"

namespace simprov {

inline constexpr const char* kCredentialFiles[] = {
    "device.key", "device.crt", "chain.pem", "ca.pem", "bootstrap.json"};

// The JSON written to bootstrap.json.
std::string BootstrapJson(const Credentials& c, const std::string& broker);

// The IMSI recorded in bootstrap.json.
absl::StatusOr<std::string> ImsiFromBootstrapJson(const std::string& json);

absl::Status WriteCredentialSet(const std::string& dir, const Credentials& c,
                                const std::string& broker, Random& random);

// Tests only: `hook` is called at every step of WriteCredentialSet (a test
// that crashes the process there checks that the set stays usable).
void SetCredentialWriteStepHookForTesting(void (*hook)(const char* step));

// OK when DIR holds a complete set whose certificate matches its key and is
// valid at `now`; FailedPrecondition (with the reason) otherwise. The key is
// loaded through `keys` (null: a file key).
absl::Status CheckExistingCredentials(const std::string& dir, absl::Time now,
                                      KeyStore* keys = nullptr);

}  // namespace simprov

#endif  // SIMPROV_AGENT_CREDENTIAL_DIR_H_
