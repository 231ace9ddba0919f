#include "broker/policy/group_policies.h"

namespace simprov {

absl::StatusOr<std::shared_ptr<const GroupPolicy>> GroupPolicies::Get(
    const std::string& group) {
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(group);
    if (it != cache_.end()) return it->second;
    generation = generation_;
  }
  std::shared_ptr<const GroupPolicy> policy;
  auto row = store_.GetGroup(group);
  if (row.ok()) {
    auto parsed = ParseGroupPolicy(row->policy_json);
    if (!parsed.ok()) return parsed.status();
    policy = std::make_shared<const GroupPolicy>(std::move(*parsed));
  } else if (row.status().code() == absl::StatusCode::kNotFound) {
    policy = std::make_shared<const GroupPolicy>(ImplicitPolicy(group));
  } else {
    return row.status();
  }
  std::lock_guard<std::mutex> lock(mu_);
  // A group changed while we read it: answer, but do not cache.
  if (generation == generation_) cache_[group] = policy;
  return policy;
}

void GroupPolicies::Invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.clear();
  ++generation_;
}

}  // namespace simprov
