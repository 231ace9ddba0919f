#include "broker/registry/registry.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"

namespace simprov {

namespace {

constexpr size_t kMaxUrlSize = 4096;
constexpr size_t kMaxPayloadSize = 64 * 1024;
// AWS IoT Core's default quota for its registry calls is about 10 per
// second per account.
constexpr double kDefaultAwsRate = 10;
constexpr double kMaxRate = 10000;
constexpr char kThrottledPayload[] = "type.simprov.dev/registry-throttled";
// The longest pause a registry's Retry-After may impose.
constexpr absl::Duration kMaxRetryAfter = absl::Minutes(5);

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string DeviceRegistration::ToJson() const {
  nlohmann::json j;
  j["serial"] = serial;
  j["imsi"] = imsi;
  j["device_id"] = device_id;
  j["group"] = group;
  j["cert_pem"] = cert_pem;
  j["thing"] = thing;
  j["topics"] = topics;
  if (thing_from_hook) j["thing_from_hook"] = true;
  if (topics_from_hook) j["topics_from_hook"] = true;
  return j.dump();
}

absl::StatusOr<DeviceRegistration> DeviceRegistration::FromJson(
    absl::string_view json) {
  if (json.size() > kMaxPayloadSize) {
    return absl::InvalidArgumentError("registration payload too large");
  }
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError("registration payload is not JSON");
  }
  DeviceRegistration d;
  try {
    d.serial = j.value("serial", "");
    d.imsi = j.value("imsi", "");
    d.device_id = j.value("device_id", "");
    d.group = j.value("group", "");
    d.cert_pem = j.value("cert_pem", "");
    d.thing = j.value("thing", "");
    if (j.contains("topics")) {
      d.topics = j["topics"].get<std::vector<std::string>>();
    }
    d.thing_from_hook = j.value("thing_from_hook", false);
    d.topics_from_hook = j.value("topics_from_hook", false);
  } catch (const nlohmann::json::exception&) {
    return absl::InvalidArgumentError("registration payload is malformed");
  }
  return d;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return absl::InvalidArgumentError("truncated percent escape");
    }
    int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError("bad percent escape");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string RegistryUrl::Get(const std::string& key,
                             const std::string& def) const {
  auto it = query.find(key);
  return it == query.end() ? def : it->second;
}

std::string RegistryUrl::Redacted() const {
  std::string s = absl::StrCat(scheme, "://");
  if (!user.empty())
    absl::StrAppend(&s, user, password.empty() ? "" : ":***", "@");
  absl::StrAppend(&s, host);
  if (port != 0) absl::StrAppend(&s, ":", port);
  return s;
}

absl::StatusOr<RegistryUrl> ParseRegistryUrl(absl::string_view url) {
  if (url.size() > kMaxUrlSize) {
    return absl::InvalidArgumentError("registry URL longer than 4096 bytes");
  }
  RegistryUrl u;
  size_t sep = url.find("://");
  if (sep == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "registry URL must look like SCHEME://... (mosquitto://, aws-iot://)");
  }
  u.scheme = absl::AsciiStrToLower(url.substr(0, sep));
  absl::string_view rest = url.substr(sep + 3);
  absl::string_view query;
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = userinfo.find(':');
    auto user = PercentDecode(userinfo.substr(0, colon));
    if (!user.ok()) return user.status();
    u.user = *user;
    if (colon != absl::string_view::npos) {
      auto pass = PercentDecode(userinfo.substr(colon + 1));
      if (!pass.ok()) return pass.status();
      u.password = *pass;
    }
  }
  absl::string_view host = rest;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("registry URL: unterminated [");
    }
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      return absl::InvalidArgumentError("registry URL: bad host");
    }
    if (!rest.empty()) rest.remove_prefix(1);
  } else if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    host = rest.substr(0, colon);
    rest = rest.substr(colon + 1);
  } else {
    rest = "";
  }
  u.host = std::string(host);
  if (!rest.empty()) {
    if (!absl::SimpleAtoi(rest, &u.port) || u.port <= 0 || u.port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("registry URL: bad port '", rest, "'"));
    }
  }
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    size_t eq = kv.find('=');
    auto key = PercentDecode(kv.substr(0, eq));
    if (!key.ok()) return key.status();
    std::string value;
    if (eq != absl::string_view::npos) {
      auto v = PercentDecode(kv.substr(eq + 1));
      if (!v.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "registry URL: query value of ", *key, ": ", v.status().message()));
      }
      value = *v;
    }
    u.query[*key] = value;
  }
  if (std::string env = u.Get("password_env"); !env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (v == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("registry ", u.Redacted(), ": environment variable ",
                       env, " (password_env) is not set"));
    }
    u.password = v;
  }
  u.name = u.Get("name", u.scheme);
  for (char c : u.name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.') {
      return absl::InvalidArgumentError(
          "registry name= may use letters, digits, '-', '_' and '.' only");
    }
  }
  if (u.name.empty() || u.name.size() > 64) {
    return absl::InvalidArgumentError("registry name must be 1-64 characters");
  }
  u.rate = u.scheme == "aws-iot" ? kDefaultAwsRate : 0;
  if (auto it = u.query.find("rate"); it != u.query.end()) {
    double rate = 0;
    if (!absl::SimpleAtod(it->second, &rate) || !(rate >= 0) ||
        rate > kMaxRate) {
      return absl::InvalidArgumentError(absl::StrCat(
          "registry ", u.Redacted(), ": rate= must be deliveries per second ",
          "(a number up to 10000, or 0 for unlimited), not '", it->second,
          "'"));
    }
    u.rate = rate;
  }
  return u;
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host.size() > 64) return false;
  const std::string text(host);
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (std::memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0) return true;
    static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0,    0,
                                                  0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(v6.s6_addr, kMapped, 12) == 0 && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<std::vector<std::string>> ReadRegistryFile(
    const std::string& path) {
  auto text = ReadFileToString(path, 1 << 20);
  if (!text.ok()) return text.status();
  std::vector<std::string> urls;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    urls.emplace_back(line);
  }
  return urls;
}

absl::StatusOr<std::unique_ptr<Registry>> NewRegistry(const RegistryUrl& url,
                                                      Clock& clock) {
  absl::StatusOr<std::unique_ptr<Registry>> r;
  if (url.scheme == "mosquitto") {
    r = NewMosquittoRegistry(url);
  } else if (url.scheme == "aws-iot") {
    r = NewAwsIotRegistry(url, clock);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown registry scheme '", url.scheme,
                     "' (mosquitto:// or aws-iot://)"));
  }
  if (r.ok()) (*r)->set_rate(url.rate);
  return r;
}

absl::Status ThrottledError(absl::string_view message,
                            absl::Duration retry_after) {
  absl::Status s = absl::ResourceExhaustedError(message);
  s.SetPayload(kThrottledPayload,
               absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(
                   std::max(retry_after, absl::ZeroDuration())))));
  return s;
}

bool IsThrottled(const absl::Status& s, absl::Duration* retry_after) {
  if (s.code() != absl::StatusCode::kResourceExhausted) return false;
  auto p = s.GetPayload(kThrottledPayload);
  if (!p.has_value()) return false;
  int64_t ms = 0;
  if (retry_after != nullptr) {
    *retry_after = absl::SimpleAtoi(std::string(*p), &ms)
                       ? absl::Milliseconds(ms)
                       : absl::ZeroDuration();
  }
  return true;
}

absl::Duration ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return absl::ZeroDuration();
  absl::Duration d = absl::ZeroDuration();
  int64_t seconds = 0;
  absl::Time at;
  std::string err;
  if (absl::SimpleAtoi(value, &seconds)) {
    d = absl::Seconds(std::max<int64_t>(seconds, 0));
  } else if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", value, &at, &err)) {
    d = std::max(at - now, absl::ZeroDuration());
  }
  return std::min(d, kMaxRetryAfter);
}

}  // namespace simprov
