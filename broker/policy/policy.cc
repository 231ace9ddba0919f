#include "broker/policy/policy.h"

#include <openssl/objects.h>

#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/duration.h"

namespace simprov {
namespace {

using nlohmann::json;

constexpr size_t kMaxTemplateBytes = 512;
constexpr size_t kMaxListEntries = 32;
constexpr size_t kMaxGroupsFileBytes = 1024 * 1024;

const std::set<std::string>& KnownPlaceholders() {
  static const std::set<std::string> k = {"device_id", "imsi",   "imei",
                                          "iccid",     "msisdn", "group"};
  return k;
}

const std::string* ValueOf(const TemplateValues& v, absl::string_view name) {
  if (name == "device_id") return &v.device_id;
  if (name == "imsi") return &v.imsi;
  if (name == "imei") return &v.imei;
  if (name == "iccid") return &v.iccid;
  if (name == "msisdn") return &v.msisdn;
  if (name == "group") return &v.group;
  return nullptr;
}

// Walks `tmpl`, calling `on_text` and `on_placeholder` in order.
template <typename Text, typename Placeholder>
absl::Status Walk(absl::string_view tmpl, Text on_text,
                  Placeholder on_placeholder) {
  if (tmpl.size() > kMaxTemplateBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("template longer than ", kMaxTemplateBytes, " bytes"));
  }
  size_t pos = 0;
  while (pos < tmpl.size()) {
    size_t open = tmpl.find("#{", pos);
    if (open == absl::string_view::npos) {
      on_text(tmpl.substr(pos));
      break;
    }
    on_text(tmpl.substr(pos, open - pos));
    size_t close = tmpl.find('}', open + 2);
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("unterminated placeholder in \"", tmpl, "\""));
    }
    absl::string_view name = tmpl.substr(open + 2, close - open - 2);
    if (!KnownPlaceholders().contains(std::string(name))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown placeholder #{", name, "} in \"", tmpl,
          "\" (known: #{device_id} #{imsi} #{imei} #{iccid} #{msisdn} "
          "#{group})"));
    }
    if (absl::Status s = on_placeholder(name); !s.ok()) return s;
    pos = close + 1;
  }
  return absl::OkStatus();
}

absl::Status KeyError(const std::string& where, absl::string_view key,
                      absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": key \"", key, "\": ", what));
}

absl::StatusOr<std::vector<std::string>> StringList(const json& v,
                                                    const std::string& where,
                                                    absl::string_view key) {
  if (!v.is_array()) return KeyError(where, key, "must be a list of strings");
  if (v.size() > kMaxListEntries) {
    return KeyError(where, key,
                    absl::StrCat("at most ", kMaxListEntries, " entries"));
  }
  std::vector<std::string> out;
  for (const json& e : v) {
    if (!e.is_string())
      return KeyError(where, key, "must be a list of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// A scope as a token's space-separated `scope` claim carries it (RFC 6749
// scope-token; the broker also refuses backslashes, as it does in a
// request).
bool IsScopeToken(absl::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

absl::StatusOr<std::vector<std::string>> TemplateList(const json& v,
                                                      const std::string& where,
                                                      absl::string_view key) {
  auto list = StringList(v, where, key);
  if (!list.ok()) return list.status();
  for (const std::string& t : *list) {
    if (t.empty()) return KeyError(where, key, "empty template");
    if (absl::Status s = CheckTemplate(t); !s.ok()) {
      return KeyError(where, key, s.message());
    }
  }
  return list;
}

absl::StatusOr<absl::Duration> PositiveDuration(const json& v,
                                                const std::string& where,
                                                absl::string_view key) {
  if (!v.is_string()) {
    return KeyError(where, key, "must be a duration such as \"7200s\"");
  }
  auto d = ParseHumanDuration(v.get<std::string>());
  if (!d.ok()) return KeyError(where, key, d.status().message());
  if (*d < absl::Seconds(1)) return KeyError(where, key, "at least 1s");
  return *d;
}

absl::Status CheckKeys(const json& obj, const std::string& where,
                       const std::set<std::string>& known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!known.contains(it.key())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown key \"", it.key(),
                       "\" (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SubjectAttribute>> ParseSubject(
    const std::string& text, const std::string& where) {
  std::vector<SubjectAttribute> out;
  if (text.empty()) return KeyError(where, "subject", "must not be empty");
  for (absl::string_view rdn : absl::StrSplit(text, ',')) {
    rdn = absl::StripAsciiWhitespace(rdn);
    size_t eq = rdn.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return KeyError(where, "subject",
                      absl::StrCat("\"", rdn, "\" is not TYPE=VALUE"));
    }
    std::string type(absl::StripAsciiWhitespace(rdn.substr(0, eq)));
    std::string value(rdn.substr(eq + 1));
    int nid = OBJ_txt2nid(type.c_str());
    if (nid == NID_undef || OBJ_nid2sn(nid) == nullptr) {
      return KeyError(where, "subject",
                      absl::StrCat("unknown attribute type \"", type, "\""));
    }
    if (value.empty()) {
      return KeyError(where, "subject",
                      absl::StrCat("attribute ", type, " has no value"));
    }
    if (absl::Status s = CheckTemplate(value); !s.ok()) {
      return KeyError(where, "subject", s.message());
    }
    out.push_back({OBJ_nid2sn(nid), value});
  }
  if (out.size() > 8) return KeyError(where, "subject", "at most 8 RDNs");
  return out;
}

absl::StatusOr<GroupPolicy> ParsePolicyObject(const json& obj,
                                              const std::string& where_in) {
  std::string where = where_in;
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a group must be a JSON object"));
  }
  if (!obj.contains("name") || !obj["name"].is_string()) {
    return KeyError(where, "name", "required string");
  }
  GroupPolicy p;
  p.name = obj["name"].get<std::string>();
  if (!IsValidGroupName(p.name)) {
    return KeyError(where, "name",
                    "must be 1-64 letters, digits, '-', '_' or '.'");
  }
  where = absl::StrCat("group ", p.name);
  if (absl::Status s = CheckKeys(
          obj, where,
          {"name", "subject", "cert_ttl", "san", "key_types", "token",
           "registries", "registration", "imei_lock", "supersede_grace"});
      !s.ok()) {
    return s;
  }
  std::string subject = "CN=#{imsi}";
  if (obj.contains("subject")) {
    if (!obj["subject"].is_string()) {
      return KeyError(where, "subject", "must be a string");
    }
    subject = obj["subject"].get<std::string>();
  }
  auto rdns = ParseSubject(subject, where);
  if (!rdns.ok()) return rdns.status();
  p.subject = std::move(*rdns);
  if (obj.contains("cert_ttl")) {
    auto d = PositiveDuration(obj["cert_ttl"], where, "cert_ttl");
    if (!d.ok()) return d.status();
    p.cert_ttl = *d;
  }
  if (obj.contains("san")) {
    const json& san = obj["san"];
    if (!san.is_object()) {
      return KeyError(where, "san", "must be {\"dns\": [..], \"uri\": [..]}");
    }
    if (absl::Status s = CheckKeys(san, where + " san", {"dns", "uri"});
        !s.ok()) {
      return s;
    }
    if (san.contains("dns")) {
      auto l = TemplateList(san["dns"], where, "san.dns");
      if (!l.ok()) return l.status();
      p.san_dns_templates = std::move(*l);
    }
    if (san.contains("uri")) {
      auto l = TemplateList(san["uri"], where, "san.uri");
      if (!l.ok()) return l.status();
      for (const std::string& u : *l) {
        if (u.find(':') == std::string::npos) {
          return KeyError(where, "san.uri",
                          absl::StrCat("\"", u, "\" has no scheme"));
        }
      }
      p.san_uri_templates = std::move(*l);
    }
  }
  if (obj.contains("key_types")) {
    auto l = StringList(obj["key_types"], where, "key_types");
    if (!l.ok()) return l.status();
    static const std::set<std::string> kKeys = {"p256", "p384", "ed25519",
                                                "rsa"};
    for (const std::string& k : *l) {
      if (!kKeys.contains(k)) {
        return KeyError(where, "key_types",
                        absl::StrCat("unknown key type \"", k,
                                     "\" (known: p256, p384, ed25519, rsa)"));
      }
    }
    if (l->empty()) return KeyError(where, "key_types", "must not be empty");
    p.key_types = std::move(*l);
  }
  if (obj.contains("token")) {
    const json& t = obj["token"];
    if (!t.is_object()) return KeyError(where, "token", "must be an object");
    if (absl::Status s =
            CheckKeys(t, where + " token",
                      {"audiences", "max_ttl", "identifiers", "scopes"});
        !s.ok()) {
      return s;
    }
    if (t.contains("audiences")) {
      auto l = StringList(t["audiences"], where, "token.audiences");
      if (!l.ok()) return l.status();
      for (const std::string& a : *l) {
        if (a.empty() || a.size() > 256) {
          return KeyError(where, "token.audiences", "1..256 bytes each");
        }
      }
      p.token.audiences = std::move(*l);
    }
    if (t.contains("max_ttl")) {
      auto d = PositiveDuration(t["max_ttl"], where, "token.max_ttl");
      if (!d.ok()) return d.status();
      p.token.max_ttl = *d;
    }
    if (t.contains("identifiers")) {
      auto l = StringList(t["identifiers"], where, "token.identifiers");
      if (!l.ok()) return l.status();
      for (const std::string& i : *l) {
        if (i != "imsi" && i != "iccid" && i != "imei") {
          return KeyError(where, "token.identifiers",
                          absl::StrCat("unknown identifier \"", i,
                                       "\" (known: imsi, iccid, imei)"));
        }
      }
      p.token.identifiers = std::move(*l);
    }
    if (t.contains("scopes")) {
      auto l = StringList(t["scopes"], where, "token.scopes");
      if (!l.ok()) return l.status();
      for (const std::string& sc : *l) {
        if (!IsScopeToken(sc)) {
          return KeyError(where, "token.scopes",
                          absl::StrCat("\"", sc,
                                       "\" is not a scope (1-128 printable "
                                       "characters, no spaces or quotes)"));
        }
      }
      p.token.scopes = std::move(*l);
    }
  }
  if (obj.contains("registries")) {
    const json& rs = obj["registries"];
    if (!rs.is_array() || rs.size() > kMaxListEntries) {
      return KeyError(where, "registries", "must be a list of objects");
    }
    for (const json& r : rs) {
      if (!r.is_object()) {
        return KeyError(where, "registries", "must be a list of objects");
      }
      if (absl::Status s =
              CheckKeys(r, where + " registries",
                        {"target", "thing", "topics", "wildcards"});
          !s.ok()) {
        return s;
      }
      RegistryBinding b;
      if (!r.contains("target") || !r["target"].is_string() ||
          r["target"].get<std::string>().empty()) {
        return KeyError(where, "registries.target", "required string");
      }
      b.target = r["target"].get<std::string>();
      b.thing_template = "#{device_id}";
      if (r.contains("thing")) {
        if (!r["thing"].is_string()) {
          return KeyError(where, "registries.thing", "must be a string");
        }
        b.thing_template = r["thing"].get<std::string>();
        if (absl::Status s = CheckTemplate(b.thing_template); !s.ok()) {
          return KeyError(where, "registries.thing", s.message());
        }
      }
      if (r.contains("topics")) {
        auto l = TemplateList(r["topics"], where, "registries.topics");
        if (!l.ok()) return l.status();
        b.topic_templates = std::move(*l);
      }
      if (r.contains("wildcards")) {
        const json& w = r["wildcards"];
        if (!w.is_string() || (w != "device" && w != "any")) {
          return KeyError(where, "registries.wildcards",
                          "must be \"device\" or \"any\"");
        }
        b.any_wildcards = w == "any";
      }
      p.registries.push_back(std::move(b));
    }
  }
  if (obj.contains("registration")) {
    const json& r = obj["registration"];
    if (!r.is_string() || (r != "sync" && r != "async")) {
      return KeyError(where, "registration", "must be \"sync\" or \"async\"");
    }
    p.sync_registration = r == "sync";
  }
  if (obj.contains("imei_lock")) {
    if (!obj["imei_lock"].is_boolean()) {
      return KeyError(where, "imei_lock", "must be true or false");
    }
    p.imei_lock = obj["imei_lock"].get<bool>();
  }
  if (obj.contains("supersede_grace")) {
    auto d = PositiveDuration(obj["supersede_grace"], where, "supersede_grace");
    if (!d.ok()) return d.status();
    if (*d > absl::Hours(24)) {
      return KeyError(where, "supersede_grace", "at most 1d");
    }
    p.supersede_grace = *d;
  }
  return p;
}

}  // namespace

absl::Status CheckTemplate(absl::string_view tmpl) {
  return Walk(
      tmpl, [](absl::string_view) {},
      [](absl::string_view) { return absl::OkStatus(); });
}

absl::StatusOr<std::string> ExpandTemplate(absl::string_view tmpl,
                                           const TemplateValues& values) {
  std::string out;
  absl::Status s = Walk(
      tmpl,
      [&](absl::string_view text) { out.append(text.data(), text.size()); },
      [&](absl::string_view name) {
        const std::string* v = ValueOf(values, name);
        if (v == nullptr || v->empty()) {
          return absl::FailedPreconditionError(
              absl::StrCat("template \"", tmpl, "\" needs #{", name,
                           "}, which is not known for this device"));
        }
        out.append(*v);
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return out;
}

bool IsValidGroupName(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

bool GroupPolicy::AllowsKeyType(absl::string_view csr_key_type) const {
  if (key_types.empty()) return true;
  std::string want;
  if (csr_key_type == "P-256") want = "p256";
  if (csr_key_type == "P-384") want = "p384";
  if (csr_key_type == "Ed25519") want = "ed25519";
  if (absl::StartsWith(csr_key_type, "RSA-")) want = "rsa";
  for (const std::string& k : key_types) {
    if (k == want) return true;
  }
  return false;
}

GroupPolicy ImplicitPolicy(const std::string& name) {
  GroupPolicy p;
  p.name = name;
  p.subject = {{"CN", "#{imsi}"}};
  return p;
}

absl::StatusOr<GroupPolicy> ParseGroupPolicy(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("group policy is not valid JSON");
  }
  return ParsePolicyObject(j, "group");
}

absl::StatusOr<std::vector<std::pair<GroupPolicy, std::string>>>
ParseGroupsFile(absl::string_view text) {
  if (text.size() > kMaxGroupsFileBytes) {
    return absl::InvalidArgumentError("groups file larger than 1 MiB");
  }
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("groups file is not valid JSON");
  }
  if (!j.is_object() || !j.contains("groups") || !j["groups"].is_array()) {
    return absl::InvalidArgumentError(
        "groups file must look like {\"groups\": [{\"name\": ...}, ...]}");
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "groups") {
      return absl::InvalidArgumentError(absl::StrCat(
          "groups file: unknown key \"", it.key(), "\" (known: groups)"));
    }
  }
  std::vector<std::pair<GroupPolicy, std::string>> out;
  std::set<std::string> seen;
  size_t index = 0;
  for (const json& g : j["groups"]) {
    ++index;
    auto p = ParsePolicyObject(g, absl::StrCat("groups[", index, "]"));
    if (!p.ok()) return p.status();
    // Checked here, where a group is applied, not when a stored group is
    // loaded: a group stored before the rule keeps issuing.
    for (const RegistryBinding& b : p->registries) {
      const std::string where = absl::StrCat("group ", p->name);
      if (absl::Status s = CheckThingTemplate(b.thing_template); !s.ok()) {
        return KeyError(where, "registries.thing", s.message());
      }
      for (const std::string& t : b.topic_templates) {
        if (absl::Status s = CheckTopicTemplate(t, b.any_wildcards); !s.ok()) {
          return KeyError(where, "registries.topics", s.message());
        }
      }
    }
    if (!seen.insert(p->name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("group ", p->name, " appears twice"));
    }
    out.emplace_back(std::move(*p), g.dump());
  }
  if (out.empty()) {
    return absl::InvalidArgumentError("groups file has no groups");
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ExpandSubject(
    const GroupPolicy& policy, const TemplateValues& values) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const SubjectAttribute& a : policy.subject) {
    auto v = ExpandTemplate(a.value_template, values);
    if (!v.ok()) return v.status();
    out.emplace_back(a.type, std::move(*v));
  }
  return out;
}

namespace {

constexpr size_t kMaxTopicBytes = 512;
constexpr size_t kMaxThingBytes = 128;

bool IsThingChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == ':' ||
         c == '_' || c == '-' || c == '.';
}

// Why `topic` breaks the rule ("" when it does not).
std::string TopicProblem(absl::string_view topic,
                         const std::vector<std::string>& device_values,
                         bool any_wildcards) {
  if (topic.empty()) return "empty topic";
  if (topic.size() > kMaxTopicBytes) {
    return absl::StrCat("longer than ", kMaxTopicBytes, " bytes");
  }
  if (topic.find('\0') != absl::string_view::npos) return "contains NUL";
  std::vector<absl::string_view> levels = absl::StrSplit(topic, '/');
  bool named = false;  // a level above names the device
  for (size_t i = 0; i < levels.size(); ++i) {
    absl::string_view level = levels[i];
    const bool multi = level == "#";
    const bool single = level == "+";
    if (!multi && !single &&
        (absl::StrContains(level, '#') || absl::StrContains(level, '+'))) {
      return "'#' and '+' must be whole levels";
    }
    if (multi && i + 1 != levels.size()) return "'#' must be the last level";
    if ((multi || single) && !named && !any_wildcards) {
      return absl::StrCat(
          "wildcard '", level,
          "' is not below a level naming the device (e.g. "
          "devices/#{device_id}/#); a group's registries binding allows it "
          "with \"wildcards\": \"any\"");
    }
    for (const std::string& v : device_values) {
      if (!v.empty() && absl::StrContains(level, v)) named = true;
    }
  }
  return "";
}

}  // namespace

absl::Status CheckTopicFilter(absl::string_view topic,
                              const std::vector<std::string>& device_values,
                              bool any_wildcards) {
  std::string why = TopicProblem(topic, device_values, any_wildcards);
  if (why.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("topic \"", topic, "\": ", why));
}

absl::Status CheckTopicTemplate(absl::string_view tmpl, bool any_wildcards) {
  // Expanded with markers no topic has ('\x01'): the levels naming the
  // device are those holding one.
  TemplateValues markers;
  markers.device_id =
      "\x01"
      "d\x01";
  markers.imsi =
      "\x01"
      "i\x01";
  markers.iccid =
      "\x01"
      "c\x01";
  markers.imei =
      "\x01"
      "e\x01";
  markers.msisdn =
      "\x01"
      "m\x01";
  markers.group = "g";
  auto expanded = ExpandTemplate(tmpl, markers);
  if (!expanded.ok()) return expanded.status();
  std::string why =
      TopicProblem(*expanded, DeviceNamingValues(markers), any_wildcards);
  if (why.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("topic \"", tmpl, "\": ", why));
}

std::vector<std::string> DeviceNamingValues(const TemplateValues& v) {
  std::vector<std::string> out;
  for (const std::string* s :
       {&v.device_id, &v.imsi, &v.iccid, &v.imei, &v.msisdn}) {
    if (!s->empty()) out.push_back(*s);
  }
  return out;
}

absl::Status CheckThingName(absl::string_view thing) {
  if (thing.empty() || thing.size() > kMaxThingBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("thing must be 1-", kMaxThingBytes, " bytes"));
  }
  for (char c : thing) {
    if (!IsThingChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "thing \"", thing,
          "\": only letters, digits, ':', '_', '-' and '.' are allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckThingTemplate(absl::string_view tmpl) {
  std::string literal;
  absl::Status s = Walk(
      tmpl,
      [&](absl::string_view text) { literal.append(text.data(), text.size()); },
      [&](absl::string_view) {
        literal.push_back('x');
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  if (literal.empty() || literal.size() > kMaxThingBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("thing must be 1-", kMaxThingBytes, " bytes"));
  }
  for (char c : literal) {
    if (!IsThingChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "thing \"", tmpl,
          "\": only letters, digits, ':', '_', '-' and '.' are allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace simprov
