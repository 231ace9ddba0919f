// Keys in a TPM 2.0 through the tpm2-openssl provider (Debian tpm2-openssl),
// loaded into a library context of its own: the process's default context,
// and so gRPC's TLS, never sees the provider (docs/security.md says why).
//
// The key pair is generated inside the TPM (ECC P-256) under the storage
// hierarchy's primary key; DIR/device.key holds the TPM's wrapped blob as
// TSS2 PEM ("-----BEGIN TSS2 PRIVATE KEY-----"), which only that TPM can
// load.
#ifndef SIMPROV_AGENT_KEYS_TPM2_KEY_H_
#define SIMPROV_AGENT_KEYS_TPM2_KEY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/keys/device_key.h"

namespace simprov {

// Connects to the TPM at `tcti` (tss2 TCTI syntax, e.g. device:/dev/tpmrm0,
// swtpm:host=127.0.0.1,port=2321). FailedPrecondition "TPM not reachable at
// TCTI" when the provider cannot start; the tss2 libraries' own logging is
// silenced unless TSS2_LOG is set.
absl::StatusOr<std::unique_ptr<KeyStore>> OpenTpm2KeyStore(
    const std::string& tcti);

}  // namespace simprov

#endif  // SIMPROV_AGENT_KEYS_TPM2_KEY_H_
