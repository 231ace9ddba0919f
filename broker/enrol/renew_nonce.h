// The broker's side of a renewal's in-band proof of possession
// (common/renew_proof.h, docs/security.md "Renewal with a hardware key").
//
// Nonces are stateless: issue time (ms, 8 bytes) || 16 random bytes ||
// the first 16 bytes of HMAC-SHA256(key, label || the 24 before), with a
// key random per process. One is accepted for kRenewNonceLifetime after it
// was issued; a renewal consumes the certificate it renews (it is then
// superseded), so a nonce cannot buy a second certificate either.
#ifndef SIMPROV_BROKER_ENROL_RENEW_NONCE_H_
#define SIMPROV_BROKER_ENROL_RENEW_NONCE_H_

#include <mutex>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "simprov/v1/bootstrap.pb.h"

namespace simprov {

inline constexpr absl::Duration kRenewNonceLifetime = absl::Seconds(60);
inline constexpr size_t kRenewNonceSize = 40;

class RenewNonces {
 public:
  explicit RenewNonces(Random& random);
  Bytes Issue(absl::Time now);
  // OK iff `nonce` was issued here within kRenewNonceLifetime of `now`.
  absl::Status Check(const Bytes& nonce, absl::Time now) const;

 private:
  Bytes Mac(const Bytes& head) const;
  Random& random_;
  // Drawn at first use, so that constructing the service takes nothing
  // from `random` (tests script its sequence).
  mutable std::once_flag key_once_;
  mutable Bytes key_;
};

// Checks the in-band proof of `req` (nonce, broker identity among `names`,
// signature by the key of req.certificate() over the transcript) and
// returns that certificate as PEM, for the same checks a mutual-TLS
// renewal's certificate gets. Unauthenticated with the reason otherwise.
absl::StatusOr<std::string> VerifyInBandRenewal(
    const v1::RenewRequest& req, const RenewNonces& nonces,
    const std::set<std::string>& names, absl::Time now);

// True when `req` carries any part of an in-band proof.
bool HasInBandProof(const v1::RenewRequest& req);

}  // namespace simprov

#endif  // SIMPROV_BROKER_ENROL_RENEW_NONCE_H_
