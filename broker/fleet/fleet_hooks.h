// Where other parts of the broker react to fleet lifecycle events.
#ifndef SIMPROV_BROKER_FLEET_FLEET_HOOKS_H_
#define SIMPROV_BROKER_FLEET_FLEET_HOOKS_H_

#include <functional>
#include <string>
#include <vector>

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
// command returns.
void OnDeviceRevoked(const DeviceRevocation& revocation);

// Registers a listener OnDeviceRevoked calls too (the registry outbox);
// null removes it. Set once at startup, before serving.
void SetDeviceRevokedListener(
    std::function<void(const DeviceRevocation&)> listener);

}  // namespace simprov

#endif  // SIMPROV_BROKER_FLEET_FLEET_HOOKS_H_
