#include "test/testing/fake_aws_iot.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/registry/aws_sigv4.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "nlohmann/json.hpp"

namespace simprov::testing {

FakeAwsIot::FakeAwsIot() {
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    Handle(req, res);
  };
  server_.Post(".*", handler);
  server_.Put(".*", handler);
  server_.Get(".*", handler);
  server_.Delete(".*", handler);
  port_ = server_.bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_.listen_after_bind(); });
}

FakeAwsIot::~FakeAwsIot() {
  server_.stop();
  thread_.join();
}

std::string FakeAwsIot::url() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

void FakeAwsIot::SetQuota(double per_second, const std::string& retry_after) {
  std::lock_guard<std::mutex> lock(mu_);
  quota_ = per_second;
  retry_after_ = retry_after;
  buckets_.clear();
}

std::vector<FakeAwsIot::Call> FakeAwsIot::calls() {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::vector<FakeAwsIot::Arrival> FakeAwsIot::arrivals() {
  std::lock_guard<std::mutex> lock(mu_);
  return arrivals_;
}

std::map<std::string, int> FakeAwsIot::registrations() {
  std::lock_guard<std::mutex> lock(mu_);
  return registrations_;
}

std::string FakeAwsIot::ApiOf(const std::string& method,
                              const std::string& path) {
  if (method == "POST" && path.rfind("/certificate/register", 0) == 0) {
    return "RegisterCertificate";
  }
  if (method == "GET" && path.rfind("/certificates/", 0) == 0) {
    return "DescribeCertificate";
  }
  if (method == "PUT" && path.rfind("/certificates/", 0) == 0) {
    return "UpdateCertificate";
  }
  if (path.rfind("/target-policies/", 0) == 0) return "AttachPolicy";
  const bool principals = path.size() > 11 && path.compare(path.size() - 11, 11,
                                                           "/principals") == 0;
  if (principals) {
    return method == "PUT" ? "AttachThingPrincipal" : "DetachThingPrincipal";
  }
  if (path.rfind("/things/", 0) == 0) {
    return method == "POST" ? "CreateThing" : "DeleteThing";
  }
  return method + " " + path;
}

bool FakeAwsIot::SignatureMatches(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  size_t sh = auth.find("SignedHeaders=");
  size_t sg = auth.find(", Signature=");
  if (sh == std::string::npos || sg == std::string::npos) return false;
  std::string names = auth.substr(sh + 14, sg - sh - 14);
  SigV4Request s;
  s.method = req.method;
  // The server decoded the path; the signer saw it as sent.
  std::string wire;
  for (absl::string_view seg : absl::StrSplit(req.path, '/')) {
    if (!wire.empty() || !seg.empty()) wire += "/";
    wire += AwsUriEncode(seg);
  }
  s.path = wire.empty() ? "/" : wire;
  for (const auto& [k, v] : req.params) s.query.emplace_back(k, v);
  for (absl::string_view n : absl::StrSplit(names, ';')) {
    s.headers.emplace_back(std::string(n),
                           req.get_header_value(std::string(n).c_str()));
  }
  s.body = req.body;
  if (names.find("host") == std::string::npos ||
      names.find("x-amz-date") == std::string::npos) {
    return false;
  }
  SigV4Signature expected =
      SignV4(s, {kFakeAwsAccessKey, kFakeAwsSecretKey, ""}, "eu-west-1", "iot");
  return expected.authorization == auth;
}

bool FakeAwsIot::TakeToken(const std::string& api, SteadyTime now) {
  if (quota_ <= 0) return true;
  auto [it, fresh] = buckets_.try_emplace(api);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = quota_;
  } else {
    const double elapsed = std::chrono::duration<double>(now - b.at).count();
    b.tokens = std::min(quota_, b.tokens + elapsed * quota_);
  }
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void FakeAwsIot::Handle(const httplib::Request& req, httplib::Response& res) {
  if (!SignatureMatches(req)) {
    ++bad_signatures_;
    res.status = 403;
    res.set_content(
        R"({"message":"The request signature we calculated does not match"})",
        "application/json");
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const SteadyTime now = std::chrono::steady_clock::now();
  const std::string api = ApiOf(req.method, req.path);
  if (!TakeToken(api, now)) {
    arrivals_.push_back({api, now, true});
    ++throttled_;
    res.status = 429;
    res.set_header("x-amzn-ErrorType", "ThrottlingException:");
    if (!retry_after_.empty()) res.set_header("Retry-After", retry_after_);
    res.set_content(
        R"({"__type":"ThrottlingException","message":"Rate exceeded"})",
        "application/json");
    return;
  }
  arrivals_.push_back({api, now, false});
  calls_.push_back({req.method, req.path, req.body,
                    req.get_header_value("x-amzn-principal"),
                    req.get_param_value("newStatus")});
  if (req.method == "POST" && req.path == "/certificate/register-no-ca") {
    nlohmann::json j = nlohmann::json::parse(req.body);
    std::string pem = j["certificatePem"];
    std::string id = HexEncode(Sha256(ToBytes(pem)));
    std::string arn = "arn:aws:iot:eu-west-1:123456789012:cert/" + id;
    if (certs_.count(id)) {
      res.status = 409;
      res.set_content(
          nlohmann::json(
              {{"message", "exists"}, {"resourceId", id}, {"resourceArn", arn}})
              .dump(),
          "application/json");
      return;
    }
    certs_.insert(id);
    ++registrations_[id];
    res.set_content(
        nlohmann::json({{"certificateArn", arn}, {"certificateId", id}}).dump(),
        "application/json");
    return;
  }
  if (req.method == "POST" && req.path.rfind("/things/", 0) == 0) {
    std::string thing = req.path.substr(8);
    if (!things_.insert(thing).second) {
      res.status = 409;
      res.set_content(R"({"message":"exists"})", "application/json");
      return;
    }
    res.set_content(nlohmann::json({{"thingName", thing}}).dump(),
                    "application/json");
    return;
  }
  res.set_content("{}", "application/json");
}

}  // namespace simprov::testing
