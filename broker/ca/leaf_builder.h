// The certificate profile: how the CA builds the to-be-signed certificates
// it issues (leaves and its own CA certificates), and the checks on the
// names that go into them. Signing is the CaSigner's part (ca_signer.h).
#ifndef SIMPROV_BROKER_CA_LEAF_BUILDER_H_
#define SIMPROV_BROKER_CA_LEAF_BUILDER_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"

namespace simprov {

// One subjectAltName.
struct SanEntry {
  int type;           // GEN_DNS, GEN_IPADD or GEN_URI.
  std::string value;  // ASCII text, or 4/16 raw address bytes for GEN_IPADD.
};

// Everything that varies between the certificates this CA creates.
struct CertSpec {
  EVP_PKEY* public_key = nullptr;
  std::string common_name;
  Bytes serial;
  int64_t not_before = 0;  // Unix seconds.
  int64_t not_after = 0;   // Unix seconds.
  // Null for a self-signed certificate (issuer = subject, no AKI).
  const X509_NAME* issuer_name = nullptr;
  const Bytes* issuer_ski = nullptr;
  // X509V3 config values (compile-time constants only: never user input).
  const char* basic_constraints = nullptr;
  const char* key_usage = nullptr;
  const char* ext_key_usage = nullptr;  // Null: no EKU.
  std::vector<SanEntry> sans;
  // If non-empty, replaces CN=common_name (checked by the caller).
  std::vector<std::pair<std::string, std::string>> subject;
  std::string crl_url;  // If non-empty: a CRL Distribution Points URI.
};

// An unsigned X.509 v3 certificate per `spec`: version, serial, subject,
// issuer, validity, public key, then the extensions basicConstraints,
// keyUsage, extendedKeyUsage, SKI, AKI, subjectAltName and CRL
// Distribution Points, in that order. InvalidArgument for a subject
// attribute OpenSSL refuses.
absl::StatusOr<X509Ptr> BuildCertificate(const CertSpec& spec);

// The parts of BuildCertificate.
// CRL Distribution Points with one full-name URI.
absl::Status AddCrlDistributionPoint(X509* cert, const std::string& url);
// An extension from an X509V3 config value (e.g. "critical,CA:FALSE").
absl::Status AddConfExtension(X509* cert, int nid, const char* value);
absl::Status AddSubjectAltNames(X509* cert, const std::vector<SanEntry>& sans);
// SKI by RFC 5280 method 1 (SHA-1 of the subjectPublicKey bits) and, when
// there is an issuer, AKI keyid = the issuer's SKI.
absl::Status AddKeyIdentifiers(X509* cert, const Bytes* issuer_ski);
// Leaf certificates (those with an EKU) take the fast path (see
// SetEcPublicKeyDirect); CA certificates keep the cached key that Load()
// compares against.
bool SetPublicKey(X509* cert, const CertSpec& spec);

// A serial number: 16 bytes from `random`, top bit cleared (positive) and
// the next bit set (fixed DER length, never zero).
Bytes MakeSerial(Random& random);
// The certificate's subjectKeyIdentifier; empty if it has none.
Bytes SkiOf(X509* cert);

// Input validation; each InvalidArgument with a one-line reason.
// 1..64 bytes, no control characters (UTF-8 validity is OpenSSL's check).
absl::Status CheckCommonName(std::string_view cn);
// At most 1024 bytes of printable ASCII without spaces, with a scheme.
absl::Status CheckUri(std::string_view uri);
// A hostname: LDH labels of 1..63 bytes separated by dots, optionally a
// leading "*." wildcard label; 1..253 bytes.
absl::Status CheckDnsName(std::string_view name);
// The 4- or 16-byte binary form of an IPv4/IPv6 literal, or false.
bool ParseIp(const std::string& text, std::string* out);

// Validity bounds in Unix seconds.
struct Validity {
  int64_t not_before;
  int64_t not_after;
};
// For a certificate issued at `now`: [now - backdate, now + lifetime],
// clamped into the issuer's validity, in whole seconds rounded inwards.
// InvalidArgument for a lifetime that is not positive or too short;
// FailedPrecondition if the issuer is not valid at `now`.
absl::StatusOr<Validity> ComputeValidity(absl::Time now,
                                         absl::Duration lifetime,
                                         absl::Duration backdate,
                                         absl::Time issuer_not_before,
                                         absl::Time issuer_not_after);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_LEAF_BUILDER_H_
