// Where other parts of the broker react to fleet lifecycle events: the
// event FleetGrpcService reports, and the listener it is built with.
#ifndef SIMPROV_BROKER_FLEET_FLEET_HOOKS_H_
#define SIMPROV_BROKER_FLEET_FLEET_HOOKS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "broker/policy/policy.h"

namespace simprov {

struct DeviceRevocation {
  std::string imsi;
  std::string device_id;
  std::vector<std::string> serials;  // the certificates just revoked
  std::string reason;                // RFC 5280 reason name
  std::string actor;                 // who revoked (audit actor)
  bool replaced = false;             // part of `devices replace`
};

// Called once per `devices revoke` / `devices replace`, after the store
// recorded the revocation and the CRL was regenerated, before the admin
// command returns. Tokens need nothing here: they are revoked with the
// certificates, in the store's transaction. The broker wakes the registry
// outbox, which queues a removal for every delivered registration of a
// revoked certificate (the new SIM of a replacement registers itself with
// the same device id and topics).
using DeviceRevokedListener = std::function<void(const DeviceRevocation&)>;

// Called by `groups apply` after the groups were stored, with the policies
// applied. The broker queues registrations again for the groups' devices
// whose registration the new policy changes (RegistryOutbox::
// ReregisterGroup). An error is reported to the caller, whose groups are
// applied all the same: applying them again queues what is missing.
using GroupsAppliedListener =
    std::function<absl::Status(const std::vector<GroupPolicy>& applied)>;

}  // namespace simprov

#endif  // SIMPROV_BROKER_FLEET_FLEET_HOOKS_H_
