// The broker's issuing certificate authority.
//
// A two-level hierarchy: an offline-style root CA (trust anchor, shipped to
// agents as DIR/ca.pem) signs one issuing CA (pathlen:0), and the issuing CA
// signs short-lived device (clientAuth) and server (serverAuth) leaf
// certificates. Signing goes through the CaSigner interface, and the
// signers of a data dir's generations come from a CaSignerFactory
// (ca_signer.h; the software one by default), so the issuing key can live
// in an HSM (PKCS#11) instead of process memory. The certificate profile
// is built by leaf_builder.h, CRLs by crl.h.
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
//  - Issue* are thread-safe. The CA is a set of generations (each a root,
//    an issuing CA with its intermediates, a signer): one active (signs),
//    at most one staged (a trust anchor only, until it is activated) and
//    any number retired (verify renewals of what they issued). Activation
//    swaps the active generation under a mutex; a leaf is always built
//    and signed from one generation. Access to the injected Random is
//    serialized.
//
// The CA's files in the data dir and their rollover: ca_files.h.
#ifndef SIMPROV_BROKER_CA_CA_H_
#define SIMPROV_BROKER_CA_CA_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/ca/ca_signer.h"
#include "broker/ca/crl.h"
#include "broker/ca/software_signer.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace simprov {

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
  // Group policy. If non-empty, the subject as (short type,
  // value) RDNs in order ("CN", "cam-1"), ("O", "Acme"), replacing
  // CN=common_name; each value 1..64 bytes without control characters.
  std::vector<std::pair<std::string, std::string>> subject;
  // More subjectAltNames after the device-id URI (same checks).
  std::vector<std::string> dns_names;
  std::vector<std::string> uris;
  // If non-empty, the only URI of a CRL Distribution Points extension.
  std::string crl_url;
};

struct IssuedCertificate {
  Bytes der;
  CertInfo info;
};

// The CA material an operator brings (see operator_ca.h): the issuing CA
// certificate and key, the intermediates between it and the root (nearest
// first), and the root (the trust anchor; == issuing for a self-signed CA).
struct CaMaterial {
  X509Ptr root;
  X509Ptr issuing;
  std::vector<X509Ptr> intermediates;
  std::string key_pem;  // PKCS#8 or traditional PEM; wiped by the reader
};

// What `simprov ca status` shows.
struct CaState {
  CertInfo active;
  bool staged = false;
  CertInfo staged_issuing;
  std::string staged_root_subject;
  absl::Time activate_at = absl::InfiniteFuture();
  size_t retired = 0;  // earlier generations still trusted for renewal
};

// One CA certificate the CA holds, for expiry gauges: its role
// ("root", "intermediate", "issuing" of the active generation; the same
// with "staged_" or "retired_" in front for the staged generation and the
// retired ones still trusted) and what it is.
struct CaCertificateRole {
  std::string role;
  CertInfo info;
  Bytes der;
};

// One issuing CA's CRL (CertificateAuthority::IssueCrls).
struct IssuerCrl {
  CertInfo issuing;    // the CA that signed it
  std::string key_id;  // its subjectKeyIdentifier, lower-case hex
  bool active = false;
  Bytes der;
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
  // overwritten. `name` prefixes the CAs' common names. Both keys come from
  // `signers` (Generate: the root's, then the issuing CA's), which also
  // says what their key files hold.
  // `root_crl_url`, if not empty, is the issuing CA certificate's CRL
  // Distribution Point: where the root's CRL is served (crl_http.h).
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>>
  CreateDevelopment(const std::string& dir, Clock& clock, Random& random,
                    const std::string& name = "simprov development",
                    const CaSignerFactory& signers = SoftwareCaSigners(),
                    const std::string& root_crl_url = "");

  // Writes an operator's CA into an empty data dir `dir` (the layout of
  // ca_files.h; chain.pem = issuing + intermediates). AlreadyExists if
  // DIR/ca.pem is present. Nothing is written unless the material is complete.
  static absl::Status InstallOperatorCa(const std::string& dir,
                                        CaMaterial material);
  // Stages `material` as the next CA in DIR/ca/next/ (same files plus
  // root.pem and activate-at, Unix seconds). AlreadyExists if another CA
  // is staged.
  static absl::Status StageOperatorCa(const std::string& dir,
                                      CaMaterial material,
                                      absl::Time activate_at);

  // Loads DIR/ca.pem, DIR/ca/issuing.pem, DIR/ca/chain.pem and
  // DIR/ca/issuing.key, and when present the staged CA (DIR/ca/next/) and
  // the retired generations (DIR/ca/retired.pem). Fails if the key does not
  // match the issuing certificate, the issuing certificate is not a CA, or
  // it does not chain to the root at the clock's now. The active and the
  // staged generation's signers come from `signers` (Load of their
  // issuing.key): the staged one is made and checked here and signs once
  // MaybeActivateStaged activates it.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Load(
      const std::string& dir, Clock& clock, Random& random,
      const CaSignerFactory& signers = SoftwareCaSigners());

  // A CA over an arbitrary signer (e.g. an HSM). `issuing` must be the
  // certificate for signer->public_key() and chain to `root` through
  // `intermediates` (nearest first). Not persisted: no rollover.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Create(
      X509Ptr root, X509Ptr issuing, std::unique_ptr<CaSigner> signer,
      Clock& clock, Random& random, std::vector<X509Ptr> intermediates = {});

  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;
  ~CertificateAuthority();

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

  // The same CRL signed by every issuing CA that can sign: the active one
  // (first) and each retired one whose key was kept at activation
  // (DIR/ca/retired/SERIAL.key) while its certificate is valid at
  // `this_update`, so the certificates it issued stay checkable until the
  // last has expired (none outlives its issuer).
  absl::StatusOr<std::vector<IssuerCrl>> IssueCrls(
      const std::vector<RevokedEntry>& revoked, uint64_t crl_number,
      absl::Time this_update, absl::Time next_update) const;

  // Verifies that `leaf` was issued by this CA's active or a retired
  // generation (never the staged one), at `at`, for `purpose` (e.g.
  // "sslclient").
  absl::Status VerifyIssued(X509* leaf, absl::Time at,
                            std::string_view purpose) const;

  // Rollover. Activates the staged CA when `force` or its activate-at has
  // passed: the active generation is retired (still verifies renewals, its
  // root stays a trust anchor) and the staged one signs from now on;
  // persisted in the data dir. Returns whether it activated.
  // FailedPrecondition when `force` and nothing is staged.
  absl::StatusOr<bool> MaybeActivateStaged(bool force);
  CaState State() const;
  // Every CA certificate held, by role (CaCertificateRole), once per role
  // and serial; retired generations only while their issuing CA is valid
  // at the clock's now.
  std::vector<CaCertificateRole> Certificates() const;

  // Borrowed; valid for the CA's lifetime (the active generation).
  X509* issuing_cert() const;
  X509* root_cert() const;
  // The certificates a leaf needs up to (not including) the root: the
  // issuing CA first, then the operator's intermediates. PEM/DER.
  std::string ChainPem() const;
  std::vector<Bytes> ChainDer() const;
  // The trust anchors relying parties install: the active root, the staged
  // root (served before the staged CA signs, so devices that renew learn
  // it) and the retired roots. Deduplicated.
  std::string TrustAnchorsPem() const;
  std::vector<Bytes> TrustAnchorsDer() const;

 private:
  struct LeafProfile;
  // One CA generation: a root, an issuing CA with its intermediates and,
  // unless retired, the issuing CA's signer.
  struct Generation {
    X509Ptr root;
    X509Ptr issuing;
    std::vector<X509Ptr> intermediates;  // nearest first, root excluded
    std::unique_ptr<CaSigner> signer;    // null for retired generations
    absl::Time not_before;
    absl::Time not_after;
    Bytes ski;
    std::vector<Bytes> chain_der;
    std::string chain_pem;
  };
  using GenerationPtr = std::shared_ptr<const Generation>;

  CertificateAuthority(GenerationPtr active, Clock& clock, Random& random);

  static absl::StatusOr<GenerationPtr> MakeGeneration(
      X509Ptr root, X509Ptr issuing, std::vector<X509Ptr> intermediates,
      std::unique_ptr<CaSigner> signer, absl::Time now);
  GenerationPtr Active() const;
  void RecomputeAnchorsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<X509Ptr> IssueLeaf(const LeafProfile& profile) const;
  Bytes NewSerial() const;

  Clock& clock_;
  // Random implementations need not be thread-safe: every use of random_
  // holds random_mu_.
  mutable absl::Mutex random_mu_;
  Random& random_;
  // Data dir the CA persists rollover in; empty for Create().
  std::string dir_;

  mutable absl::Mutex mu_;
  GenerationPtr active_ ABSL_GUARDED_BY(mu_);
  GenerationPtr staged_ ABSL_GUARDED_BY(mu_);
  absl::Time staged_activate_at_ ABSL_GUARDED_BY(mu_);
  // Earlier active generations (kept alive: issuing_cert() hands out
  // borrowed pointers).
  std::vector<GenerationPtr> retired_ ABSL_GUARDED_BY(mu_);
  std::vector<Bytes> anchors_der_ ABSL_GUARDED_BY(mu_);
  std::string anchors_pem_ ABSL_GUARDED_BY(mu_);
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CA_H_
