#include "broker/fleet_hooks.h"

#include "absl/strings/str_join.h"
#include "common/log.h"

namespace simprov {

void OnDeviceRevoked(const DeviceRevocation& r) {
  LogInfo("revoked device %s (IMSI %s): %s [%s] by %s", r.device_id, r.imsi,
          absl::StrJoin(r.serials, ","), r.reason, r.actor);
  // TODO(tokens, issue 4): revoke every token issued to r.device_id / r.imsi
  // so that resource servers refuse them from now on.
  // TODO(registries, issue 5): enqueue the registry removal of r.device_id
  // through the outbox (unless r.replaced: the new SIM keeps the thing).
}

}  // namespace simprov
