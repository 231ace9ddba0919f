// The in-band proof of possession of a renewal: what a device whose key
// cannot sign inside TLS (a TPM, the SIM's IoT SAFE applet) signs instead
// of presenting its certificate in the handshake (docs/security.md,
// "Renewal with a hardware key").
//
// The device signs, with the key of its current certificate (ECDSA P-256,
// SHA-256), the message
//
//   label || broker identity || broker nonce || SHA-256(leaf DER)
//         || SHA-256(CSR DER)
//
// each field prefixed with its length (4 bytes, big endian). The broker
// identity is the host the agent verified the broker's certificate for;
// the nonce is the broker's, fresh (RenewNonce); the CSR is the request's,
// for the NEW key.
#ifndef SIMPROV_COMMON_RENEW_PROOF_H_
#define SIMPROV_COMMON_RENEW_PROOF_H_

#include <string_view>

#include "absl/status/status.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {

inline constexpr std::string_view kRenewProofLabel =
    "simprov renewal proof of possession v1";

// The bytes the device signs.
Bytes RenewProofMessage(std::string_view broker_identity, const Bytes& nonce,
                        const Bytes& leaf_der, const Bytes& csr_der);

// OK iff `signature` (DER ECDSA-Sig-Value) verifies over `message` with
// SHA-256 under `public_key` (an EC key); Unauthenticated otherwise.
absl::Status VerifyRenewProof(EVP_PKEY* public_key, const Bytes& message,
                              const Bytes& signature);

}  // namespace simprov

#endif  // SIMPROV_COMMON_RENEW_PROOF_H_
