// The CA's certificate revocation lists (docs/fleet.md).
//
// Regenerate() signs a fresh v2 CRL over every revoked, unexpired
// certificate in the store with the next CRL number, by the active issuing
// CA and by each retired one that can still sign (IssueCrls), writes the
// active one to DIR/ca.crl and every CRL of the chain (the root's too) to
// DIR/crl-chain.pem (atomically, 0644) and serves them from memory. It runs on
// each revocation (before the admin command returns) and from a timer
// (MaybeRefresh, driven by the injected clock) once half of the validity
// has passed, so relying parties never hold a CRL past its nextUpdate.
#ifndef SIMPROV_BROKER_CA_CRL_PUBLISHER_H_
#define SIMPROV_BROKER_CA_CRL_PUBLISHER_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "broker/ca/ca.h"
#include "broker/store/store.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

// The RFC 5280 CRLReason code of a reason name ("keyCompromise" -> 1).
// InvalidArgument listing the names for anything else.
absl::StatusOr<int> CrlReasonCode(absl::string_view name);

// The URL paths the CRLs are served at on --http-listen: the active
// issuing CA's (named by device certificates), the root's (named by the
// development issuing CA certificate), each issuing CA's by its key id
// (/crl/issuing-KEYID.crl: its subjectKeyIdentifier in lower-case hex;
// serials are only unique per issuer), and every CRL of the chain in
// one PEM file (for nginx's ssl_crl and `openssl verify -CRLfile`).
inline constexpr char kCrlHttpPath[] = "/crl/ca.crl";
inline constexpr char kRootCrlHttpPath[] = "/crl/root.crl";
inline constexpr char kIssuingCrlHttpPrefix[] = "/crl/issuing-";
inline constexpr char kChainCrlHttpPath[] = "/crl/chain.pem";

class CrlPublisher {
 public:
  CrlPublisher(Store& store, const CertificateAuthority& ca, Clock& clock,
               std::string path, absl::Duration validity);

  // Signs, writes and publishes a new CRL. Thread-safe.
  absl::Status Regenerate();
  // Regenerates if there is none yet or half its validity has passed.
  absl::Status MaybeRefresh();
  // The current CRL (DER); empty before the first Regenerate.
  Bytes Der() const;
  // The current CRL's nextUpdate; InfinitePast before the first.
  absl::Time NextUpdate() const;

  // The URL put into certificates' CRL Distribution Points; empty: none.
  void SetUrl(std::string url);
  std::string Url() const;

  // Where the CRLs above the issuing CAs come from, either or both:
  // `root_signer` (the development root's key, DIR/ca/root.key) signs an
  // empty CRL for the root (active or retired) it belongs to at every
  // regeneration, with the device CRL's validity; `root_crl_file` (the
  // operator's, --ca-root-crl: DER, or PEM with one or more CRLs) is
  // re-read at every MaybeRefresh, each CRL signed by a root or an
  // intermediate of the CA (active, staged or retired generation). Call
  // before the first Regenerate; a file that does not verify fails it.
  void SetRootCrlSource(std::unique_ptr<CaSigner> root_signer,
                        std::string root_crl_file);
  // The active root's CRL (DER); empty when there is none.
  Bytes RootDer() const;
  // The CRL of the issuing CA whose subjectKeyIdentifier is `key_id`
  // (lower-case hex; active or retired), DER; empty if there is none.
  Bytes IssuerDer(const std::string& key_id) const;
  // Every CRL of the chain (the root's or the operator's file's, then each
  // issuing CA's), PEM.
  std::string ChainPem() const;

 private:
  Store& store_;
  const CertificateAuthority& ca_;
  Clock& clock_;
  const std::string path_;
  const absl::Duration validity_;

  // Reads and checks the operator's root CRL file: DER of each CRL.
  absl::StatusOr<std::vector<Bytes>> ReadRootCrlFile() const;
  absl::StatusOr<Bytes> SignRootCrl(uint64_t number, absl::Time now) const;

  std::unique_ptr<CaSigner> root_signer_;
  std::string root_crl_file_;

  mutable std::mutex mu_;
  Bytes der_;                                      // guarded by mu_
  std::vector<IssuerCrl> issuer_crls_;             // guarded by mu_
  std::vector<Bytes> root_crls_;                   // guarded by mu_
  absl::Time this_update_ = absl::InfinitePast();  // guarded by mu_
  std::string url_;                                // guarded by mu_
  std::mutex regenerate_mu_;                       // one regeneration at a time
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CRL_PUBLISHER_H_
