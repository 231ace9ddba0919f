#include "broker/enrol/renew_nonce.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/renew_proof.h"
#include "common/x509.h"

namespace simprov {

namespace {
constexpr std::string_view kNonceLabel = "simprov renewal nonce v1";
constexpr size_t kHeadSize = 24;
constexpr size_t kMaxCertificateSize = 16 * 1024;
}  // namespace

RenewNonces::RenewNonces(Random& random) : random_(random) {}

Bytes RenewNonces::Mac(const Bytes& head) const {
  std::call_once(key_once_, [this] { key_ = random_.Generate(32); });
  Bytes data(kNonceLabel.size() + head.size());
  std::copy(kNonceLabel.begin(), kNonceLabel.end(), data.begin());
  std::copy(head.begin(), head.end(), data.begin() + kNonceLabel.size());
  Bytes mac = HmacSha256(key_, data);
  mac.resize(kRenewNonceSize - kHeadSize);
  return mac;
}

Bytes RenewNonces::Issue(absl::Time now) {
  const uint64_t ms = static_cast<uint64_t>(absl::ToUnixMillis(now));
  Bytes nonce;
  for (int shift = 56; shift >= 0; shift -= 8) {
    nonce.push_back(static_cast<uint8_t>(ms >> shift));
  }
  Bytes r = random_.Generate(16);
  nonce.insert(nonce.end(), r.begin(), r.end());
  Bytes mac = Mac(nonce);
  nonce.insert(nonce.end(), mac.begin(), mac.end());
  return nonce;
}

absl::Status RenewNonces::Check(const Bytes& nonce, absl::Time now) const {
  if (nonce.size() != kRenewNonceSize) {
    return absl::UnauthenticatedError("renewal nonce is malformed");
  }
  const Bytes head(nonce.begin(), nonce.begin() + kHeadSize);
  const Bytes mac(nonce.begin() + kHeadSize, nonce.end());
  if (!ConstantTimeEqual(Mac(head), mac)) {
    return absl::UnauthenticatedError("renewal nonce was not issued here");
  }
  uint64_t ms = 0;
  for (size_t i = 0; i < 8; ++i) ms = ms << 8 | head[i];
  const absl::Time issued = absl::FromUnixMillis(static_cast<int64_t>(ms));
  if (now < issued || now - issued > kRenewNonceLifetime) {
    return absl::UnauthenticatedError(
        "renewal nonce has expired: ask for a new one");
  }
  return absl::OkStatus();
}

bool HasInBandProof(const v1::RenewRequest& req) {
  return !req.certificate().empty() || !req.nonce().empty() ||
         !req.signature().empty() || !req.broker_identity().empty();
}

absl::StatusOr<std::string> VerifyInBandRenewal(
    const v1::RenewRequest& req, const RenewNonces& nonces,
    const std::set<std::string>& names, absl::Time now) {
  if (req.certificate().empty() || req.nonce().empty() ||
      req.signature().empty() || req.broker_identity().empty()) {
    return absl::UnauthenticatedError(
        "in-band proof incomplete: certificate, nonce, broker identity and "
        "signature are all needed");
  }
  if (req.certificate().size() > kMaxCertificateSize ||
      req.signature().size() > 256) {
    return absl::UnauthenticatedError("in-band proof too large");
  }
  if (absl::Status s = nonces.Check(ToBytes(req.nonce()), now); !s.ok()) {
    return s;
  }
  if (!names.contains(req.broker_identity())) {
    return absl::UnauthenticatedError(
        "in-band proof is for another broker identity");
  }
  const Bytes der = ToBytes(req.certificate());
  auto leaf = CertFromDer(der);
  if (!leaf.ok()) {
    return absl::UnauthenticatedError("certificate does not parse");
  }
  const Bytes message = RenewProofMessage(
      req.broker_identity(), ToBytes(req.nonce()), der, ToBytes(req.csr()));
  if (absl::Status s = VerifyRenewProof(X509_get0_pubkey(leaf->get()), message,
                                        ToBytes(req.signature()));
      !s.ok()) {
    return s;
  }
  return CertDerToPem(der);
}

}  // namespace simprov
