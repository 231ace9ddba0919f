// The broker's issuing certificate authority.
//
// A two-level hierarchy: an offline-style root CA (trust anchor, shipped to
// agents as DIR/ca.pem) signs one issuing CA (pathlen:0), and the issuing CA
// signs short-lived device (clientAuth) and server (serverAuth) leaf
// certificates. Signing goes through the CaSigner interface so the issuing
// key can later live in an HSM (PKCS#11) instead of process memory.
//
// Guarantees for every leaf certificate issued:
//  - X.509 v3; serial is 16 bytes from the injected Random: top bit clear
//    (positive), next bit set (fixed 16-byte length, never zero), leaving
//    126 random bits; distinct across calls with overwhelming probability.
//  - notBefore = now - 5 minutes (clock-skew allowance; never earlier than
//    the issuing CA's notBefore); notAfter = min(now + ttl, issuing CA
//    notAfter), so a leaf is never valid beyond its issuer.
//  - Subject is exactly CN=<common_name>; the subject is always chosen by
//    the broker, never copied from a CSR.
//  - basicConstraints critical CA:FALSE; keyUsage critical digitalSignature;
//    exactly one extendedKeyUsage; SKI (SHA-1 of the public key) and AKI
//    (keyid of the issuing CA); signed ECDSA-SHA256.
//  - Issue* are thread-safe; the CA is immutable after construction except
//    for access to the injected Random, which is serialized.
//
// On-disk layout (DIR is the broker's data directory):
//   DIR/ca.pem          root CA certificate (the trust anchor), mode 0644
//   DIR/ca/             mode 0700
//   DIR/ca/root.key     root private key, PKCS#8 PEM, mode 0600
//   DIR/ca/issuing.key  issuing private key, PKCS#8 PEM, mode 0600
//   DIR/ca/issuing.pem  issuing CA certificate, mode 0644
//   DIR/ca/chain.pem    the intermediates a leaf needs (= issuing.pem),
//                       mode 0644
// Every file is written to a fresh temporary name (O_CREAT|O_EXCL with its
// final mode), fsync'ed and renamed into place. Load() never reads
// root.key: a running broker does not need the root private key.
#ifndef SIMPROV_BROKER_CA_H_
#define SIMPROV_BROKER_CA_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace simprov {

// Holds (or fronts) a CA private key and signs to-be-signed certificates.
// Implementations must be thread-safe.
class CaSigner {
 public:
  virtual ~CaSigner() = default;
  // The public half of the signing key (owned by the signer).
  virtual EVP_PKEY* public_key() const = 0;
  // Signs `cert` in place (sets signatureAlgorithm and signature). All other
  // fields must already be final. ECDSA/RSA keys sign with SHA-256.
  virtual absl::Status SignCertificate(X509* cert) const = 0;
  // Signs a to-be-signed CRL in place, like SignCertificate.
  virtual absl::Status SignCrl(X509_CRL* crl) const = 0;
};

// A CaSigner over a private key held in process memory.
class SoftwareCaSigner final : public CaSigner {
 public:
  explicit SoftwareCaSigner(EvpPkeyPtr private_key)
      : key_(std::move(private_key)) {}
  EVP_PKEY* public_key() const override { return key_.get(); }
  absl::Status SignCertificate(X509* cert) const override;
  absl::Status SignCrl(X509_CRL* crl) const override;

 private:
  const EvpPkeyPtr key_;  // Never mutated after construction.
};

struct DeviceCertRequest {
  // The device's public key (e.g. from ParseAndVerifyCsr); not owned.
  EVP_PKEY* public_key = nullptr;
  // Subject CN, e.g. the IMSI. 1..64 bytes of UTF-8.
  std::string common_name;
  // If non-empty, the only subjectAltName: URI:<device_id_uri>. Must be
  // printable ASCII without spaces and contain a scheme (':').
  std::string device_id_uri;
  // Requested lifetime, counted from now (not from the backdated
  // notBefore). Must be positive.
  absl::Duration ttl;
  // Group policy (issue 6). If non-empty, the subject as (short type,
  // value) RDNs in order ("CN", "cam-1"), ("O", "Acme"), replacing
  // CN=common_name; each value 1..64 bytes without control characters.
  std::vector<std::pair<std::string, std::string>> subject;
  // More subjectAltNames after the device-id URI (same checks).
  std::vector<std::string> dns_names;
  std::vector<std::string> uris;
  // If non-empty, the only URI of a CRL Distribution Points extension.
  std::string crl_url;
};

// One entry of a CRL.
struct RevokedEntry {
  std::string serial_hex;  // lower-case hex, as CertInfo::serial_hex
  absl::Time revoked_at;
  int reason_code = 0;  // RFC 5280 CRLReason; 0 (unspecified) is omitted
};

struct IssuedCertificate {
  Bytes der;
  CertInfo info;
};

class CertificateAuthority {
 public:
  // Validity of the development CA certificates, counted from creation.
  static constexpr absl::Duration kRootValidity = absl::Hours(24 * 3652);
  static constexpr absl::Duration kIssuingValidity = absl::Hours(24 * 1826);
  // How far notBefore is backdated to tolerate relying parties' clock skew.
  static constexpr absl::Duration kBackdate = absl::Minutes(5);

  // Generates a development root CA and issuing CA (ECDSA P-256) and writes
  // them under `dir` (created with mode 0700 if missing). AlreadyExists if
  // DIR/ca.pem or a key file is already present: an existing CA is never
  // overwritten.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>>
  CreateDevelopment(const std::string& dir, Clock& clock, Random& random);

  // Loads DIR/ca.pem, DIR/ca/issuing.pem and DIR/ca/issuing.key. Fails if
  // the key does not match the issuing certificate, the issuing certificate
  // is not a CA, or it does not chain to the root at the clock's now.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Load(
      const std::string& dir, Clock& clock, Random& random);

  // A CA over an arbitrary signer (e.g. an HSM). `issuing` must be the
  // certificate for signer->public_key() and chain to `root`.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Create(
      X509Ptr root, X509Ptr issuing, std::unique_ptr<CaSigner> signer,
      Clock& clock, Random& random);

  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  // A clientAuth leaf for a device (see the profile above).
  // InvalidArgument for bad request fields; FailedPrecondition if the
  // issuing CA is expired or not yet valid at now.
  // The hot path: the signed certificate as DER, and its summary.
  absl::StatusOr<IssuedCertificate> IssueDevice(
      const DeviceCertRequest& request) const;
  // The same, parsed (for callers that inspect the certificate).
  absl::StatusOr<X509Ptr> IssueDeviceCertificate(
      const DeviceCertRequest& request) const;

  // A serverAuth leaf. Subject CN = the first of dns_names, else the first
  // of ip_addresses. Each name that parses as an IPv4/IPv6 address (either
  // list) becomes an IP SAN, every other name a DNS SAN. At least one name
  // is required.
  absl::StatusOr<X509Ptr> IssueServerCertificate(
      EVP_PKEY* public_key, const std::vector<std::string>& dns_names,
      const std::vector<std::string>& ip_addresses, absl::Duration ttl) const;

  // A v2 CRL signed by the issuing CA: thisUpdate/nextUpdate, CRL number,
  // AKI (keyid of the issuing CA), one entry per `revoked` with its reason
  // code as an entry extension. DER.
  absl::StatusOr<Bytes> IssueCrl(const std::vector<RevokedEntry>& revoked,
                                 uint64_t crl_number, absl::Time this_update,
                                 absl::Time next_update) const;

  // Borrowed; valid for the CA's lifetime.
  X509* issuing_cert() const { return issuing_.get(); }
  X509* root_cert() const { return root_.get(); }
  // The intermediates a leaf needs (the issuing CA certificate), PEM/DER.
  std::string ChainPem() const;
  std::vector<Bytes> ChainDer() const;
  // The trust anchors relying parties install (the root certificate).
  std::string TrustAnchorsPem() const;
  std::vector<Bytes> TrustAnchorsDer() const;

 private:
  struct LeafProfile;

  CertificateAuthority(X509Ptr root, X509Ptr issuing,
                       std::unique_ptr<CaSigner> signer, Clock& clock,
                       Random& random);

  absl::StatusOr<X509Ptr> IssueLeaf(const LeafProfile& profile) const;
  Bytes NewSerial() const;

  const X509Ptr root_;
  const X509Ptr issuing_;
  const std::unique_ptr<CaSigner> signer_;
  Clock& clock_;
  // Random implementations need not be thread-safe: every use of random_
  // holds random_mu_.
  mutable absl::Mutex random_mu_;
  Random& random_;
  // Cached at construction (the certificates are immutable).
  const absl::Time issuing_not_before_;
  const absl::Time issuing_not_after_;
  const Bytes issuing_ski_;
  const std::vector<Bytes> chain_der_;
  const std::vector<Bytes> anchors_der_;
  const std::string chain_pem_;
  const std::string anchors_pem_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_H_
