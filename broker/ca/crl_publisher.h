// The issuing CA's certificate revocation list (docs/fleet.md).
//
// Regenerate() signs a fresh v2 CRL over every revoked, unexpired
// certificate in the store with the next CRL number, writes it to
// DIR/crl/ca.crl (atomically, 0644) and serves it from memory. It runs on
// each revocation (before the admin command returns) and from a timer
// (MaybeRefresh, driven by the injected clock) once half of the validity
// has passed, so relying parties never hold a CRL past its nextUpdate.
#ifndef SIMPROV_BROKER_CA_CRL_PUBLISHER_H_
#define SIMPROV_BROKER_CA_CRL_PUBLISHER_H_

#include <mutex>
#include <string>

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

// The URL path the CRL is served at on --http-listen.
inline constexpr char kCrlHttpPath[] = "/crl/ca.crl";

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

  // The URL put into certificates' CRL Distribution Points; empty: none.
  void SetUrl(std::string url);
  std::string Url() const;

 private:
  Store& store_;
  const CertificateAuthority& ca_;
  Clock& clock_;
  const std::string path_;
  const absl::Duration validity_;

  mutable std::mutex mu_;
  Bytes der_;                                      // guarded by mu_
  absl::Time this_update_ = absl::InfinitePast();  // guarded by mu_
  std::string url_;                                // guarded by mu_
  std::mutex regenerate_mu_;                       // one regeneration at a time
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CRL_PUBLISHER_H_
