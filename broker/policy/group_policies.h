// The group policies the broker issues by: parsed from the store once and
// cached until a group changes (groups apply/delete invalidate).
#ifndef SIMPROV_BROKER_POLICY_GROUP_POLICIES_H_
#define SIMPROV_BROKER_POLICY_GROUP_POLICIES_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "broker/policy/policy.h"
#include "broker/store/store.h"

namespace simprov {

class GroupPolicies {
 public:
  explicit GroupPolicies(Store& store) : store_(store) {}

  // The stored policy of `group`, or ImplicitPolicy for a group without
  // one (the default group unless it was applied). Thread-safe.
  absl::StatusOr<std::shared_ptr<const GroupPolicy>> Get(
      const std::string& group);
  void Invalidate();

 private:
  Store& store_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const GroupPolicy>> cache_;  // mu_
  uint64_t generation_ = 0;  // guarded by mu_; bumped by Invalidate
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_POLICY_GROUP_POLICIES_H_
