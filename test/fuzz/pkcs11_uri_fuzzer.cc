// The PKCS#11 URI parser (common/pkcs11: ParseUri, FormatUri). A URI that
// parses formats to one that parses to the same attributes, and formatting
// is stable; a pin-value is never formatted.
//
// Input: the URI text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/pkcs11/uri.h"

using namespace simprov::pkcs11;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Uri> u = ParseUri(text);
  if (!u.ok()) return 0;
  const std::string formatted = FormatUri(*u);
  // Percent-encoding can take a URI near the size bound past it, and the
  // parser refuses what is over the bound.
  if (formatted.size() > kMaxUriBytes) return 0;
  absl::StatusOr<Uri> again = ParseUri(formatted);
  if (!again.ok()) abort();
  if (again->token != u->token || again->manufacturer != u->manufacturer ||
      again->serial != u->serial || again->model != u->model ||
      again->object != u->object || again->id != u->id ||
      again->has_id != u->has_id || again->type != u->type ||
      again->slot_id != u->slot_id || again->module_path != u->module_path ||
      again->pin_source != u->pin_source || again->has_pin_value) {
    abort();
  }
  if (FormatUri(*again) != formatted) abort();
  return 0;
}
