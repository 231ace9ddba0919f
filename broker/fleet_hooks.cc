#include "broker/fleet_hooks.h"

#include "absl/strings/str_join.h"
#include "common/log.h"

namespace simprov {

void OnDeviceRevoked(const DeviceRevocation& r) {
  LogInfo("revoked device %s (IMSI %s): %s [%s] by %s", r.device_id, r.imsi,
          absl::StrJoin(r.serials, ","), r.reason, r.actor);
  // TODO(registries, issue 5): enqueue the registry removal of r.device_id
  // through the outbox (unless r.replaced: the new SIM keeps the thing).
}

}  // namespace simprov
