// Eclipse Mosquitto 2.x with its dynamic-security plugin: commands over
// MQTT to $CONTROL/dynamic-security/v1, answers read from .../response.
//
// Per device: a role "simprov-<device_id>" with literal ACLs from the topic
// templates (Mosquitto 2.0.11 does not expand %u/%c in dynsec ACLs), and a
// client whose username is the certificate's CN (the IMSI, which Mosquitto
// takes as username with use_identity_as_username). "already exists" is
// success; removal deletes the client (disableClient does not stop a client
// that authenticates with a certificate).
#include <mosquitto.h>

#include <mutex>

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
    nlohmann::json acls = nlohmann::json::array();
    for (const std::string& topic : d.topics) {
      for (const char* type : {"publishClientSend", "publishClientReceive",
                               "subscribePattern", "unsubscribePattern"}) {
        acls.push_back({{"acltype", type},
                        {"topic", topic},
                        {"priority", 0},
                        {"allow", true}});
      }
    }
    const std::string role = RoleName(d);
    auto e =
        s.Command({{"command", "createRole"},
                   {"rolename", role},
                   {"textname", absl::StrCat("simprov device ", d.device_id)},
                   {"acls", acls}});
    if (!e.ok()) return e.status();
    if (!e->empty() && !AlreadyExists(*e)) {
      return absl::FailedPreconditionError(
          absl::StrCat("createRole ", role, ": ", *e));
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

  absl::Status Remove(const DeviceRegistration& d,
                      const std::string&) override {
    ControlSession s;
    if (absl::Status c = s.Connect(url_); !c.ok()) return c;
    auto e = s.Command({{"command", "deleteClient"}, {"username", d.imsi}});
    if (!e.ok()) return e.status();
    if (!e->empty() &&
        !absl::StrContains(absl::AsciiStrToLower(*e), "not found")) {
      return absl::FailedPreconditionError(
          absl::StrCat("deleteClient ", d.imsi, ": ", *e));
    }
    // The role stays: a replacement SIM of the same device reuses it.
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
