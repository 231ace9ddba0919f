// Device tokens end to end through the real binaries: simprov-broker,
// simprov-agent token / run --token-file, simprov token verify, apps
// create, tokens revoke, the HTTP endpoints, and the npm `jose` package run
// by Node.js as an independent verifier.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/bootstrap_client.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/token/jose.h"
#include "simprov/v1/token.grpc.pb.h"
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

constexpr char kImsi[] = "001010000004001";

std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':')) {
    std::string p = absl::StrCat(dir, "/", name);
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

json Part(const std::string& token, int i) {
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  std::string text;
  if (parts.size() != 3 || !jose::Base64UrlDecode(parts[i], &text)) {
    return nullptr;
  }
  return json::parse(text, nullptr, false);
}

class TokenIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }

  // A broker with HTTP and one provisioned device in dir_/device.
  void StartAndProvision(std::vector<std::string> flags = {}) {
    flags.push_back("--http-listen");
    flags.push_back("127.0.0.1:0");
    broker_ = BrokerProcess::Start(dir_ + "/broker", flags);
    ASSERT_NE(broker_, nullptr);
    const std::string http = std::string(absl::StripAsciiWhitespace(
        ReadFileOrEmpty(broker_->data_dir() + "/http-address")));
    ASSERT_FALSE(http.empty());
    base_ = "http://" + http;
    TestSim sim = RandomSim(kImsi);
    broker_->Import({sim});
    out_ = dir_ + "/device";
    ProcessResult r = broker_->Bootstrap(WriteSoftSim(dir_, sim), out_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  ProcessResult AgentToken(std::vector<std::string> extra) {
    std::vector<std::string> argv = {testing::kAgentBin, "token", "--broker",
                                     broker_->address(), "--out", out_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv);
  }
  std::string Token(std::vector<std::string> extra = {"--audience",
                                                      "billing"}) {
    ProcessResult r = AgentToken(extra);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripTrailingAsciiWhitespace(r.out));
  }
  ProcessResult Verify(const std::string& token,
                       std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {testing::kCliBin,
                                     "token",
                                     "verify",
                                     "--jwks",
                                     base_ + "/.well-known/jwks.json",
                                     "--audience",
                                     "billing"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(token);
    return RunProcess(argv);
  }
  std::string CreateApp(const std::string& name) {
    ProcessResult r = broker_->Cli({"apps", "create", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (absl::ConsumePrefix(&line, "key:")) {
        return std::string(absl::StripAsciiWhitespace(line));
      }
    }
    return "";
  }
  // POST /v1/introspect as `app`; returns the JSON answer (or the status).
  json Introspect(const std::string& app, const std::string& key,
                  const std::string& token, int* status = nullptr) {
    httplib::Client client(base_);
    client.set_basic_auth(app, key);
    httplib::Params params{{"token", token}};
    auto res = client.Post("/v1/introspect", params);
    if (!res) return nullptr;
    if (status) *status = res->status;
    return json::parse(res->body, nullptr, false);
  }

  std::string dir_, out_, base_;
  std::unique_ptr<BrokerProcess> broker_;
};

TEST_F(TokenIntegrationTest, AgentTokenVerifiesWithTheServedJwks) {
  StartAndProvision();
  // Scopes are granted by the group's policy (none by default).
  WriteFileOrDie(dir_ + "/groups.json", R"({"groups": [{"name": "default",
      "token": {"scopes": ["read", "write"]}}]})");
  ProcessResult applied =
      broker_->Cli({"groups", "apply", dir_ + "/groups.json"});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  const std::string token =
      Token({"--audience", "billing", "--scope", "read", "--scope", "write"});
  json header = Part(token, 0);
  json claims = Part(token, 1);
  ASSERT_TRUE(header.is_object() && claims.is_object()) << token;
  EXPECT_EQ(header["typ"], "at+jwt");
  EXPECT_EQ(header["alg"], "ES256");
  EXPECT_TRUE(header.contains("kid"));
  EXPECT_EQ(claims["iss"], base_);
  EXPECT_EQ(claims["aud"], "billing");
  EXPECT_EQ(claims["imsi"], kImsi);
  EXPECT_EQ(claims["group"], "default");
  EXPECT_EQ(claims["scope"], "read write");
  json meta = json::parse(ReadFileOrEmpty(out_ + "/bootstrap.json"));
  EXPECT_EQ(claims["sub"], meta["device_id"]);
  // Every claim RFC 9068 requires; the client is the device itself.
  for (const char* name :
       {"iss", "exp", "aud", "sub", "client_id", "iat", "jti"}) {
    EXPECT_TRUE(claims.contains(name)) << name;
  }
  EXPECT_EQ(claims["client_id"], meta["device_id"]);
  EXPECT_EQ(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 600);
  EXPECT_EQ(claims["nbf"], claims["iat"]);
  EXPECT_FALSE(claims.value("jti", "").empty());
  // cnf binds the token to the device certificate.
  const std::string der =
      jose::CertificateDer(ReadFileOrEmpty(out_ + "/device.crt"));
  EXPECT_EQ(claims["cnf"]["x5t#S256"], jose::CertThumbprintS256(der));

  // simprov token verify: valid, with and without the certificate.
  ProcessResult r = Verify(token, {"--issuer", base_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out, nullptr, false), claims);
  r = Verify(token, {"--cert", out_ + "/device.crt"});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // RFC 8414 metadata: the issuer is the tokens' iss. No OpenID
  // Connect discovery: simprov is not an OpenID provider.
  httplib::Client client(base_);
  auto disco = client.Get("/.well-known/oauth-authorization-server");
  ASSERT_TRUE(disco);
  ASSERT_EQ(disco->status, 200);
  json d = json::parse(disco->body);
  EXPECT_EQ(d["issuer"], base_);
  EXPECT_EQ(d["jwks_uri"], base_ + "/.well-known/jwks.json");
  EXPECT_EQ(d["introspection_endpoint"], base_ + "/v1/introspect");
  EXPECT_TRUE(d["response_types_supported"].is_array());
  EXPECT_EQ(d["access_token_signing_alg_values_supported"],
            json::array({"ES256", "EdDSA"}));
  auto oidc = client.Get("/.well-known/openid-configuration");
  ASSERT_TRUE(oidc);
  EXPECT_EQ(oidc->status, 404);
  auto jwks = client.Get("/.well-known/jwks.json");
  ASSERT_TRUE(jwks);
  EXPECT_EQ(jwks->get_header_value("Cache-Control"), "public, max-age=300");
  // A JWKS file works as well as the URL.
  WriteFileOrDie(dir_ + "/jwks.json", jwks->body);
  r = RunProcess({testing::kCliBin, "token", "verify", "--jwks",
                  dir_ + "/jwks.json", "--audience", "billing", token});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(TokenIntegrationTest, VerifyRefusesWithTheReason) {
  StartAndProvision();
  const std::string token = Token();
  ProcessResult r = RunProcess({testing::kCliBin, "token", "verify", "--jwks",
                                base_ + "/.well-known/jwks.json", "--audience",
                                "maps", token});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_EQ(r.err,
            "simprov: token invalid: wrong audience (token is not for "
            "maps)\n");
  r = Verify(token, {"--issuer", "https://other.test"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_TRUE(absl::StrContains(r.err, "wrong issuer")) << r.err;
  // cnf mismatch: another certificate than the one the token is bound to.
  r = Verify(token, {"--cert", out_ + "/ca.pem"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_EQ(r.err,
            "simprov: token invalid: cnf mismatch: the token is bound to "
            "another certificate\n");
  // Tampered payload.
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  json claims = Part(token, 1);
  claims["imsi"] = "001010000004002";
  r = Verify(absl::StrCat(parts[0], ".", jose::Base64UrlEncode(claims.dump()),
                          ".", parts[2]));
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_EQ(r.err, "simprov: token invalid: bad signature\n");
  // "Invalid" is its own code: an unreachable JWKS is 4, bad usage 2.
  r = RunProcess({testing::kCliBin, "token", "verify", "--jwks",
                  "http://127.0.0.1:1/jwks.json", "--audience", "billing",
                  token});
  EXPECT_EQ(r.exit_code, kExitUnreachable) << r.err;
  r = RunProcess({testing::kCliBin, "token", "verify", "--jwks",
                  base_ + "/.well-known/jwks.json", token});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
}

TEST_F(TokenIntegrationTest, LifetimeIsCappedAtTheMaximum) {
  StartAndProvision();
  json claims = Part(Token({"--audience", "billing", "--ttl", "2h"}), 1);
  EXPECT_EQ(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 3600);
  claims = Part(Token({"--audience", "billing", "--ttl", "5m"}), 1);
  EXPECT_EQ(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 300);
}

TEST_F(TokenIntegrationTest, TokenAudiencesRestrictWhatDevicesMayAskFor) {
  StartAndProvision({"--token-audiences", "billing,telemetry"});
  EXPECT_FALSE(Token({"--audience", "telemetry"}).empty());
  ProcessResult r = AgentToken({"--audience", "maps"});
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(
      absl::StrContains(r.err, "audience maps is not allowed on this broker"))
      << r.err;
}

TEST_F(TokenIntegrationTest, GroupPolicyRestrictsAudiencesLifetimeAndIds) {
  broker_ =
      BrokerProcess::Start(dir_ + "/broker", {"--http-listen", "127.0.0.1:0"});
  ASSERT_NE(broker_, nullptr);
  base_ = "http://" + std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(
                          broker_->data_dir() + "/http-address")));
  TestSim sim = RandomSim(kImsi);
  broker_->Import({sim});
  WriteFileOrDie(dir_ + "/groups.json", R"({"groups": [{"name": "meters",
      "token": {"audiences": ["billing"], "max_ttl": "30s",
                "identifiers": ["imei"]}}]})");
  ProcessResult r = broker_->Cli({"groups", "apply", dir_ + "/groups.json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = broker_->Cli({"subscribers", "set-group", sim.imsi, "meters"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string imei = "490154203237518";
  out_ = dir_ + "/device";
  r = broker_->Bootstrap(
      WriteSoftSim(dir_, sim, ", \"imei\": \"" + imei + "\""), out_);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // An audience outside the group's list is refused, even though the
  // broker itself allows any.
  r = AgentToken({"--audience", "maps"});
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_TRUE(
      absl::StrContains(r.err, "audience maps is not allowed for group meters"))
      << r.err;
  // The group's max_ttl caps what the device asks for; only the IMEI goes
  // in as an identifier.
  const std::string token = Token({"--audience", "billing", "--ttl", "10m"});
  json claims = Part(token, 1);
  EXPECT_EQ(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 30);
  EXPECT_EQ(claims["imei"], imei);
  EXPECT_FALSE(claims.contains("imsi")) << claims;
  EXPECT_FALSE(claims.contains("iccid")) << claims;
  EXPECT_EQ(claims["group"], "meters");

  // Without the IMSI claim, introspection finds the subscriber through the
  // certificate the token is bound to, and a device-wide revocation still
  // applies.
  const std::string key = CreateApp("billing");
  EXPECT_EQ(Introspect("billing", key, token)["active"], true);
  // As read from a token file: with its newline (and stray blanks).
  EXPECT_EQ(Introspect("billing", key, " " + token + "\n")["active"], true);
  r = broker_->Cli({"tokens", "revoke", "--device", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect("billing", key, token), json({{"active", false}}));
}

TEST_F(TokenIntegrationTest, RevokingTheDeviceRevokesItsTokens) {
  StartAndProvision();
  const std::string key = CreateApp("billing");
  const std::string token = Token();
  EXPECT_EQ(Introspect("billing", key, token)["active"], true);
  ProcessResult r =
      broker_->Cli({"devices", "revoke", kImsi, "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect("billing", key, token), json({{"active", false}}));
  r = AgentToken({"--audience", "billing"});
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_TRUE(absl::StrContains(r.err, "was revoked")) << r.err;
  auto audit = broker_->Cli({"audit", "--imsi", kImsi, "--json"});
  EXPECT_TRUE(absl::StrContains(audit.out, "\"action\":\"revoke\""))
      << audit.out;
}

TEST_F(TokenIntegrationTest, WithoutCredentialsTheAgentSaysBootstrapFirst) {
  StartAndProvision();
  out_ = dir_ + "/empty";
  ProcessResult r = AgentToken({"--audience", "billing"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "bootstrap first")) << r.err;
}

TEST_F(TokenIntegrationTest, IntrospectionAndRevocation) {
  StartAndProvision();
  const std::string billing = CreateApp("billing");
  const std::string maps = CreateApp("maps");
  ASSERT_TRUE(absl::StartsWith(billing, "sk_")) << billing;
  ProcessResult dup = broker_->Cli({"apps", "create", "billing"});
  EXPECT_EQ(dup.exit_code, kExitUsage);
  EXPECT_EQ(dup.err, "simprov: application billing already exists\n");

  const std::string token = Token();
  json claims = Part(token, 1);
  json a = Introspect("billing", billing, token);
  EXPECT_EQ(a["active"], true) << a;
  EXPECT_EQ(a["sub"], claims["sub"]);
  EXPECT_EQ(a["aud"], "billing");
  EXPECT_EQ(a["exp"], claims["exp"]);
  EXPECT_EQ(a["jti"], claims["jti"]);
  // The token is not for maps: inactive for it.
  EXPECT_EQ(Introspect("maps", maps, token), json({{"active", false}}));
  // Wrong key, unknown application: 401.
  int status = 0;
  Introspect("billing", maps, token, &status);
  EXPECT_EQ(status, 401);
  Introspect("nobody", billing, token, &status);
  EXPECT_EQ(status, 401);
  // Garbage is inactive, not an error.
  EXPECT_EQ(Introspect("billing", billing, "a.b.c"), json({{"active", false}}));

  // Revoke by jti: inactive at once; another token stays active.
  const std::string other = Token();
  ProcessResult r =
      broker_->Cli({"tokens", "revoke", claims["jti"].get<std::string>()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Introspect("billing", billing, token), json({{"active", false}}));
  EXPECT_EQ(Introspect("billing", billing, other)["active"], true);
  // The signature still verifies offline: revocation needs introspection.
  EXPECT_EQ(Verify(token).exit_code, 0);

  // Revoke every token of the device.
  r = broker_->Cli({"tokens", "revoke", "--device", kImsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            absl::StrCat("revoked every token issued so far to ", kImsi, "\n"));
  EXPECT_EQ(Introspect("billing", billing, other), json({{"active", false}}));
  r = broker_->Cli({"tokens", "revoke", "--device", "001010000009999"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err, "simprov: no subscriber with IMSI 001010000009999\n");
  r = broker_->Cli({"tokens", "revoke"});
  EXPECT_EQ(r.exit_code, kExitUsage);
}

TEST_F(TokenIntegrationTest, DaemonKeepsAFreshTokenFile) {
  StartAndProvision();
  TestSim sim = RandomSim("001010000004009");
  broker_->Import({sim});
  const std::string sim_path = WriteSoftSim(dir_ + "/", sim);
  const std::string out = dir_ + "/daemon";
  const std::string file = dir_ + "/token";
  testing::BackgroundProcess agent(
      {testing::kAgentBin, "run", "--broker", broker_->address(), "--sim",
       "soft:" + sim_path, "--out", out, "--token-file", file,
       "--token-audience", "billing", "--token-ttl", "12s"},
      dir_ + "/agent.log");
  std::string first;
  for (int i = 0; i < 200 && first.empty(); ++i) {
    usleep(100 * 1000);
    first = ReadFileOrEmpty(file);
  }
  ASSERT_FALSE(first.empty()) << ReadFileOrEmpty(dir_ + "/agent.log");
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string token(absl::StripTrailingAsciiWhitespace(first));
  EXPECT_EQ(Verify(token, {"--cert", out + "/device.crt"}).exit_code, 0);
  // Refreshed at 2/3 of its 12 s life: a new token within ~8 s.
  std::string second = first;
  for (int i = 0; i < 150 && second == first; ++i) {
    usleep(100 * 1000);
    second = ReadFileOrEmpty(file);
  }
  EXPECT_NE(second, first);
  EXPECT_EQ(agent.Stop(), 0);
}

TEST_F(TokenIntegrationTest, NoClientCertificateIsRefused) {
  StartAndProvision();
  auto endpoint = ParseBroker(broker_->address());
  ASSERT_TRUE(endpoint.ok());
  // TLS that verifies the broker, without a client certificate.
  auto stub = v1::Tokens::NewStub(
      MakeBrokerChannel(*endpoint, ReadFileOrEmpty(out_ + "/ca.pem")));
  grpc::ClientContext ctx;
  v1::IssueTokenRequest req;
  req.add_audience("billing");
  v1::IssueTokenResponse resp;
  grpc::Status st = stub->IssueToken(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "no client certificate"))
      << st.error_message();
  EXPECT_EQ(resp.token(), "");
}

TEST_F(TokenIntegrationTest, CertificateOfAnotherBrokerIsRefused) {
  StartAndProvision();
  // A device provisioned by another broker (another CA).
  auto other = BrokerProcess::Start(dir_ + "/other");
  ASSERT_NE(other, nullptr);
  TestSim sim = RandomSim("001010000004005");
  other->Import({sim});
  const std::string foreign = dir_ + "/foreign";
  ASSERT_EQ(other->Bootstrap(WriteSoftSim(dir_, sim), foreign).exit_code, 0);
  // Its key and chain, presented to our broker (trusting our CA).
  auto endpoint = ParseBroker(broker_->address());
  ASSERT_TRUE(endpoint.ok());
  auto stub = v1::Tokens::NewStub(
      MakeMutualTlsChannel(*endpoint, ReadFileOrEmpty(out_ + "/ca.pem"),
                           ReadFileOrEmpty(foreign + "/device.key"),
                           ReadFileOrEmpty(foreign + "/chain.pem")));
  grpc::ClientContext ctx;
  v1::IssueTokenRequest req;
  req.add_audience("billing");
  v1::IssueTokenResponse resp;
  grpc::Status st = stub->IssueToken(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(st.error_message(),
                                "client certificate not issued by this broker"))
      << st.error_message();
}

// Runs one SQL statement on the broker's store from outside (the fleet
// commands that suspend and revoke are another branch's); returns the
// first column of the first row, if any.
std::string Sql(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  std::string out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(st, 0);
    out = text ? reinterpret_cast<const char*>(text) : "";
  } else {
    EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

TEST_F(TokenIntegrationTest, EveryIssuanceRechecksSubscriberAndCertificate) {
  StartAndProvision();
  const std::string db = broker_->data_dir() + "/simprov.db";
  const std::string token = Token();
  // Audited, with the jti.
  const std::string jti = Part(token, 1)["jti"];
  std::string detail;
  for (int i = 0; i < 50 && detail.empty(); ++i) {  // written in batches
    detail = Sql(db, absl::StrCat("SELECT reason FROM audit WHERE action = "
                                  "'token' AND actor = '",
                                  kImsi, "'"));
    if (detail.empty()) usleep(100 * 1000);
  }
  EXPECT_TRUE(absl::StartsWith(detail, "jti=" + jti + " aud=billing exp="))
      << detail;

  Sql(db, absl::StrCat("UPDATE subscribers SET status = 'suspended' WHERE "
                       "imsi = '",
                       kImsi, "'"));
  ProcessResult r = AgentToken({"--audience", "billing"});
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_TRUE(absl::StrContains(r.err, "subscriber is suspended")) << r.err;

  Sql(db, absl::StrCat("UPDATE subscribers SET status = 'active' WHERE "
                       "imsi = '",
                       kImsi, "'"));
  EXPECT_FALSE(Token().empty());
  Sql(db, absl::StrCat("UPDATE certificates SET status = 'revoked' WHERE "
                       "imsi = '",
                       kImsi, "'"));
  r = AgentToken({"--audience", "billing"});
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_TRUE(absl::StrContains(r.err, "was revoked")) << r.err;
}

// Interop: the npm package `jose`, run by Node.js, verifies broker tokens
// against the served JWKS (ES256 and EdDSA).
class JoseInteropTest : public TokenIntegrationTest {
 protected:
  void SetUp() override {
    TokenIntegrationTest::SetUp();
    node_ = FindOnPath("node");
    if (node_.empty()) GTEST_SKIP() << "node not installed (scripts/deps)";
    script_ =
        std::string(SIMPROV_SOURCE_DIR) + "/test/integration/jose/verify.mjs";
    ASSERT_TRUE(
        PathExists(std::string(SIMPROV_SOURCE_DIR) +
                   "/test/integration/jose/node_modules/jose/package.json"))
        << "npm jose missing: run scripts/deps (npm ci --prefix "
           "test/integration/jose)";
  }
  ProcessResult Jose(const std::string& token, const std::string& audience) {
    return RunProcess({node_, script_, base_ + "/.well-known/jwks.json", base_,
                       audience, token});
  }
  std::string node_, script_;
};

TEST_F(JoseInteropTest, Es256TokensVerifyWithJose) {
  StartAndProvision();
  const std::string token = Token();
  ProcessResult r = Jose(token, "billing");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out, nullptr, false);
  EXPECT_EQ(out["payload"], Part(token, 1));
  EXPECT_EQ(out["header"]["alg"], "ES256");
  // And jose refuses what it should.
  r = Jose(token, "maps");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "ERR_JWT_CLAIM_VALIDATION_FAILED"))
      << r.err;
}

TEST_F(JoseInteropTest, EdDsaTokensVerifyWithJose) {
  StartAndProvision({"--token-alg", "EdDSA"});
  const std::string token = Token();
  EXPECT_EQ(Part(token, 0)["alg"], "EdDSA");
  ProcessResult r = Jose(token, "billing");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Verify(token).exit_code, 0);
}

}  // namespace
}  // namespace simprov
