#include "common/duration.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace simprov {

absl::StatusOr<absl::Duration> ParseHumanDuration(absl::string_view text) {
  const absl::Status bad = absl::InvalidArgumentError(absl::StrCat(
      "'", text, "' is not a duration (examples: 90s, 5m, 2h, 30d)"));
  if (text.empty() || text.size() > 32) return bad;
  absl::Duration total;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == start) return bad;
    int64_t n = 0;
    // At most 9 digits per part: no overflow, whatever the unit.
    if (i - start > 9 || !absl::SimpleAtoi(text.substr(start, i - start), &n)) {
      return bad;
    }
    size_t ustart = i;
    while (i < text.size() && (text[i] < '0' || text[i] > '9')) ++i;
    absl::string_view unit = text.substr(ustart, i - ustart);
    if (unit == "ms") {
      total += absl::Milliseconds(n);
    } else if (unit == "s") {
      total += absl::Seconds(n);
    } else if (unit == "m") {
      total += absl::Minutes(n);
    } else if (unit == "h") {
      total += absl::Hours(n);
    } else if (unit == "d") {
      total += absl::Hours(24 * n);
    } else {
      return bad;
    }
  }
  return total;
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  const absl::Status bad =
      absl::InvalidArgumentError(absl::StrCat("'", text, "' is not HOST:PORT"));
  HostPort hp;
  size_t colon;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() ||
        text[close + 1] != ':') {
      return bad;
    }
    hp.host = std::string(text.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = text.rfind(':');
    if (colon == absl::string_view::npos) return bad;
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) return bad;  // v6 needs []
  }
  if (hp.host.empty() || hp.host.size() > 253) return bad;
  for (char c : hp.host) {
    if (c <= ' ' || c == '/' || c == '@' || c == '[' || c == ']') return bad;
  }
  absl::string_view port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5) return bad;
  for (char c : port) {
    if (c < '0' || c > '9') return bad;
  }
  if (!absl::SimpleAtoi(port, &hp.port) || hp.port > 65535) return bad;
  return hp;
}

}  // namespace simprov
