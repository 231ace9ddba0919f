// Where peers find the broker: the token issuer, the JWKS and the CRL
// Distribution Point derive from one public base URL (--public-url, or the
// HTTP listener with a wildcard host replaced by the public name), never a
// wildcard address; /metrics can move to a listener of its own.
#include <gtest/gtest.h>
#include <httplib.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/broker_http.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "nlohmann/json.hpp"
#include "test/testing/broker_fixture.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RunProcess;

TEST(PublicBaseUrl, DerivesAndRefuses) {
  bool loopback = true;
  EXPECT_EQ(
      *PublicBaseUrl("https://b.example.com/", "0.0.0.0", 80, "x", &loopback),
      "https://b.example.com");
  EXPECT_FALSE(loopback);
  EXPECT_EQ(*PublicBaseUrl("", "0.0.0.0", 8080, "b.example.com", &loopback),
            "http://b.example.com:8080");
  EXPECT_EQ(*PublicBaseUrl("", "::", 8080, "b.example.com", &loopback),
            "http://b.example.com:8080");
  EXPECT_EQ(*PublicBaseUrl("", "10.0.0.5", 8080, "x", &loopback),
            "http://10.0.0.5:8080");
  EXPECT_EQ(*PublicBaseUrl("", "::1", 8080, "x", &loopback),
            "http://[::1]:8080");
  EXPECT_TRUE(loopback);
  EXPECT_TRUE(PublicBaseUrl("", "127.0.0.1", 1, "x", &loopback).ok());
  EXPECT_TRUE(loopback);
  EXPECT_TRUE(
      PublicBaseUrl("http://127.evil.example", "", 0, "", &loopback).ok());
  EXPECT_FALSE(loopback);
  for (const char* bad :
       {"http://0.0.0.0:8080", "http://[::]:8080/", "https://0.0.0.0",
        "ftp://b.example.com", "b.example.com", "http://:8080"}) {
    auto r = PublicBaseUrl(bad, "", 0, "", &loopback);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

class PublicUrlTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir(); }
  void TearDown() override { testing::RemoveTree(dir_); }
  static std::string Address(const BrokerProcess& b, const char* file) {
    return std::string(
        absl::StripAsciiWhitespace(ReadFileOrEmpty(b.data_dir() + "/" + file)));
  }
  std::string dir_;
};

TEST_F(PublicUrlTest, AWildcardListenerPublishesThePublicName) {
  auto broker = BrokerProcess::Start(
      dir_ + "/b",
      {"--http-listen", "0.0.0.0:0", "--public-name", "broker.test"});
  ASSERT_NE(broker, nullptr);
  const std::string http = Address(*broker, "http-address");
  const std::string port = http.substr(http.rfind(':') + 1);
  httplib::Client client("127.0.0.1", std::stoi(port));
  auto meta = client.Get("/.well-known/oauth-authorization-server");
  ASSERT_TRUE(meta);
  auto j = nlohmann::json::parse(meta->body);
  EXPECT_EQ(j["issuer"], "http://broker.test:" + port);
  EXPECT_EQ(j["jwks_uri"],
            "http://broker.test:" + port + "/.well-known/jwks.json");
  EXPECT_FALSE(absl::StrContains(broker->log(), "0.0.0.0:" + port + "/"))
      << broker->log();
}

TEST_F(PublicUrlTest, AWildcardPublicUrlIsRefusedBeforeAnythingIsWritten) {
  for (const char* flag : {"--public-url", "--token-issuer"}) {
    ProcessResult r =
        RunProcess({testing::kBrokerBin, "--data-dir", dir_ + "/b", "--listen",
                    "127.0.0.1:0", "--http-listen", "127.0.0.1:0", flag,
                    "http://0.0.0.0:8080"});
    EXPECT_EQ(r.exit_code, kExitUsage) << flag;
    EXPECT_TRUE(absl::StrContains(
        r.err, absl::StrCat(flag,
                            ": http://0.0.0.0:8080 names no reachable "
                            "host")))
        << r.err;
    EXPECT_FALSE(PathExists(dir_ + "/b")) << flag;
  }
}

TEST_F(PublicUrlTest, ALoopbackPublicUrlIsWarnedAboutUnlessChosen) {
  auto broker =
      BrokerProcess::Start(dir_ + "/b", {"--http-listen", "127.0.0.1:0"});
  ASSERT_NE(broker, nullptr);
  EXPECT_TRUE(absl::StrContains(broker->log(), "a loopback address"))
      << broker->log();
  ASSERT_EQ(broker->Stop(), 0);
  broker = BrokerProcess::Start(
      dir_ + "/c",
      {"--http-listen", "127.0.0.1:0", "--public-url", "http://127.0.0.1:9"});
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(absl::StrContains(broker->log(), "a loopback address"))
      << broker->log();
}

TEST_F(PublicUrlTest, MetricsMoveToTheirOwnListener) {
  auto broker = BrokerProcess::Start(
      dir_ + "/b",
      {"--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"});
  ASSERT_NE(broker, nullptr);
  const std::string http = Address(*broker, "http-address");
  const std::string metrics = Address(*broker, "metrics-address");
  ASSERT_FALSE(metrics.empty());
  httplib::Client public_port("http://" + http);
  auto r = public_port.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = public_port.Get("/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  httplib::Client private_port("http://" + metrics);
  r = private_port.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(absl::StrContains(r->body, "simprov_bootstraps_total"));
  ASSERT_EQ(broker->Stop(), 0);
  EXPECT_FALSE(PathExists(dir_ + "/b/metrics-address"));
}

}  // namespace
}  // namespace simprov
