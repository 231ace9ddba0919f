#include "broker/ca/crl_publisher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/log.h"

namespace simprov {

absl::StatusOr<int> CrlReasonCode(absl::string_view name) {
  static const std::pair<const char*, int> kReasons[] = {
      {"unspecified", 0},        {"keyCompromise", 1},
      {"cACompromise", 2},       {"affiliationChanged", 3},
      {"superseded", 4},         {"cessationOfOperation", 5},
      {"privilegeWithdrawn", 9}, {"aACompromise", 10},
  };
  for (const auto& [n, code] : kReasons) {
    if (name == n) return code;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown revocation reason \"", name,
                   "\" (RFC 5280: unspecified, keyCompromise, cACompromise, "
                   "affiliationChanged, superseded, cessationOfOperation, "
                   "privilegeWithdrawn, aACompromise)"));
}

CrlPublisher::CrlPublisher(Store& store, const CertificateAuthority& ca,
                           Clock& clock, std::string path,
                           absl::Duration validity)
    : store_(store),
      ca_(ca),
      clock_(clock),
      path_(std::move(path)),
      validity_(validity) {}

absl::Status CrlPublisher::Regenerate() {
  std::lock_guard<std::mutex> one(regenerate_mu_);
  const absl::Time now =
      absl::FromUnixSeconds(absl::ToUnixSeconds(clock_.Now()));
  auto revoked = store_.RevokedCertificates(now);
  if (!revoked.ok()) return revoked.status();
  std::vector<RevokedEntry> entries;
  for (const CertificateRecord& c : *revoked) {
    auto code = CrlReasonCode(c.revocation_reason);
    entries.push_back({c.serial, c.revoked_at, code.ok() ? *code : 0});
  }
  auto number = store_.NextCrlNumber();
  if (!number.ok()) return number.status();
  auto der = ca_.IssueCrl(entries, *number, now, now + validity_);
  if (!der.ok()) return der.status();
  if (!path_.empty()) {
    if (absl::Status s = WriteFileAtomic(path_, ToString(*der), 0644);
        !s.ok()) {
      return s;
    }
  }
  LogInfo("CRL %d: %d revoked certificates, next update %s", *number,
          entries.size(), absl::FormatTime(now + validity_));
  std::lock_guard<std::mutex> lock(mu_);
  der_ = std::move(*der);
  this_update_ = now;
  return absl::OkStatus();
}

absl::Status CrlPublisher::MaybeRefresh() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!der_.empty() && clock_.Now() < this_update_ + validity_ / 2) {
      return absl::OkStatus();
    }
  }
  return Regenerate();
}

Bytes CrlPublisher::Der() const {
  std::lock_guard<std::mutex> lock(mu_);
  return der_;
}

void CrlPublisher::SetUrl(std::string url) {
  std::lock_guard<std::mutex> lock(mu_);
  url_ = std::move(url);
}

std::string CrlPublisher::Url() const {
  std::lock_guard<std::mutex> lock(mu_);
  return url_;
}

}  // namespace simprov
