#include "common/pkcs11/uri.h"

#include <cstdint>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace simprov::pkcs11 {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 unreserved plus what RFC 7512 allows unescaped in a value
// (pchar minus ';' in the path, minus '&' in the query).
bool Unescaped(char c, bool query) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case ':':
    case '[':
    case ']':
    case '@':
    case '!':
    case '$':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case '=':
      return true;
    case '&':
      return !query;
    case '/':
    case '?':
    case '|':
      return query;
    default:
      return false;
  }
}

absl::StatusOr<std::string> Decode(absl::string_view name, absl::string_view v,
                                   bool query) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (c == '%') {
      if (i + 2 >= v.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("pkcs11 URI: truncated percent escape in ", name));
      }
      const int hi = HexValue(v[i + 1]);
      const int lo = HexValue(v[i + 2]);
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("pkcs11 URI: bad percent escape in ", name));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (Unescaped(c, query)) {
      out.push_back(c);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "pkcs11 URI: character 0x", absl::Hex(static_cast<uint8_t>(c)),
          " must be percent-encoded in ", name));
    }
  }
  return out;
}

void Encode(std::string& out, absl::string_view v, bool query) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char c : v) {
    if (Unescaped(c, query) && c != '&' && c != '=' && c != ';' && c != '?') {
      out.push_back(c);
    } else {
      const auto b = static_cast<uint8_t>(c);
      out.push_back('%');
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 15]);
    }
  }
}

bool IsType(std::string_view t) {
  return t == "private" || t == "public" || t == "cert" || t == "secret-key" ||
         t == "data";
}

}  // namespace

bool IsPkcs11Uri(std::string_view text) {
  return text.size() >= 7 &&
         absl::EqualsIgnoreCase(absl::string_view(text.data(), 7), "pkcs11:");
}

absl::StatusOr<Uri> ParseUri(std::string_view whole) {
  absl::string_view text(whole.data(), whole.size());
  if (!IsPkcs11Uri(whole)) {
    return absl::InvalidArgumentError("not a pkcs11: URI");
  }
  if (text.size() > kMaxUriBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("pkcs11 URI longer than ", kMaxUriBytes, " bytes"));
  }
  text.remove_prefix(7);
  absl::string_view path = text, query;
  if (size_t q = text.find('?'); q != absl::string_view::npos) {
    path = text.substr(0, q);
    query = text.substr(q + 1);
  }
  Uri u;
  std::vector<std::string> seen;
  auto once = [&](absl::string_view name) -> absl::Status {
    for (const std::string& s : seen) {
      if (s == name) {
        return absl::InvalidArgumentError(
            absl::StrCat("pkcs11 URI: ", name, " given twice"));
      }
    }
    seen.emplace_back(name);
    return absl::OkStatus();
  };
  for (int part = 0; part < 2; ++part) {
    const bool in_query = part == 1;
    absl::string_view s = in_query ? query : path;
    if (s.empty()) continue;
    for (absl::string_view attr : absl::StrSplit(s, in_query ? '&' : ';')) {
      const size_t eq = attr.find('=');
      if (eq == absl::string_view::npos || eq == 0) {
        return absl::InvalidArgumentError(
            "pkcs11 URI: every attribute is name=value");
      }
      const absl::string_view name = attr.substr(0, eq);
      for (char c : name) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') {
          return absl::InvalidArgumentError(
              "pkcs11 URI: bad character in an attribute name");
        }
      }
      if (absl::Status s = once(name); !s.ok()) return s;
      // A pin-value is decoded but never quoted in an error.
      const bool secret = in_query && name == "pin-value";
      auto value =
          Decode(secret ? "pin-value" : name, attr.substr(eq + 1), in_query);
      if (!value.ok()) return value.status();
      std::string v = *std::move(value);
      if (!in_query) {
        if (name == "token") {
          u.token = std::move(v);
        } else if (name == "manufacturer") {
          u.manufacturer = std::move(v);
        } else if (name == "serial") {
          u.serial = std::move(v);
        } else if (name == "model") {
          u.model = std::move(v);
        } else if (name == "object") {
          u.object = std::move(v);
        } else if (name == "id") {
          u.id = std::move(v);
          u.has_id = true;
        } else if (name == "type") {
          if (!IsType(v)) {
            return absl::InvalidArgumentError(
                "pkcs11 URI: type must be private, public, cert, "
                "secret-key or data");
          }
          u.type = std::move(v);
        } else if (name == "slot-id") {
          uint64_t n;
          if (v.empty() || !absl::SimpleAtoi(v, &n)) {
            return absl::InvalidArgumentError(
                "pkcs11 URI: slot-id must be a decimal number");
          }
          u.slot_id = std::move(v);
        } else if (absl::StartsWith(name, "library-") ||
                   name == "slot-description" || name == "slot-manufacturer" ||
                   absl::StartsWith(name, "x-")) {
          // Accepted, not used to select.
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("pkcs11 URI: unknown path attribute ", name));
        }
      } else {
        if (name == "module-path") {
          if (v.empty() || v[0] != '/') {
            return absl::InvalidArgumentError(
                "pkcs11 URI: module-path must be an absolute path");
          }
          u.module_path = std::move(v);
        } else if (name == "module-name") {
          return absl::InvalidArgumentError(
              "pkcs11 URI: module-name is not supported, give module-path");
        } else if (name == "pin-source") {
          if (absl::StartsWith(v, "file:")) v.erase(0, 5);
          if (v.empty() || absl::StrContains(v, ':') || v[0] != '/') {
            return absl::InvalidArgumentError(
                "pkcs11 URI: pin-source must be file:/ABSOLUTE/PATH");
          }
          u.pin_source = std::move(v);
        } else if (name == "pin-value") {
          u.pin_value = std::move(v);
          u.has_pin_value = true;
        } else if (absl::StartsWith(name, "x-")) {
          // Vendor query attribute: ignored.
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("pkcs11 URI: unknown query attribute ", name));
        }
      }
    }
  }
  return u;
}

std::string FormatUri(const Uri& u) {
  std::string out = "pkcs11:";
  bool first = true;
  auto add = [&](absl::string_view name, absl::string_view v, bool present) {
    if (!present) return;
    if (!first) out.push_back(';');
    first = false;
    absl::StrAppend(&out, name, "=");
    Encode(out, v, false);
  };
  add("token", u.token, !u.token.empty());
  add("manufacturer", u.manufacturer, !u.manufacturer.empty());
  add("serial", u.serial, !u.serial.empty());
  add("model", u.model, !u.model.empty());
  add("slot-id", u.slot_id, !u.slot_id.empty());
  add("object", u.object, !u.object.empty());
  add("id", u.id, u.has_id);
  add("type", u.type, !u.type.empty());
  bool q = false;
  auto addq = [&](absl::string_view name, absl::string_view v) {
    if (v.empty()) return;
    out.push_back(q ? '&' : '?');
    q = true;
    absl::StrAppend(&out, name, "=");
    Encode(out, v, true);
  };
  addq("module-path", u.module_path);
  if (!u.pin_source.empty()) addq("pin-source", "file:" + u.pin_source);
  return out;
}

}  // namespace simprov::pkcs11
