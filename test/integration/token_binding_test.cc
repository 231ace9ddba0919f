// Tokens are bound to the certificate they were issued for, and devices
// get only the scopes their group grants; through the real binaries
// (simprov-broker, simprov-agent token/renew/bootstrap, simprov devices
// replace/revoke, tokens revoke, groups apply) and RFC 7662 introspection
// over HTTP.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/exit_codes.h"
#include "common/token/jose.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using nlohmann::json;
using testing::BrokerProcess;
using testing::MakeTempDir;
using testing::ProcessResult;
using testing::RandomSim;
using testing::ReadFileOrEmpty;
using testing::RemoveTree;
using testing::RunProcess;
using testing::TestSim;
using testing::WriteFileOrDie;
using testing::WriteSoftSim;

constexpr char kOldImsi[] = "001010000007001";
constexpr char kNewImsi[] = "001010000007002";
const json kInactive = {{"active", false}};

json Claims(const std::string& token) {
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  std::string text;
  if (parts.size() != 3 || !jose::Base64UrlDecode(parts[1], &text)) {
    return nullptr;
  }
  return json::parse(text, nullptr, false);
}

class TokenBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    broker_ = BrokerProcess::Start(dir_ + "/broker",
                                   {"--http-listen", "127.0.0.1:0"});
    ASSERT_NE(broker_, nullptr);
    base_ = "http://" + std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(
                            broker_->data_dir() + "/http-address")));
    old_sim_ = RandomSim(kOldImsi);
    new_sim_ = RandomSim(kNewImsi);
    broker_->Import({old_sim_, new_sim_});
  }
  void TearDown() override { RemoveTree(dir_); }

  ProcessResult ApplyGroups(const std::string& groups_json) {
    WriteFileOrDie(dir_ + "/groups.json", groups_json);
    return broker_->Cli({"groups", "apply", dir_ + "/groups.json"});
  }
  // The default group's token policy; no identifiers in tokens unless
  // `token` says otherwise.
  void ApplyDefaultTokenPolicy(const std::string& token) {
    ProcessResult r = ApplyGroups(absl::StrCat(
        R"({"groups": [{"name": "default", "token": )", token, "}]}"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Bootstraps `sim` into dir_/NAME; returns the directory.
  std::string Provision(const TestSim& sim, const std::string& name) {
    const std::string out = dir_ + "/" + name;
    ProcessResult r = broker_->Bootstrap(WriteSoftSim(dir_, sim), out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  }
  std::string Serial(const std::string& out) {
    json j =
        json::parse(ReadFileOrEmpty(out + "/bootstrap.json"), nullptr, false);
    return j.is_object() ? j.value("serial", "") : "";
  }
  ProcessResult AgentToken(const std::string& out,
                           std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {testing::kAgentBin, "token",  "--broker",
                                     broker_->address(), "--out",  out,
                                     "--audience",       "billing"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv);
  }
  std::string Token(const std::string& out,
                    std::vector<std::string> extra = {}) {
    ProcessResult r = AgentToken(out, extra);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripTrailingAsciiWhitespace(r.out));
  }
  void CreateApp() {
    ProcessResult r = broker_->Cli({"apps", "create", "billing"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (absl::ConsumePrefix(&line, "key:")) {
        key_ = std::string(absl::StripAsciiWhitespace(line));
      }
    }
    ASSERT_FALSE(key_.empty()) << r.out;
  }
  // POST /v1/introspect as the billing application.
  json Introspect(const std::string& token) {
    httplib::Client client(base_);
    client.set_basic_auth("billing", key_);
    auto res = client.Post("/v1/introspect", httplib::Params{{"token", token}});
    if (!res) return "no answer";
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body, nullptr, false);
  }
  bool Active(const std::string& token) {
    json j = Introspect(token);
    if (j == kInactive) return false;
    EXPECT_EQ(j.value("active", false), true) << j;
    return true;
  }
  std::string CrlText() {
    httplib::Client client(base_);
    auto res = client.Get("/crl/ca.crl");
    if (!res || res->status != 200) return "";
    WriteFileOrDie(dir_ + "/ca.crl", res->body);
    return RunProcess({"/usr/bin/openssl", "crl", "-inform", "DER", "-in",
                       dir_ + "/ca.crl", "-noout", "-text"})
        .out;
  }

  std::string dir_, base_, key_;
  std::unique_ptr<BrokerProcess> broker_;
  TestSim old_sim_, new_sim_;
};

// The attack: with `token.identifiers: []` a token names its device only by
// `sub`, the device id, which a replacement SIM takes over. A token issued
// to the old SIM used to introspect active after the replacement. It is
// bound to the old SIM's certificate, which the replacement revokes at
// once (superseded, on the CRL): inactive from then on, whatever the new
// SIM does; and the old certificate gets no token.
TEST_F(TokenBindingTest, ReplacedSimsTokensGoInactiveAtOnce) {
  ApplyDefaultTokenPolicy(R"({"identifiers": []})");
  CreateApp();
  const std::string old_out = Provision(old_sim_, "old");
  const std::string old_serial = Serial(old_out);
  const std::string old_token = Token(old_out);
  const json claims = Claims(old_token);
  ASSERT_TRUE(claims.is_object()) << old_token;
  EXPECT_FALSE(claims.contains("imsi")) << claims;
  EXPECT_EQ(claims["sub"], kOldImsi);
  ASSERT_TRUE(Active(old_token));

  ProcessResult r = broker_->Cli({"devices", "replace", kOldImsi, kNewImsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect(old_token), kInactive);
  // The broker refuses the old certificate any further token.
  r = AgentToken(old_out);
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(
      absl::StrContains(r.err, "certificate " + old_serial + " was revoked"))
      << r.err;
  const std::string crl = CrlText();
  EXPECT_TRUE(absl::StrContains(
      crl, "Serial Number: " + absl::AsciiStrToUpper(old_serial)))
      << crl;
  EXPECT_TRUE(absl::StrContains(crl, "Superseded")) << crl;

  // The new SIM, same device id: its token is active, the old one is not.
  const std::string new_out = Provision(new_sim_, "new");
  const std::string new_token = Token(new_out);
  EXPECT_EQ(Claims(new_token)["sub"], kOldImsi);
  EXPECT_TRUE(Active(new_token));
  EXPECT_EQ(Introspect(old_token), kInactive);
  // Revoking the old SIM's tokens leaves the new SIM's (same device id)
  // alone; revoking the new SIM's covers them.
  r = broker_->Cli({"tokens", "revoke", "--device", kOldImsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect(old_token), kInactive);
  EXPECT_TRUE(Active(new_token));
  r = broker_->Cli({"tokens", "revoke", "--device", kNewImsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect(new_token), kInactive);
}

// Revoking one certificate by serial makes its tokens inactive; a token of
// the SIM's next certificate, issued after, is active.
TEST_F(TokenBindingTest, RevokingTheCertificateDeactivatesItsTokens) {
  ApplyDefaultTokenPolicy(R"({"identifiers": []})");
  CreateApp();
  const std::string out = Provision(old_sim_, "old");
  const std::string first_serial = Serial(out);
  const std::string first = Token(out);
  ASSERT_TRUE(Active(first));
  // A second certificate from the SIM (not a renewal: revoking a serial
  // also revokes the certificates renewed from it).
  ProcessResult r =
      broker_->Bootstrap(WriteSoftSim(dir_, old_sim_), out, {"--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NE(Serial(out), first_serial);

  r = broker_->Cli({"devices", "revoke", "--serial", first_serial, "--reason",
                    "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect(first), kInactive);
  // A token of the SIM's valid certificate, issued after the revocation
  // (device revocations cover their whole second), is active.
  usleep(1100 * 1000);
  const std::string second = Token(out);
  EXPECT_TRUE(Active(second));
  EXPECT_EQ(Introspect(first), kInactive);
}

// `tokens revoke --device IMSI` covers the tokens of every certificate of
// that SIM, with or without identifiers in them.
TEST_F(TokenBindingTest, RevokingTheSimsTokensCoversEachOfItsCertificates) {
  ApplyDefaultTokenPolicy(R"({"identifiers": []})");
  CreateApp();
  const std::string out = Provision(old_sim_, "old");
  const std::string first = Token(out);
  ProcessResult r = RunProcess({testing::kAgentBin, "renew", "--broker",
                                broker_->address(), "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string second = Token(out);
  ASSERT_NE(Claims(first)["cnf"], Claims(second)["cnf"]);
  ASSERT_TRUE(Active(second));
  r = broker_->Cli({"tokens", "revoke", "--device", kOldImsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect(first), kInactive);
  EXPECT_EQ(Introspect(second), kInactive);
}

// The attack: any scope a device asked for was granted ("admin
// fleet:write"). Now only the group's token.scopes are, none by default;
// a refusal names the scope and the group.
TEST_F(TokenBindingTest, ScopesAreOnlyThoseTheGroupGrants) {
  const std::string out = Provision(old_sim_, "old");
  ProcessResult r = AgentToken(out, {"--scope", "admin"});
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(
      absl::StrContains(r.err, "scope admin is not allowed for group default"))
      << r.err;
  // Without a scope a token is issued, without the claim.
  EXPECT_FALSE(Claims(Token(out)).contains("scope"));

  ASSERT_EQ(ApplyGroups(R"({"groups": [{"name": "meters",
      "token": {"scopes": ["read", "meter:write"]}}]})")
                .exit_code,
            0);
  r = broker_->Cli({"subscribers", "set-group", kOldImsi, "meters"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json claims =
      Claims(Token(out, {"--scope", "read", "--scope", "meter:write"}));
  EXPECT_EQ(claims["scope"], "read meter:write");
  EXPECT_EQ(claims["group"], "meters");
  r = AgentToken(out, {"--scope", "read", "--scope", "fleet:write"});
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_TRUE(absl::StrContains(
      r.err, "scope fleet:write is not allowed for group meters"))
      << r.err;

  // A group file with a malformed scope is refused, naming the key.
  r = ApplyGroups(R"({"groups": [{"name": "meters",
      "token": {"scopes": ["admin fleet:write"]}}]})");
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(
      r.err,
      "group meters: key \"token.scopes\": \"admin fleet:write\" is "
      "not a scope"))
      << r.err;
}

}  // namespace
}  // namespace simprov
