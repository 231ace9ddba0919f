// Interop: the npm package `oauth4webapi`, run by Node.js, discovers the
// real broker through its RFC 8414 metadata (algorithm 'oauth2', so
// /.well-known/oauth-authorization-server, with the library's own checks of
// the issuer) and introspects a device token (RFC 7662) at the
// introspection endpoint the metadata names, authenticating as an
// application with HTTP Basic (client_secret_basic, which form-urlencodes
// the name and key first as RFC 6749 section 2.3.1 says: the key's '_' and
// '-' arrive as %5F and %2D).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
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
using ::simprov::testing::WriteSoftSim;

constexpr char kImsi[] = "001010000008301";

std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':')) {
    std::string p = absl::StrCat(dir, "/", name);
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

class OauthInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = FindOnPath("node");
    if (node_.empty()) GTEST_SKIP() << "node not installed (scripts/deps)";
    const std::string jose =
        std::string(SIMPROV_SOURCE_DIR) + "/test/integration/jose";
    script_ = jose + "/oauth.mjs";
    ASSERT_TRUE(PathExists(jose + "/node_modules/oauth4webapi/package.json"))
        << "npm oauth4webapi missing: run scripts/deps (npm ci --prefix "
           "test/integration/jose)";
    dir_ = MakeTempDir();
    broker_ = BrokerProcess::Start(dir_ + "/broker",
                                   {"--http-listen", "127.0.0.1:0"});
    ASSERT_NE(broker_, nullptr);
    base_ = "http://" + std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(
                            broker_->data_dir() + "/http-address")));
    const TestSim sim = RandomSim(kImsi);
    broker_->Import({sim});
    out_ = dir_ + "/device";
    ProcessResult r = broker_->Bootstrap(WriteSoftSim(dir_, sim), out_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void TearDown() override {
    broker_.reset();
    if (!dir_.empty()) RemoveTree(dir_);
  }
  std::string Token() {
    ProcessResult r =
        RunProcess({testing::kAgentBin, "token", "--broker", broker_->address(),
                    "--out", out_, "--audience", "billing"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripTrailingAsciiWhitespace(r.out));
  }
  std::string AppKey(const std::string& name) {
    ProcessResult r = broker_->Cli({"apps", "create", "--json", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json j = json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("key", "") : "";
  }
  ProcessResult OAuth(const std::string& issuer, const std::string& app,
                      const std::string& key, const std::string& token) {
    return RunProcess({node_, script_, issuer, app, key, token});
  }

  std::string node_, script_, dir_, base_, out_;
  std::unique_ptr<BrokerProcess> broker_;
};

TEST_F(OauthInteropTest, DiscoveryAndIntrospectionPassTheLibrarysChecks) {
  const std::string key = AppKey("billing");
  ASSERT_FALSE(key.empty());
  const std::string token = Token();
  ProcessResult r = OAuth(base_, "billing", key, token);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(out.is_object()) << r.out;
  const json& as = out["metadata"];
  EXPECT_EQ(as["issuer"], base_);
  EXPECT_EQ(as["jwks_uri"], base_ + "/.well-known/jwks.json");
  EXPECT_EQ(as["introspection_endpoint"], base_ + "/v1/introspect");
  EXPECT_EQ(as["access_token_signing_alg_values_supported"],
            json::array({"ES256", "EdDSA"}));

  const json& i = out["introspection"];
  EXPECT_EQ(i["active"], true);
  EXPECT_EQ(i["token_type"], "Bearer");
  EXPECT_EQ(i["aud"], "billing");
  EXPECT_EQ(i["iss"], base_);
  EXPECT_TRUE(i["sub"].is_string() && !i["sub"].get<std::string>().empty());
  EXPECT_EQ(i["client_id"], i["sub"]);
  EXPECT_TRUE(i["exp"].is_number_integer());

  // Revoked: the library sees active=false.
  ASSERT_EQ(broker_->Cli({"tokens", "revoke", i["jti"]}).exit_code, 0);
  r = OAuth(base_, "billing", key, token);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out, nullptr, false)["introspection"],
            (json{{"active", false}}));
}

TEST_F(OauthInteropTest, LibraryRefusesAWrongIssuerAndAWrongKey) {
  const std::string key = AppKey("billing");
  const std::string token = Token();
  // Another issuer identifier: the library derives the metadata URL from
  // it (RFC 8414 section 3) and requires the document's issuer to equal it
  // (section 3.3); the broker has no such issuer.
  ProcessResult r = OAuth(base_ + "/tenant", "billing", key, token);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("oauth4webapi:"), std::string::npos) << r.err;
  // A wrong key: the endpoint answers 401 with a Basic challenge, which
  // the library reports as such.
  r = OAuth(base_, "billing", "sk_wrong", token);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("OAUTH_WWW_AUTHENTICATE_CHALLENGE"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace simprov
