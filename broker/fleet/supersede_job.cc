#include "broker/fleet/supersede_job.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"

namespace simprov {

absl::StatusOr<int64_t> SupersededRevoker::RunOnce() {
  if (crl_pending_) {
    if (absl::Status s = crl_.Regenerate(); !s.ok()) return s;
    crl_pending_ = false;
  }
  const absl::Time now = clock_.Now();
  std::vector<std::string> due;
  // Group of each subscriber and grace of each group, looked up once.
  std::map<std::string, std::string> group_of;
  std::map<std::string, absl::Duration> grace_of;
  absl::Status lookup = absl::OkStatus();
  absl::Status listed = store_.ListSuperseded([&](const CertificateRecord& c) {
    auto g = group_of.find(c.imsi);
    if (g == group_of.end()) {
      auto sub = store_.GetSubscriber(c.imsi);
      if (!sub.ok()) {
        lookup = sub.status();
        return false;
      }
      g = group_of.emplace(c.imsi, sub->group).first;
    }
    auto grace = grace_of.find(g->second);
    if (grace == grace_of.end()) {
      auto policy = policies_.Get(g->second);
      if (!policy.ok()) {
        lookup = policy.status();
        return false;
      }
      grace = grace_of.emplace(g->second, (*policy)->supersede_grace).first;
    }
    if (c.superseded_at + grace->second <= now) due.push_back(c.serial);
    return due.size() < kMaxPerRun;
  });
  if (!listed.ok()) return listed;
  if (!lookup.ok()) return lookup;
  if (due.empty()) return 0;
  auto revoked = store_.RevokeSuperseded(
      due, now, {now, "broker", "revoke", "", "ok", "reason=superseded"});
  if (!revoked.ok()) return revoked.status();
  if (revoked->empty()) return 0;
  if (absl::Status s = crl_.Regenerate(); !s.ok()) {
    LogError("CRL after revoking superseded certificates: %s (retried)",
             s.message());
    crl_pending_ = true;
  }
  std::map<std::string, DeviceRevocation> by_imsi;
  for (const CertificateRecord& c : *revoked) {
    DeviceRevocation& r = by_imsi[c.imsi];
    r.imsi = c.imsi;
    r.device_id = c.device_id;
    r.reason = "superseded";
    r.actor = "broker";
    r.serials.push_back(c.serial);
  }
  for (const auto& [imsi, r] : by_imsi) {
    LogInfo("device %s (IMSI %s): superseded certificates revoked: %s",
            r.device_id, imsi, absl::StrJoin(r.serials, ","));
    if (on_revoked_) on_revoked_(r);
  }
  return static_cast<int64_t>(revoked->size());
}

}  // namespace simprov
