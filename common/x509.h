// Keys, CSRs and certificates: the X.509 helpers shared by agent and broker.
//
// Guarantees:
//  - Every OpenSSL object crossing this API is owned by an RAII pointer
//    (common/openssl_ptr.h); nothing here returns a pointer the caller must
//    free by hand.
//  - Parsers take untrusted input: they bound its size, require DER to be
//    consumed exactly, never prompt for passphrases, and report failures as
//    absl::Status with a reason (never the input itself).
//  - ParseAndVerifyCsr accepts only the key types the broker will certify
//    (EC P-256, EC P-384, Ed25519, RSA 2048..8192 bits) and only after the
//    CSR's self-signature verifies.
//  - Signing uses SHA-256 (no digest for Ed25519/Ed448, which hash
//    internally). Only OpenSSL 3 non-deprecated APIs are used.
//  - All functions are thread-safe as long as the caller does not mutate the
//    objects passed in concurrently.
#ifndef SIMPROV_COMMON_X509_H_
#define SIMPROV_COMMON_X509_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {

// Upper bound on a CSR accepted by ParseAndVerifyCsr, in bytes.
inline constexpr size_t kMaxCsrDerSize = 16 * 1024;
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

// ---- CSRs ----------------------------------------------------------------

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
// Writes an EC named-curve public key into `dst` (the SubjectPublicKeyInfo
// of a certificate or CSR being built) directly from its encoded point.
// OpenSSL 3.0's X509_set_pubkey encodes and decodes the key through its
// provider machinery (~165 us, most of a bootstrap's key handling); this
// costs ~1 us. The object then has no cached EVP_PKEY: read the key back
// from its DER encoding. False (nothing changed) for other key types.
bool SetEcPublicKeyDirect(X509_PUBKEY* dst, EVP_PKEY* key);

// A summary of `cert` for logs, tests and policy checks.
CertInfo DescribeCert(X509* cert);

// The agent's check of the certificate a broker issued for its P-256 `key`,
// for the shape simprov's CA issues (v3, ecdsa-with-SHA256, known
// extensions, issued by `issuer` under `anchors`). When it returns a value,
// CertFromDer + SamePublicKey + VerifyChain(leaf, {issuer}, anchors, at,
// "sslclient") + DescribeCert would have returned the same; it does so
// without OpenSSL 3.0's decoding of the leaf's key and re-verifying the
// issuer (0.3 ms of a bootstrap's agent CPU), remembering that `issuer`
// chains to `anchors` (validity is checked at every call). nullopt for any
// other shape and for anything that does not check out: the caller then
// takes the general path, which also words the error.
std::optional<CertInfo> VerifyP256LeafFast(const Bytes& der, EVP_PKEY* key,
                                           X509* issuer,
                                           const std::vector<X509*>& anchors,
                                           absl::Time at);

// PEM of a DER certificate, as CertToPem writes it, without parsing it.
std::string CertDerToPem(const Bytes& der);

// ---- Digests -------------------------------------------------------------

// SHA-256 of `data` (32 bytes).
Bytes Sha256(const Bytes& data);
// The digest to sign with `key`: SHA-256, or none for the EdDSA keys, which
// hash internally (EVP_DigestSignInit's md argument).
const EVP_MD* SigningDigestFor(EVP_PKEY* key);
// SHA-256 of the certificate's DER encoding (32 bytes): its fingerprint.
Bytes CertSha256(X509* cert);

}  // namespace simprov

#endif  // SIMPROV_COMMON_X509_H_
