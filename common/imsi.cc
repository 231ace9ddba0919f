#include "common/imsi.h"

namespace simprov {

bool IsValidImsi(absl::string_view imsi) {
  if (imsi.size() < kMinImsiDigits || imsi.size() > kMaxImsiDigits) {
    return false;
  }
  for (char c : imsi) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace simprov
