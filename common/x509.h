// Keys and certificates: the X.509 helpers shared by agent and broker (PEM,
// DER and PKCS#8 encodings, chain verification, certificate summaries).
// CSRs are common/csr.h, the agent's fast leaf check common/leaf_check.h,
// digests and fingerprints common/digest.h.
//
// Guarantees:
//  - Every OpenSSL object crossing this API is owned by an RAII pointer
//    (common/openssl_ptr.h); nothing here returns a pointer the caller must
//    free by hand.
//  - Parsers take untrusted input: they bound its size, require DER to be
//    consumed exactly, never prompt for passphrases, and report failures as
//    absl::Status with a reason (never the input itself).
//  - Only OpenSSL 3 non-deprecated APIs are used.
//  - All functions are thread-safe as long as the caller does not mutate the
//    objects passed in concurrently.
#ifndef SIMPROV_COMMON_X509_H_
#define SIMPROV_COMMON_X509_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {

// Upper bound on PEM/DER text accepted by the key and certificate parsers,
// in bytes (a generous bound for a bundle of a few dozen certificates).
inline constexpr size_t kMaxPemSize = 1024 * 1024;

// ---- Keys ----------------------------------------------------------------

// A fresh ECDSA P-256 key pair. Returns null only if OpenSSL fails to
// allocate (the caller treats that as fatal/internal).
EvpPkeyPtr GenerateP256Key();

// The private key as unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
// The result is a secret: the caller should wipe it after use.
absl::StatusOr<std::string> PrivateKeyToPkcs8Pem(EVP_PKEY* key);
// Parses an unencrypted private key in PEM (PKCS#8 or traditional).
// Encrypted keys fail (no passphrase prompt). Errors never echo the input.
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(std::string_view pem);

// The DER SubjectPublicKeyInfo of `key` (public half only).
absl::StatusOr<Bytes> PublicKeyToDer(EVP_PKEY* key);
// True iff both keys have the same type, parameters and public key
// (EVP_PKEY_eq). False if either is null.
bool SamePublicKey(EVP_PKEY* a, EVP_PKEY* b);

// Writes an EC named-curve public key into `dst` (the SubjectPublicKeyInfo
// of a certificate or CSR being built) directly from its encoded point.
// OpenSSL 3.0's X509_set_pubkey encodes and decodes the key through its
// provider machinery (~165 us, most of a bootstrap's key handling); this
// costs ~1 us. The object then has no cached EVP_PKEY: read the key back
// from its DER encoding. False (nothing changed) for other key types.
bool SetEcPublicKeyDirect(X509_PUBKEY* dst, EVP_PKEY* key);

// ---- Certificates --------------------------------------------------------

// The first certificate in `pem`; NotFound if there is none.
absl::StatusOr<X509Ptr> CertFromPem(std::string_view pem);
// All certificates in a PEM bundle, in order (other PEM blocks are skipped).
// InvalidArgument if a certificate block is malformed; NotFound if there
// are no certificates.
absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(std::string_view pem);
// Exactly one DER certificate (trailing bytes are an error).
absl::StatusOr<X509Ptr> CertFromDer(const Bytes& der);
// DER/PEM encodings. `cert` must be non-null and well formed; an encoding
// failure (out of memory) yields an empty result.
Bytes CertToDer(X509* cert);
std::string CertToPem(X509* cert);

// Verifies that `leaf` chains, through `intermediates` (untrusted helpers,
// may be empty), to one of `anchors` (the only trusted certificates; the
// system trust store is never consulted), with all validity periods checked
// at time `at` (whole seconds; sub-second part truncated). `purpose` is an
// OpenSSL purpose short name ("sslclient", "sslserver", ...) checked against
// every certificate's EKU/keyUsage, or "" for no purpose check.
// Unauthenticated with X509_verify_cert_error_string text on failure;
// InvalidArgument for a null leaf, no anchors or an unknown purpose.
absl::Status VerifyChain(X509* leaf, const std::vector<X509*>& intermediates,
                         const std::vector<X509*>& anchors, absl::Time at,
                         std::string_view purpose);

struct CertInfo {
  // Distinguished names in RFC 2253 form, e.g. "CN=001010123456789".
  std::string subject;
  std::string issuer;
  // The serial number as lower-case big-endian hex without leading zero
  // bytes ("00" for zero; a leading "-" if negative).
  std::string serial_hex;
  // Validity period (whole seconds, UTC).
  absl::Time not_before;
  absl::Time not_after;
  // subjectAltName entries by type; IP addresses in inet_ntop text form.
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  std::vector<std::string> uri_sans;
  // basicConstraints CA:TRUE.
  bool is_ca = false;
};

// A summary of `cert` for logs, tests and policy checks.
CertInfo DescribeCert(X509* cert);

// PEM of a DER certificate, as CertToPem writes it, without parsing it.
std::string CertDerToPem(const Bytes& der);

namespace internal {
// The CertInfo of a certificate's decoded parts: DescribeCert's summary,
// shared with VerifyP256LeafFast (common/leaf_check.h), which decodes the
// parts itself.
CertInfo DescribeParts(const X509_NAME* subject, const X509_NAME* issuer,
                       const ASN1_INTEGER* serial_number,
                       const ASN1_TIME* not_before, const ASN1_TIME* not_after,
                       const GENERAL_NAMES* names, bool is_ca);
}  // namespace internal

}  // namespace simprov

#endif  // SIMPROV_COMMON_X509_H_
