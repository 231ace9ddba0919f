// `--json` on the commands that change things (groups, the subscriber
// lifecycle, devices, applications, tokens), with the real simprov-broker,
// simprov and simprov-agent: each prints exactly one JSON object with the
// fields docs/cli.md documents, and nothing else on stdout.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "test/testing/broker_fixture.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using json = nlohmann::json;
using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

// One JSON object on one line, parsed; fails the test otherwise.
json ParseOneLine(const ProcessResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(j.is_object()) << r.out;
  return j;
}

// The serials of the subscriber's certificates, newest first.
std::vector<std::string> Serials(const BrokerProcess& broker,
                                 const std::string& imsi) {
  json j = ParseOneLine(broker.Cli({"subscribers", "show", "--json", imsi}));
  std::vector<std::string> out;
  for (const json& c : j["certificates"]) out.push_back(c["serial"]);
  return out;
}

class CliJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    broker_ = BrokerProcess::Start(dir_ + "/broker",
                                   {"--http-listen", "127.0.0.1:0"});
    ASSERT_NE(broker_, nullptr);
  }
  void TearDown() override {
    broker_.reset();
    RemoveTree(dir_);
  }
  // Imports and bootstraps `imsi`; returns the credential directory.
  std::string Provision(const std::string& imsi) {
    const TestSim sim = RandomSim(imsi);
    broker_->Import({sim});
    const std::string out = dir_ + "/device-" + imsi;
    ProcessResult r = broker_->Bootstrap(WriteSoftSim(dir_, sim), out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  }

  std::string dir_;
  std::unique_ptr<BrokerProcess> broker_;
};

TEST_F(CliJsonTest, GroupsAndSubscriberLifecycle) {
  const std::string groups = dir_ + "/groups.json";
  WriteFileOrDie(groups, R"({"groups": [{"name": "cams"}, {"name": "old"}]})");
  EXPECT_EQ(ParseOneLine(broker_->Cli({"groups", "apply", "--json", groups})),
            (json{{"applied", {"cams", "old"}}}));
  EXPECT_EQ(ParseOneLine(broker_->Cli({"groups", "delete", "--json", "old"})),
            (json{{"deleted", "old"}}));

  const std::string imsi = "001010000008001";
  broker_->Import({RandomSim(imsi)});
  EXPECT_EQ(ParseOneLine(broker_->Cli(
                {"subscribers", "set-group", "--json", imsi, "cams"})),
            (json{{"imsi", imsi}, {"group", "cams"}, {"status", "active"}}));
  EXPECT_EQ(
      ParseOneLine(broker_->Cli({"subscribers", "suspend", "--json", imsi})),
      (json{{"imsi", imsi}, {"status", "suspended"}}));
  EXPECT_EQ(
      ParseOneLine(broker_->Cli({"subscribers", "resume", "--json", imsi})),
      (json{{"imsi", imsi}, {"status", "active"}}));
  EXPECT_EQ(ParseOneLine(broker_->Cli(
                {"subscribers", "clear-imei-lock", "--json", imsi})),
            (json{{"imsi", imsi}, {"status", "active"}}));
  EXPECT_EQ(
      ParseOneLine(broker_->Cli({"subscribers", "terminate", "--json", imsi})),
      (json{{"imsi", imsi}, {"status", "terminated"}}));

  // An error is still one line on stderr, with nothing on stdout.
  ProcessResult r = broker_->Cli({"groups", "delete", "--json", "nosuch"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(CliJsonTest, DevicesRevokeAndReplace) {
  const std::string a = "001010000008101";
  Provision(a);
  const std::vector<std::string> serials = Serials(*broker_, a);
  ASSERT_EQ(serials.size(), 1u);
  json j = ParseOneLine(broker_->Cli({"devices", "revoke", "--json", a}));
  EXPECT_EQ(j["revoked"], json::array({serials[0]}));
  EXPECT_TRUE(j["crl_number"].is_number_unsigned()) << j;
  EXPECT_EQ(j.size(), 2u) << j;
  // Nothing left to revoke: an empty list, not an error.
  j = ParseOneLine(broker_->Cli({"devices", "revoke", "--json", a}));
  EXPECT_EQ(j["revoked"], json::array());

  const std::string old_imsi = "001010000008102";
  const std::string new_imsi = "001010000008103";
  Provision(old_imsi);
  broker_->Import({RandomSim(new_imsi)});
  const std::vector<std::string> old_serials = Serials(*broker_, old_imsi);
  ASSERT_EQ(old_serials.size(), 1u);
  const std::string device_id = ParseOneLine(
      broker_->Cli({"devices", "show", "--json", old_imsi}))["device_id"];
  ASSERT_FALSE(device_id.empty());
  j = ParseOneLine(
      broker_->Cli({"devices", "replace", "--json", old_imsi, new_imsi}));
  EXPECT_EQ(j, (json{{"device_id", device_id},
                     {"old_imsi", old_imsi},
                     {"new_imsi", new_imsi},
                     {"revoked", {old_serials[0]}}}));
}

TEST_F(CliJsonTest, AppsAndTokens) {
  const std::string out = Provision("001010000008201");
  json app =
      ParseOneLine(broker_->Cli({"apps", "create", "--json", "billing"}));
  EXPECT_EQ(app["name"], "billing");
  EXPECT_EQ(app.size(), 2u) << app;
  const std::string key = app["key"];
  EXPECT_FALSE(key.empty());

  ProcessResult r =
      RunProcess({testing::kAgentBin, "token", "--broker", broker_->address(),
                  "--out", out, "--audience", "billing"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string token(absl::StripTrailingAsciiWhitespace(r.out));
  const std::string http(absl::StripAsciiWhitespace(
      ReadFileOrEmpty(broker_->data_dir() + "/http-address")));
  json v = ParseOneLine(
      RunProcess({testing::kCliBin, "token", "verify", "--json", "--jwks",
                  "http://" + http + "/.well-known/jwks.json", "--audience",
                  "billing", token}));
  EXPECT_EQ(v["valid"], true);
  EXPECT_EQ(v["claims"]["aud"], "billing");
  const std::string jti = v["claims"]["jti"];
  EXPECT_EQ(v.size(), 2u) << v;

  EXPECT_EQ(ParseOneLine(broker_->Cli({"tokens", "revoke", "--json", jti})),
            (json{{"jti", jti}, {"device", ""}}));
  EXPECT_EQ(ParseOneLine(broker_->Cli(
                {"tokens", "revoke", "--json", "--device", "001010000008201"})),
            (json{{"jti", ""}, {"device", "001010000008201"}}));
}

}  // namespace
}  // namespace simprov
