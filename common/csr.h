// Certificate signing requests: the agent makes one (CreateCsr), the broker
// parses and checks the one a device sent (ParseAndVerifyCsr).
//
// Guarantees:
//  - ParseAndVerifyCsr takes untrusted input: it bounds its size, requires
//    the DER to be consumed exactly, and reports failures as absl::Status
//    with a reason (never the input itself).
//  - It accepts only the key types the broker will certify (EC P-256,
//    EC P-384, Ed25519, RSA 2048..8192 bits) and only after the CSR's
//    self-signature verifies. The common P-256 shape is walked directly
//    (OpenSSL 3.0 decodes keys slowly); the fast path never accepts what
//    the general OpenSSL path refuses.
//  - CreateCsr signs with SHA-256 (no digest for Ed25519/Ed448, which hash
//    internally). Only OpenSSL 3 non-deprecated APIs are used.
#ifndef SIMPROV_COMMON_CSR_H_
#define SIMPROV_COMMON_CSR_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {

// Upper bound on a CSR accepted by ParseAndVerifyCsr, in bytes.
inline constexpr size_t kMaxCsrDerSize = 16 * 1024;

// A DER PKCS#10 CertificationRequest (version 1) with subject CN=common_name,
// the public half of `key`, no attributes, self-signed with `key` using
// SHA-256 (no digest for Ed25519/Ed448).
absl::StatusOr<Bytes> CreateCsr(EVP_PKEY* key, std::string_view common_name);

struct CsrInfo {
  // The CSR's subject public key (public half only).
  EvpPkeyPtr public_key;
  // "P-256", "P-384", "Ed25519" or "RSA-<bits>" (e.g. "RSA-2048").
  std::string key_type;
};

// Parses a DER PKCS#10 CSR and verifies its self-signature (proof of
// possession). InvalidArgument with a reason when: larger than
// kMaxCsrDerSize, not exactly one DER CSR, not version 1, the key type is
// unsupported (the message names it, e.g. "EC P-224", "RSA-1024"), or the
// signature does not verify. The CSR subject is deliberately not returned:
// the broker decides the subject, not the device.
absl::StatusOr<CsrInfo> ParseAndVerifyCsr(const Bytes& der);

namespace internal {
// The general path of ParseAndVerifyCsr, without the P-256 fast path; for
// tests that check the two agree.
absl::StatusOr<CsrInfo> ParseAndVerifyCsrGeneral(const Bytes& der);
}  // namespace internal

}  // namespace simprov

#endif  // SIMPROV_COMMON_CSR_H_
