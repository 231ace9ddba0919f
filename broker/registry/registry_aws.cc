// AWS IoT Core over its REST API, signed with SigV4 (service "iot").
//
// Register (each step idempotent, so a retry repeats harmlessly):
//   POST /certificate/register-no-ca  {"certificatePem", "status":"ACTIVE"}
//     (POST /certificate/register with caCertificatePem when ca= is set)
//     -> certificateArn, certificateId (409: the certificate is known; its
//        id is the SHA-256 of the DER and DescribeCertificate gives the ARN)
//   POST /things/{thing}                 (409: exists)
//   PUT  /target-policies/{policy}       {"target": certificateArn}
//   PUT  /things/{thing}/principals      x-amzn-principal: certificateArn
// Remove (one certificate): PUT /certificates/{certificateId}?newStatus=
// INACTIVE (or REVOKED with revoke_status=REVOKED), then
// DELETE /things/{thing}/principals (x-amzn-principal: certificateArn), and
// DELETE /things/{thing} when no other valid certificate of the device is
// registered with that thing.
#include <httplib.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/registry/aws_sigv4.h"
#include "broker/registry/registry.h"
#include "common/atomic_file.h"
#include "common/digest.h"
#include "common/x509.h"

namespace simprov {
namespace {

constexpr size_t kMaxAnswerSize = 256 * 1024;
constexpr int kTimeoutSeconds = 10;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

struct HttpAnswer {
  int status = 0;
  std::string body;
  std::string error_type;   // x-amzn-ErrorType
  std::string retry_after;  // Retry-After
};

class AwsIotRegistry : public Registry {
 public:
  AwsIotRegistry(RegistryUrl url, Clock& clock, std::string endpoint,
                 std::string ca_pem)
      : Registry(url.name),
        url_(std::move(url)),
        clock_(clock),
        endpoint_(std::move(endpoint)),
        ca_pem_(std::move(ca_pem)) {
    // scheme://host[:port] and any base path.
    size_t sep = endpoint_.find("://");
    size_t slash = endpoint_.find('/', sep == std::string::npos ? 0 : sep + 3);
    base_ = slash == std::string::npos ? endpoint_ : endpoint_.substr(0, slash);
    base_path_ = slash == std::string::npos ? "" : endpoint_.substr(slash);
    while (!base_path_.empty() && base_path_.back() == '/') {
      base_path_.pop_back();
    }
    host_ = sep == std::string::npos ? base_ : base_.substr(sep + 3);
  }

  std::string kind() const override { return "aws-iot"; }
  std::string DefaultThingTemplate() const override {
    return url_.Get("thing", "#{device_id}");
  }
  std::vector<std::string> DefaultTopicTemplates() const override {
    std::vector<std::string> topics;
    for (absl::string_view t :
         absl::StrSplit(url_.Get("topics"), ',', absl::SkipEmpty())) {
      topics.emplace_back(t);
    }
    if (topics.empty()) return Registry::DefaultTopicTemplates();
    return topics;
  }

  absl::StatusOr<std::string> Register(const DeviceRegistration& d) override {
    nlohmann::json cert_body = {{"certificatePem", d.cert_pem},
                                {"status", "ACTIVE"}};
    std::string path = "/certificate/register-no-ca";
    if (!ca_pem_.empty()) {
      cert_body["caCertificatePem"] = ca_pem_;
      path = "/certificate/register";
    }
    auto reg = Call("POST", path, {}, cert_body.dump(), {});
    if (!reg.ok()) return reg.status();
    std::string arn, id;
    if (reg->status == 200) {
      nlohmann::json j = nlohmann::json::parse(reg->body, nullptr, false);
      if (j.is_object()) {
        arn = j.value("certificateArn", "");
        id = j.value("certificateId", "");
      }
    } else if (reg->status == 409) {
      nlohmann::json j = nlohmann::json::parse(reg->body, nullptr, false);
      if (j.is_object()) {
        arn = j.value("resourceArn", "");
        id = j.value("resourceId", "");
      }
      if (id.empty()) {
        auto leaf = CertFromPem(d.cert_pem);
        if (!leaf.ok()) return leaf.status();
        id = HexEncode(CertSha256(leaf->get()));
      }
      if (arn.empty()) {
        auto desc = Call("GET", "/certificates/" + id, {}, "", {});
        if (!desc.ok()) return desc.status();
        if (desc->status != 200) return Failure("DescribeCertificate", *desc);
        nlohmann::json dj = nlohmann::json::parse(desc->body, nullptr, false);
        if (dj.is_object() && dj.contains("certificateDescription")) {
          arn = dj["certificateDescription"].value("certificateArn", "");
        }
      }
    } else {
      return Failure("RegisterCertificate", *reg);
    }
    if (arn.empty() || id.empty()) {
      return absl::UnavailableError(
          "RegisterCertificate answered without certificateArn/Id");
    }
    const std::string thing = AwsUriEncode(d.thing);
    auto t = Call("POST", "/things/" + thing, {}, "{}", {});
    if (!t.ok()) return t.status();
    if (t->status != 200 && t->status != 409) return Failure("CreateThing", *t);
    const std::string policy = url_.Get("policy");
    if (!policy.empty()) {
      auto p = Call("PUT", "/target-policies/" + AwsUriEncode(policy), {},
                    nlohmann::json({{"target", arn}}).dump(), {});
      if (!p.ok()) return p.status();
      if (p->status != 200) return Failure("AttachPolicy", *p);
    }
    auto a = Call("PUT", "/things/" + thing + "/principals", {}, "",
                  {{"x-amzn-principal", arn}});
    if (!a.ok()) return a.status();
    if (a->status != 200) return Failure("AttachThingPrincipal", *a);
    return nlohmann::json({{"certificateArn", arn},
                           {"certificateId", id},
                           {"thing", d.thing}})
        .dump();
  }

  // The certificate is deactivated and detached from its thing; the thing
  // goes too when no other valid certificate of the device uses it.
  absl::Status Remove(
      const DeviceRegistration& d, const std::string& registered,
      const std::vector<DeviceRegistration>& still_valid) override {
    std::string id, arn;
    nlohmann::json j = nlohmann::json::parse(registered, nullptr, false);
    if (j.is_object()) {
      id = j.value("certificateId", "");
      arn = j.value("certificateArn", "");
    }
    if (id.empty()) {
      auto leaf = CertFromPem(d.cert_pem);
      if (!leaf.ok()) return leaf.status();
      id = HexEncode(CertSha256(leaf->get()));
    }
    const std::string status = url_.Get("revoke_status", "INACTIVE");
    auto r = Call("PUT", "/certificates/" + AwsUriEncode(id),
                  {{"newStatus", status}}, "", {});
    if (!r.ok()) return r.status();
    // 404: gone already.
    if (r->status != 200 && r->status != 404) {
      return Failure("UpdateCertificate", *r).status();
    }
    if (d.thing.empty() || arn.empty()) return absl::OkStatus();
    const std::string thing = AwsUriEncode(d.thing);
    auto detach = Call("DELETE", "/things/" + thing + "/principals", {}, "",
                       {{"x-amzn-principal", arn}});
    if (!detach.ok()) return detach.status();
    if (detach->status != 200 && detach->status != 404) {
      return Failure("DetachThingPrincipal", *detach).status();
    }
    for (const DeviceRegistration& other : still_valid) {
      if (other.thing == d.thing) return absl::OkStatus();  // still needed
    }
    auto del = Call("DELETE", "/things/" + thing, {}, "", {});
    if (!del.ok()) return del.status();
    if (del->status != 200 && del->status != 404) {
      return Failure("DeleteThing", *del).status();
    }
    return absl::OkStatus();
  }

  nlohmann::json ConnectionInfo(const DeviceRegistration& d) const override {
    nlohmann::json j;
    j["registry"] = name();
    j["type"] = kind();
    const std::string data_host = url_.Get("data_endpoint");
    if (!data_host.empty()) {
      j["host"] = data_host;
      j["port"] = 8883;
    }
    j["client_id"] = d.thing;
    j["thing"] = d.thing;
    j["topics"] = d.topics;
    if (std::string ca = url_.Get("server_ca"); !ca.empty()) {
      auto pem = ReadFileToString(ca, 1 << 20);
      if (pem.ok()) j["server_ca"] = *pem;
    }
    return j;
  }

 private:
  // An error answer as a status. Throttling (HTTP 429, or
  // ThrottlingException named by the x-amzn-ErrorType header or the body's
  // __type/code, which AWS also sends with HTTP 400) is a ThrottledError
  // carrying the Retry-After wait.
  absl::StatusOr<std::string> Failure(absl::string_view call,
                                      const HttpAnswer& a) const {
    std::string type;
    std::string error_code;
    nlohmann::json j = nlohmann::json::parse(a.body, nullptr, false);
    if (j.is_object()) {
      auto text = [&j](const char* key) {
        auto it = j.find(key);
        return it != j.end() && it->is_string() ? it->get<std::string>()
                                                : std::string();
      };
      type = text("message");
      error_code = text("__type");
      if (error_code.empty()) error_code = text("code");
    }
    const bool throttled =
        a.status == 429 ||
        absl::StrContains(a.error_type, "ThrottlingException") ||
        absl::StrContains(error_code, "ThrottlingException");
    std::string msg = absl::StrCat(
        call, ": HTTP ", a.status, throttled ? ": ThrottlingException" : "",
        type.empty() ? "" : ": ", type.substr(0, 200));
    if (throttled) {
      return ThrottledError(msg, ParseRetryAfter(a.retry_after, clock_.Now()));
    }
    if (a.status >= 500) {
      return absl::UnavailableError(msg);
    }
    return absl::FailedPreconditionError(msg);
  }

  absl::StatusOr<HttpAnswer> Call(
      const std::string& method, const std::string& wire_path,
      const std::vector<std::pair<std::string, std::string>>& query,
      const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& extra_headers) {
    SigV4Credentials creds;
    creds.access_key_id = Env("AWS_ACCESS_KEY_ID");
    creds.secret_access_key = Env("AWS_SECRET_ACCESS_KEY");
    creds.session_token = Env("AWS_SESSION_TOKEN");
    if (creds.access_key_id.empty() || creds.secret_access_key.empty()) {
      return absl::FailedPreconditionError(
          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
    }
    SigV4Request req;
    req.method = method;
    req.path = base_path_ + wire_path;
    req.query = query;
    req.body = body;
    req.headers.push_back({"host", host_});
    req.headers.push_back(
        {"x-amz-date", absl::FormatTime("%Y%m%dT%H%M%SZ", clock_.Now(),
                                        absl::UTCTimeZone())});
    if (!creds.session_token.empty()) {
      req.headers.push_back({"x-amz-security-token", creds.session_token});
    }
    for (const auto& h : extra_headers) req.headers.push_back(h);
    SigV4Signature sig = SignV4(req, creds, url_.host, "iot");

    httplib::Headers headers;
    for (const auto& [k, v] : req.headers) {
      if (k != "host") headers.emplace(k, v);
    }
    headers.emplace("Authorization", sig.authorization);
    std::string target = req.path;
    if (!query.empty()) {
      target += "?";
      for (size_t i = 0; i < query.size(); ++i) {
        if (i > 0) target += "&";
        absl::StrAppend(&target, AwsUriEncode(query[i].first), "=",
                        AwsUriEncode(query[i].second));
      }
    }
    httplib::Client client(base_);
    client.set_connection_timeout(kTimeoutSeconds);
    client.set_read_timeout(kTimeoutSeconds);
    client.set_write_timeout(kTimeoutSeconds);
    httplib::Result res =
        method == "POST"
            ? client.Post(target, headers, body, "application/json")
        : method == "PUT"
            ? client.Put(target, headers, body, "application/json")
        : method == "DELETE" ? client.Delete(target, headers)
                             : client.Get(target, headers);
    if (!res) {
      return absl::UnavailableError(absl::StrCat(
          "AWS IoT ", base_, ": ", httplib::to_string(res.error())));
    }
    if (res->body.size() > kMaxAnswerSize) {
      return absl::UnavailableError("AWS IoT answer larger than 256 KiB");
    }
    return HttpAnswer{res->status, res->body,
                      res->get_header_value("x-amzn-ErrorType"),
                      res->get_header_value("Retry-After")};
  }

  const RegistryUrl url_;
  Clock& clock_;
  const std::string endpoint_;
  const std::string ca_pem_;
  std::string base_;       // scheme://host[:port]
  std::string base_path_;  // "" or "/prefix"
  std::string host_;       // the Host header
};

}  // namespace

absl::StatusOr<std::unique_ptr<Registry>> NewAwsIotRegistry(
    const RegistryUrl& url, Clock& clock) {
  if (url.host.empty()) {
    return absl::InvalidArgumentError(
        "aws-iot registry URL needs a region: aws-iot://REGION?policy=NAME");
  }
  for (char c : url.host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') {
      return absl::InvalidArgumentError("aws-iot: bad region");
    }
  }
  std::string endpoint = url.Get(
      "endpoint", absl::StrCat("https://iot.", url.host, ".amazonaws.com"));
  if (endpoint.rfind("https://", 0) != 0 && endpoint.rfind("http://", 0) != 0) {
    return absl::InvalidArgumentError(
        "aws-iot: endpoint= must be a base URL with its scheme");
  }
  std::string ca_pem;
  if (std::string ca = url.Get("ca"); !ca.empty()) {
    auto pem = ReadFileToString(ca, 1 << 20);
    if (!pem.ok()) return pem.status();
    ca_pem = *pem;
  }
  return std::unique_ptr<Registry>(
      new AwsIotRegistry(url, clock, endpoint, ca_pem));
}

}  // namespace simprov
