// The broker's config file parser (broker/config_file): the flat TOML and
// YAML subsets. Input: one mode byte (bit 0: YAML), then the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "broker/config_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<std::vector<simprov::ConfigEntry>> entries =
      simprov::ParseConfigText(text, data[0] & 1);
  if (entries.ok()) {
    for (const simprov::ConfigEntry& e : *entries) {
      if (e.line < 1) abort();
    }
  }
  return 0;
}
