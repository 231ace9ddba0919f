// Revokes superseded certificates once their grace period has passed.
//
// A renewal or a bootstrap supersedes the device's earlier certificates
// (Store::RecordIssuance). From that moment they renew and get tokens no
// more; for the group policy's supersede_grace (default 10m) they stay off
// the CRL so that an application connection made with one is not cut while
// the device switches to the new certificate. Then this job revokes them
// with reason "superseded": on the CRL, removed from the registries (the
// listener wakes the outbox), their tokens revoked with them (docs/fleet.md,
// "Lineage").
#ifndef SIMPROV_BROKER_FLEET_SUPERSEDE_JOB_H_
#define SIMPROV_BROKER_FLEET_SUPERSEDE_JOB_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "broker/ca/crl_publisher.h"
#include "broker/fleet/fleet_hooks.h"
#include "broker/policy/group_policies.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

class SupersededRevoker {
 public:
  // `on_revoked` may be empty (nothing listens).
  SupersededRevoker(Store& store, GroupPolicies& policies, CrlPublisher& crl,
                    Clock& clock, DeviceRevokedListener on_revoked)
      : store_(store),
        policies_(policies),
        crl_(crl),
        clock_(clock),
        on_revoked_(std::move(on_revoked)) {}

  // Revokes every superseded certificate whose grace has ended at the
  // clock's now (at most kMaxPerRun; the rest at the next run), regenerates
  // the CRL if any was (or if the last run could not), and tells the
  // listener once per subscriber.
  // Returns how many were revoked. Not reentrant: one caller (the broker's
  // sweeper).
  absl::StatusOr<int64_t> RunOnce();

  static constexpr size_t kMaxPerRun = 1000;

 private:
  Store& store_;
  GroupPolicies& policies_;
  CrlPublisher& crl_;
  Clock& clock_;
  const DeviceRevokedListener on_revoked_;
  // A revocation was recorded but the CRL could not be regenerated: the
  // next run tries again.
  bool crl_pending_ = false;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_FLEET_SUPERSEDE_JOB_H_
