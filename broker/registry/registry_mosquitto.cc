// Eclipse Mosquitto 2.x with its dynamic-security plugin: commands over
// MQTT to $CONTROL/dynamic-security/v1, answers read from .../response.
//
// Per device: a role "simprov-<device_id>" with literal ACLs from the topic
// templates (Mosquitto 2.0.11 does not expand %u/%c in dynsec ACLs), and a
// client whose username is the certificate's CN (the IMSI, which Mosquitto
// takes as username with use_identity_as_username). An existing role gets
// exactly the policy's ACLs (getRole, then remove and add); an existing
// client keeps its role. Removal deletes the client once no valid
// certificate of its IMSI is left, and the role once none of the device is
// (disableClient does not stop a client that authenticates with a
// certificate).
#include <mosquitto.h>

#include <mutex>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/registry/registry.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/log.h"

namespace simprov {
namespace {

constexpr char kControlTopic[] = "$CONTROL/dynamic-security/v1";
constexpr char kResponseTopic[] = "$CONTROL/dynamic-security/v1/response";
constexpr absl::Duration kTimeout = absl::Seconds(5);

void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

// One MQTT session for one batch of commands.
class ControlSession {
 public:
  ControlSession() {
    InitLibrary();
    mosq_ = mosquitto_new(nullptr, true, this);
  }
  ~ControlSession() {
    if (mosq_ != nullptr) {
      if (connected_) mosquitto_disconnect(mosq_);
      mosquitto_destroy(mosq_);
    }
  }

  absl::Status Connect(const RegistryUrl& url) {
    if (mosq_ == nullptr) return absl::InternalError("mosquitto_new failed");
    mosquitto_connect_callback_set(mosq_, [](mosquitto*, void* self, int rc) {
      static_cast<ControlSession*>(self)->connack_ = rc;
    });
    mosquitto_subscribe_callback_set(
        mosq_, [](mosquitto*, void* self, int, int, const int*) {
          static_cast<ControlSession*>(self)->subscribed_ = true;
        });
    mosquitto_message_callback_set(
        mosq_, [](mosquitto*, void* self, const mosquitto_message* m) {
          auto* s = static_cast<ControlSession*>(self);
          if (m->payloadlen > 0 && m->payloadlen < (1 << 20)) {
            s->responses_.emplace_back(static_cast<const char*>(m->payload),
                                       m->payloadlen);
          }
        });
    if (!url.user.empty()) {
      mosquitto_username_pw_set(
          mosq_, url.user.c_str(),
          url.password.empty() ? nullptr : url.password.c_str());
    }
    if (url.Get("tls") == "1") {
      std::string ca = url.Get("ca");
      int rc = mosquitto_tls_set(mosq_, ca.empty() ? nullptr : ca.c_str(),
                                 ca.empty() ? "/etc/ssl/certs" : nullptr,
                                 nullptr, nullptr, nullptr);
      if (rc != MOSQ_ERR_SUCCESS) {
        return absl::InvalidArgumentError(
            absl::StrCat("mosquitto TLS: ", mosquitto_strerror(rc)));
      }
    }
    int port = url.port != 0 ? url.port : (url.Get("tls") == "1" ? 8883 : 1883);
    int rc = mosquitto_connect(mosq_, url.host.c_str(), port, 30);
    if (rc != MOSQ_ERR_SUCCESS) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to ", url.Redacted(), ": ", mosquitto_strerror(rc)));
    }
    connected_ = true;
    if (!LoopUntil([this] { return connack_ >= 0; })) {
      return absl::UnavailableError(
          absl::StrCat(url.Redacted(), ": no CONNACK"));
    }
    if (connack_ != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          url.Redacted(),
          ": connection refused: ", mosquitto_connack_string(connack_)));
    }
    rc = mosquitto_subscribe(mosq_, nullptr, kResponseTopic, 1);
    if (rc != MOSQ_ERR_SUCCESS || !LoopUntil([this] { return subscribed_; })) {
      return absl::UnavailableError(
          absl::StrCat(url.Redacted(), ": cannot subscribe to the response"));
    }
    return absl::OkStatus();
  }

  // Sends one command; returns its "error" (empty on success).
  absl::StatusOr<std::string> Command(nlohmann::json command) {
    auto r = Call(std::move(command));
    if (!r.ok()) return r.status();
    return r->contains("error") && (*r)["error"].is_string()
               ? (*r)["error"].get<std::string>()
               : std::string();
  }

  // Sends one command; returns its response object.
  absl::StatusOr<nlohmann::json> Call(nlohmann::json command) {
    const std::string correlation = absl::StrCat("simprov-", ++sequence_);
    command["correlationData"] = correlation;
    nlohmann::json body;
    body["commands"] = nlohmann::json::array({command});
    const std::string text = body.dump();
    int rc =
        mosquitto_publish(mosq_, nullptr, kControlTopic,
                          static_cast<int>(text.size()), text.data(), 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
      return absl::UnavailableError(
          absl::StrCat("publish: ", mosquitto_strerror(rc)));
    }
    std::optional<nlohmann::json> answer;
    bool ok = LoopUntil([&] {
      for (const std::string& r : responses_) {
        nlohmann::json j = nlohmann::json::parse(r, nullptr, false);
        if (!j.is_object() || !j.contains("responses") ||
            !j["responses"].is_array()) {
          continue;
        }
        for (const auto& resp : j["responses"]) {
          if (resp.is_object() &&
              resp.value("correlationData", "") == correlation) {
            answer = resp;
            return true;
          }
        }
      }
      return false;
    });
    if (!ok || !answer) {
      return absl::UnavailableError(absl::StrCat(
          "no answer to ", command.value("command", "?"),
          " (is the dynamic-security plugin loaded and the user allowed?)"));
    }
    return *answer;
  }

 private:
  template <typename Pred>
  bool LoopUntil(Pred done) {
    const absl::Time deadline = absl::Now() + kTimeout;
    while (!done()) {
      if (absl::Now() > deadline) return false;
      if (mosquitto_loop(mosq_, 100, 1) != MOSQ_ERR_SUCCESS) return false;
    }
    return true;
  }

  mosquitto* mosq_ = nullptr;
  bool connected_ = false;
  int connack_ = -1;
  bool subscribed_ = false;
  std::vector<std::string> responses_;
  int sequence_ = 0;
};

bool AlreadyExists(const std::string& error) {
  return absl::StrContains(absl::AsciiStrToLower(error), "already");
}

bool NotFound(const std::string& error) {
  return absl::StrContains(absl::AsciiStrToLower(error), "not found");
}

// One dynsec role ACL; equal when every field is.
struct Acl {
  std::string type;
  std::string topic;
  int priority = 0;
  bool allow = true;

  nlohmann::json ToJson() const {
    return {{"acltype", type},
            {"topic", topic},
            {"priority", priority},
            {"allow", allow}};
  }
  auto Key() const { return std::tie(type, topic, priority, allow); }
  bool operator<(const Acl& o) const { return Key() < o.Key(); }
  bool operator==(const Acl& o) const { return Key() == o.Key(); }
};

// The role's ACLs for the device's topics: it may publish, receive,
// subscribe and unsubscribe on each, literally.
std::vector<Acl> AclsFor(const DeviceRegistration& d) {
  std::vector<Acl> out;
  for (const std::string& topic : d.topics) {
    for (const char* type : {"publishClientSend", "publishClientReceive",
                             "subscribePattern", "unsubscribePattern"}) {
      out.push_back({type, topic, 0, true});
    }
  }
  return out;
}

// Brings an existing role's ACLs to exactly `want` (getRole, then
// removeRoleACL for each one not wanted, addRoleACL for each one missing).
// Removals come first: a changed ACL (same type and topic, other priority
// or allow) is removed and added again, and the role never holds more than
// the union of old and new.
absl::Status SyncRoleAcls(ControlSession& s, const std::string& role,
                          const std::vector<Acl>& want) {
  auto got = s.Call({{"command", "getRole"}, {"rolename", role}});
  if (!got.ok()) return got.status();
  if (got->contains("error") && (*got)["error"].is_string()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "getRole ", role, ": ", (*got)["error"].get<std::string>()));
  }
  std::vector<Acl> have;
  try {
    for (const auto& a : (*got)["data"]["role"]["acls"]) {
      have.push_back({a.at("acltype").get<std::string>(),
                      a.at("topic").get<std::string>(), a.value("priority", 0),
                      a.value("allow", false)});
    }
  } catch (const nlohmann::json::exception&) {
    return absl::FailedPreconditionError(
        absl::StrCat("getRole ", role, ": unexpected answer"));
  }
  const std::set<Acl> wanted(want.begin(), want.end());
  const std::set<Acl> present(have.begin(), have.end());
  for (const Acl& a : have) {
    if (wanted.contains(a)) continue;
    auto e = s.Command({{"command", "removeRoleACL"},
                        {"rolename", role},
                        {"acltype", a.type},
                        {"topic", a.topic}});
    if (!e.ok()) return e.status();
    if (!e->empty() && !NotFound(*e)) {
      return absl::FailedPreconditionError(
          absl::StrCat("removeRoleACL ", role, " ", a.topic, ": ", *e));
    }
  }
  for (const Acl& a : wanted) {
    if (present.contains(a)) continue;
    nlohmann::json cmd = a.ToJson();
    cmd["command"] = "addRoleACL";
    cmd["rolename"] = role;
    auto e = s.Command(cmd);
    if (!e.ok()) return e.status();
    if (!e->empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("addRoleACL ", role, " ", a.topic, ": ", *e));
    }
  }
  return absl::OkStatus();
}

class MosquittoRegistry : public Registry {
 public:
  MosquittoRegistry(RegistryUrl url, std::string server_ca)
      : Registry(url.name),
        url_(std::move(url)),
        server_ca_(std::move(server_ca)) {
    for (absl::string_view t :
         absl::StrSplit(url_.Get("topics"), ',', absl::SkipEmpty())) {
      topics_.emplace_back(t);
    }
  }

  std::string kind() const override { return "mosquitto"; }
  std::vector<std::string> DefaultTopicTemplates() const override {
    if (topics_.empty()) return Registry::DefaultTopicTemplates();
    return topics_;
  }

  static std::string RoleName(const DeviceRegistration& d) {
    return absl::StrCat("simprov-", d.device_id);
  }

  absl::StatusOr<std::string> Register(const DeviceRegistration& d) override {
    if (d.imsi.empty() || d.device_id.empty()) {
      return absl::InvalidArgumentError("registration without IMSI/device id");
    }
    ControlSession s;
    if (absl::Status c = s.Connect(url_); !c.ok()) return c;
    const std::vector<Acl> want = AclsFor(d);
    nlohmann::json acls = nlohmann::json::array();
    for (const Acl& a : want) acls.push_back(a.ToJson());
    const std::string role = RoleName(d);
    auto e =
        s.Command({{"command", "createRole"},
                   {"rolename", role},
                   {"textname", absl::StrCat("simprov device ", d.device_id)},
                   {"acls", acls}});
    if (!e.ok()) return e.status();
    if (!e->empty()) {
      if (!AlreadyExists(*e)) {
        return absl::FailedPreconditionError(
            absl::StrCat("createRole ", role, ": ", *e));
      }
      // The role exists (a renewal, a retry, a changed policy): bring its
      // ACLs to exactly these.
      if (absl::Status a = SyncRoleAcls(s, role, want); !a.ok()) return a;
    }
    e = s.Command({{"command", "createClient"},
                   {"username", d.imsi},
                   {"textname", absl::StrCat("simprov device ", d.device_id)},
                   {"roles", {{{"rolename", role}, {"priority", 0}}}}});
    if (!e.ok()) return e.status();
    if (!e->empty()) {
      if (!AlreadyExists(*e)) {
        return absl::FailedPreconditionError(
            absl::StrCat("createClient ", d.imsi, ": ", *e));
      }
      // The client exists (a retry after a crash, a renewal): make sure it
      // has the role. (2.0.11 answers addClientRole of a role the client
      // already has with "Internal error", so look first.)
      auto got = s.Call({{"command", "getClient"}, {"username", d.imsi}});
      if (!got.ok()) return got.status();
      bool has_role = false;
      try {
        for (const auto& r : (*got)["data"]["client"]["roles"]) {
          if (r.value("rolename", "") == role) has_role = true;
        }
      } catch (const nlohmann::json::exception&) {
      }
      if (has_role) {
        return nlohmann::json({{"username", d.imsi}, {"role", role}}).dump();
      }
      auto a = s.Command({{"command", "addClientRole"},
                          {"username", d.imsi},
                          {"rolename", role},
                          {"priority", 0}});
      if (!a.ok()) return a.status();
      if (!a->empty() && !AlreadyExists(*a)) {
        return absl::FailedPreconditionError(
            absl::StrCat("addClientRole ", d.imsi, ": ", *a));
      }
    }
    nlohmann::json result = {{"username", d.imsi}, {"role", role}};
    return result.dump();
  }

  // The client (per IMSI) goes when no other valid certificate of that IMSI
  // is registered here; the role (per device id) when none of the device
  // is.
  absl::Status Remove(
      const DeviceRegistration& d, const std::string&,
      const std::vector<DeviceRegistration>& still_valid) override {
    bool keep_client = false;
    bool keep_role = false;
    const std::string role = RoleName(d);
    for (const DeviceRegistration& other : still_valid) {
      if (other.imsi == d.imsi) keep_client = true;
      if (RoleName(other) == role) keep_role = true;
    }
    if (keep_client && keep_role) return absl::OkStatus();
    ControlSession s;
    if (absl::Status c = s.Connect(url_); !c.ok()) return c;
    if (!keep_client) {
      auto e = s.Command({{"command", "deleteClient"}, {"username", d.imsi}});
      if (!e.ok()) return e.status();
      if (!e->empty() && !NotFound(*e)) {
        return absl::FailedPreconditionError(
            absl::StrCat("deleteClient ", d.imsi, ": ", *e));
      }
    }
    if (!keep_role) {
      auto e = s.Command({{"command", "deleteRole"}, {"rolename", role}});
      if (!e.ok()) return e.status();
      if (!e->empty() && !NotFound(*e)) {
        return absl::FailedPreconditionError(
            absl::StrCat("deleteRole ", role, ": ", *e));
      }
    }
    return absl::OkStatus();
  }

  nlohmann::json ConnectionInfo(const DeviceRegistration& d) const override {
    nlohmann::json j;
    j["registry"] = name();
    j["type"] = kind();
    j["host"] = url_.Get("device_host", url_.host);
    int port = 8883;
    if (std::string p = url_.Get("device_port"); !p.empty()) {
      port = std::atoi(p.c_str());
    }
    j["port"] = port;
    j["client_id"] = d.thing;
    j["username"] = d.imsi;
    j["thing"] = d.thing;
    j["topics"] = d.topics;
    if (!server_ca_.empty()) j["server_ca"] = server_ca_;
    return j;
  }

 private:
  const RegistryUrl url_;
  const std::string server_ca_;
  std::vector<std::string> topics_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Registry>> NewMosquittoRegistry(
    const RegistryUrl& url) {
  if (url.host.empty()) {
    return absl::InvalidArgumentError(
        "mosquitto registry URL needs a host: mosquitto://USER:PASS@HOST:PORT");
  }
  if (url.user.empty()) {
    return absl::InvalidArgumentError(
        "mosquitto registry URL needs the dynamic-security admin user");
  }
  // Without tls=1 the dynamic-security password crosses the network in
  // clear text: only to this host itself, unless insecure=1 says so.
  if (url.Get("tls") != "1" && !url.password.empty() &&
      !IsLoopbackHost(url.host)) {
    if (url.Get("insecure") != "1") {
      return absl::InvalidArgumentError(absl::StrCat(
          "the dynamic-security password would cross the network in clear "
          "text to ",
          url.host, ": use tls=1 (or insecure=1 to accept that)"));
    }
    LogWarning(
        "registry %s: insecure=1: the dynamic-security password goes to %s "
        "in clear text",
        url.name, url.host);
  }
  // The CA devices verify the Mosquitto server with: server_ca=FILE, or the
  // control connection's ca=FILE.
  std::string server_ca;
  std::string ca_file = url.Get("server_ca", url.Get("ca"));
  if (!ca_file.empty()) {
    auto pem = ReadFileToString(ca_file, 1 << 20);
    if (!pem.ok()) return pem.status();
    server_ca = *pem;
  }
  return std::unique_ptr<Registry>(new MosquittoRegistry(url, server_ca));
}

}  // namespace simprov
