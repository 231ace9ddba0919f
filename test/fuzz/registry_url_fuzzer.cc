// The registry URL parser (broker/registry: ParseRegistryUrl and
// PercentDecode) and the outbox's registration payload
// (DeviceRegistration::FromJson). A parsed URL's Redacted() never depends on
// the password; a payload that parses survives ToJson/FromJson unchanged.
//
// Input: one selector byte (bit 0: a payload; else a URL), then the text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "broker/registry/registry.h"

namespace simprov {

// registry.cc's NewRegistry names the adapters; the fuzzer never makes one,
// and linking them would pull in libmosquitto, HTTP and the CA.
absl::StatusOr<std::unique_ptr<Registry>> NewMosquittoRegistry(
    const RegistryUrl&) {
  return absl::UnimplementedError("not in the fuzzer");
}
absl::StatusOr<std::unique_ptr<Registry>> NewAwsIotRegistry(const RegistryUrl&,
                                                            Clock&) {
  return absl::UnimplementedError("not in the fuzzer");
}

}  // namespace simprov

using namespace simprov;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 8192) return 0;
  absl::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    absl::StatusOr<DeviceRegistration> d = DeviceRegistration::FromJson(in);
    if (!d.ok()) return 0;
    absl::StatusOr<DeviceRegistration> again =
        DeviceRegistration::FromJson(d->ToJson());
    if (!again.ok() || again->serial != d->serial || again->imsi != d->imsi ||
        again->device_id != d->device_id || again->group != d->group ||
        again->cert_pem != d->cert_pem || again->thing != d->thing ||
        again->topics != d->topics) {
      abort();
    }
    return 0;
  }
  (void)PercentDecode(in);
  absl::StatusOr<RegistryUrl> url = ParseRegistryUrl(in);
  if (!url.ok()) return 0;
  // Redacted() does not depend on the password, only on whether there is one.
  RegistryUrl other = *url;
  other.password = url->password.empty() ? "" : "other";
  if (url->Redacted() != other.Redacted()) abort();
  (void)url->Get("name");
  return 0;
}
