#include "broker/registry/issue_hook.h"

#include <httplib.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/policy.h"
#include "broker/registry/registry.h"
#include "common/digest.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

namespace simprov {

namespace {
constexpr size_t kMaxAnswerSize = 64 * 1024;

absl::Status Refused(absl::string_view why) {
  return absl::PermissionDeniedError(
      absl::StrCat("refused: the issue hook's answer: ", why));
}
}  // namespace

std::string PublicKeyPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()),
                                                &BIO_free);
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) return "";
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string IssueHookSignature(const Bytes& secret,
                               const std::string& timestamp,
                               const std::string& body) {
  return "v1=" + HexEncode(HmacSha256(
                     secret, ToBytes(absl::StrCat(timestamp, ".", body))));
}

absl::StatusOr<std::unique_ptr<IssueHook>> IssueHook::Create(
    IssueHookOptions options, Clock& clock) {
  const std::string& url = options.url;
  size_t sep = url.find("://");
  if (sep == std::string::npos) {
    return absl::InvalidArgumentError("--issue-hook must be an http(s) URL");
  }
  const std::string scheme = absl::AsciiStrToLower(url.substr(0, sep));
  size_t path_at = url.find('/', sep + 3);
  const std::string authority =
      url.substr(sep + 3, path_at == std::string::npos ? std::string::npos
                                                       : path_at - sep - 3);
  std::string path = path_at == std::string::npos ? "/" : url.substr(path_at);
  if (authority.find('@') != std::string::npos) {
    return absl::InvalidArgumentError(
        "--issue-hook: a user name in the URL (user@host) is not supported");
  }
  // HOST, HOST:PORT, [V6] or [V6]:PORT.
  std::string host = authority;
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos ||
        (close + 1 < authority.size() && authority[close + 1] != ':')) {
      return absl::InvalidArgumentError("--issue-hook: bad host in the URL");
    }
    host = authority.substr(0, close + 1);
    if (close + 1 < authority.size()) port = authority.substr(close + 2);
  } else if (size_t colon = authority.find(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) {
      return absl::InvalidArgumentError("--issue-hook: bad port in the URL");
    }
  }
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
        port.size() > 5) {
      return absl::InvalidArgumentError("--issue-hook: bad port in the URL");
    }
  }
  if (host.empty() || host == "[]") {
    return absl::InvalidArgumentError("--issue-hook: the URL has no host");
  }
  if (scheme == "http") {
    if (!IsLoopbackHost(host)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--issue-hook: plain http is allowed on loopback only (127.0.0.0/8, "
          "::1, localhost), not on ",
          host, "; use https"));
    }
  } else if (scheme != "https") {
    return absl::InvalidArgumentError("--issue-hook must be an http(s) URL");
  }
  if (options.secret.empty()) {
    return absl::InvalidArgumentError(
        "--issue-hook needs a secret (--issue-hook-secret-file or "
        "SIMPROV_ISSUE_HOOK_SECRET)");
  }
  return std::unique_ptr<IssueHook>(new IssueHook(
      std::move(options), clock, absl::StrCat(scheme, "://", authority), path));
}

absl::StatusOr<std::string> IssueHook::Call(const IssuanceContext& c) {
  nlohmann::json event;
  event["event"] = "certificate.pre-issue";
  event["action"] = c.action;
  event["device_id"] = c.values.device_id;
  event["imsi"] = c.values.imsi;
  event["imei"] = c.values.imei;
  event["iccid"] = c.values.iccid;
  event["group"] = c.values.group;
  event["public_key_pem"] =
      c.public_key != nullptr ? PublicKeyPem(c.public_key) : "";
  const std::string body = event.dump();
  const std::string timestamp = absl::StrCat(absl::ToUnixSeconds(clock_.Now()));

  httplib::Client client(scheme_host_);
  const double secs = absl::ToDoubleSeconds(options_.timeout);
  const time_t whole = static_cast<time_t>(secs);
  const time_t usec = static_cast<time_t>((secs - whole) * 1e6);
  client.set_connection_timeout(whole, usec);
  client.set_read_timeout(whole, usec);
  client.set_write_timeout(whole, usec);
  httplib::Headers headers = {
      {"X-Simprov-Timestamp", timestamp},
      {"X-Simprov-Signature",
       IssueHookSignature(options_.secret, timestamp, body)}};
  auto res = client.Post(path_, headers, body, "application/json");
  const std::string who = absl::StrCat("IMSI ", c.values.imsi);
  if (!res) {
    const bool timeout = res.error() == httplib::Error::Read ||
                         res.error() == httplib::Error::ConnectionTimeout ||
                         res.error() == httplib::Error::Connection;
    LogWarning("issue hook: %s: no answer (%s)", who,
               httplib::to_string(res.error()));
    if (timeout && options_.allow_on_timeout) return std::string();
    return absl::PermissionDeniedError(
        "refused: the issue hook did not answer in time");
  }
  if (res->status < 200 || res->status > 299) {
    LogInfo("issue hook: %s refused with HTTP %d", who, res->status);
    return absl::PermissionDeniedError(
        absl::StrCat("refused by the issue hook (HTTP ", res->status, ")"));
  }
  if (res->body.size() > kMaxAnswerSize) {
    return absl::PermissionDeniedError(
        "refused: the issue hook's answer is larger than 64 KiB");
  }
  if (res->body.empty()) return std::string();
  nlohmann::json answer = nlohmann::json::parse(res->body, nullptr, false);
  if (!answer.is_object()) {
    return absl::PermissionDeniedError(
        "refused: the issue hook's answer is not a JSON object");
  }
  if (answer.contains("allow") &&
      !(answer["allow"].is_boolean() && answer["allow"].get<bool>())) {
    std::string reason =
        answer.contains("reason") && answer["reason"].is_string()
            ? answer["reason"].get<std::string>()
            : "no reason given";
    if (reason.size() > 200) reason.resize(200);
    LogInfo("issue hook: %s refused: %s", who, reason);
    return absl::PermissionDeniedError(
        absl::StrCat("refused by the issue hook: ", reason));
  }
  // What the hook answers is held to the group's rule for registry values
  // (broker/policy/policy.h): a thing name, and topics whose wildcards stay
  // below a level naming this device unless every binding of the group
  // allows any.
  nlohmann::json details = nlohmann::json::object();
  if (answer.contains("thing") && !answer["thing"].is_null()) {
    if (!answer["thing"].is_string()) return Refused("thing must be a string");
    const std::string thing = answer["thing"].get<std::string>();
    if (absl::Status s = CheckThingName(thing); !s.ok()) {
      LogInfo("issue hook: %s: answer refused: %s", who, s.message());
      return Refused(s.message());
    }
    details["thing"] = thing;
  }
  if (answer.contains("topics") && !answer["topics"].is_null()) {
    if (!answer["topics"].is_array() || answer["topics"].size() > 32) {
      return Refused("topics must be a list of at most 32 strings");
    }
    const bool any_wildcards =
        c.policy != nullptr && !c.policy->registries.empty() &&
        std::all_of(c.policy->registries.begin(), c.policy->registries.end(),
                    [](const RegistryBinding& b) { return b.any_wildcards; });
    const std::vector<std::string> own = DeviceNamingValues(c.values);
    for (const auto& t : answer["topics"]) {
      if (!t.is_string()) return Refused("topics must be strings");
      if (absl::Status s =
              CheckTopicFilter(t.get<std::string>(), own, any_wildcards);
          !s.ok()) {
        LogInfo("issue hook: %s: answer refused: %s", who, s.message());
        return Refused(s.message());
      }
    }
    details["topics"] = answer["topics"];
  }
  return details.empty() ? std::string() : details.dump();
}

}  // namespace simprov
