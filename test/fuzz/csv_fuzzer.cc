// The CLI's CSV reader (broker/cli/csv) on a whole subscriber file: every
// record until the end or the first error; line numbers only grow.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "broker/cli/csv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  simprov::CsvReader csv(in);
  std::vector<std::string> fields;
  uint64_t last = 0;
  while (true) {
    absl::StatusOr<bool> more = csv.Next(&fields);
    if (!more.ok() || !*more) break;
    if (csv.line() <= last || fields.empty()) abort();
    last = csv.line();
  }
  return 0;
}
