#include "common/serial.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace simprov {

absl::StatusOr<std::string> NormalizeSerial(absl::string_view text) {
  if (text.size() > kMaxSerialText) {
    return absl::InvalidArgumentError(
        absl::StrCat("serial is longer than ", kMaxSerialText, " characters"));
  }
  text = absl::StripAsciiWhitespace(text);
  if (absl::StartsWithIgnoreCase(text, "serial=")) text.remove_prefix(7);
  if (absl::StartsWithIgnoreCase(text, "0x")) text.remove_prefix(2);
  std::string hex;
  for (char c : text) {
    if (c == ':' || c == ' ') continue;
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "serial must be hex digits, optionally separated by ':' (as "
          "openssl prints it), not \"",
          text.substr(0, 64), "\""));
    }
    hex.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  if (hex.empty()) return absl::InvalidArgumentError("serial is empty");
  if (hex.size() % 2 != 0) hex.insert(hex.begin(), '0');
  size_t zeros = 0;
  while (zeros + 2 < hex.size() && hex[zeros] == '0' && hex[zeros + 1] == '0') {
    zeros += 2;
  }
  hex.erase(0, zeros);
  if (hex.size() > 2 * kMaxSerialOctets) {
    return absl::InvalidArgumentError(
        absl::StrCat("serial is longer than ", kMaxSerialOctets, " octets"));
  }
  return hex;
}

}  // namespace simprov
