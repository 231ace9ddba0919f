#include "broker/fleet/fleet_hooks.h"

#include "absl/strings/str_join.h"
#include "common/log.h"

namespace simprov {

namespace {
std::function<void(const DeviceRevocation&)>& Listener() {
  static auto* listener = new std::function<void(const DeviceRevocation&)>();
  return *listener;
}
}  // namespace

void SetDeviceRevokedListener(
    std::function<void(const DeviceRevocation&)> listener) {
  Listener() = std::move(listener);
}

void OnDeviceRevoked(const DeviceRevocation& r) {
  LogInfo("revoked device %s (IMSI %s): %s [%s] by %s", r.device_id, r.imsi,
          absl::StrJoin(r.serials, ","), r.reason, r.actor);
  // Tokens: revoked with the certificates, in the store's transaction.
  // Registries: the outbox queues a removal for every delivered
  // registration of a revoked certificate (the new SIM of a replacement
  // registers itself with the same device id and topics).
  if (Listener()) Listener()(r);
}

}  // namespace simprov
