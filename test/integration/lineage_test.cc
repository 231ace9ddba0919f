// Certificate lineage end to end with the real simprov-broker, simprov and
// simprov-agent: a copy of a device's credentials renewed into a lineage
// of its own. The device's next renewal is refused as superseded (audited,
// counted), revoking the original serial revokes the copy's renewals, the
// same renewal retried gets its certificate again, a superseded
// certificate reaches the CRL once its group's grace has passed, and the
// agent's daemon, refused, falls back to its SIM.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/bootstrap_client.h"
#include "common/csr.h"
#include "common/exit_codes.h"
#include "common/x509.h"
#include "simprov/v1/bootstrap.grpc.pb.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BackgroundProcess;
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

const std::string kOpenssl = "/usr/bin/openssl";

bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return pred();
}

class LineageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    broker_ = BrokerProcess::Start(dir_ + "/broker",
                                   {"--http-listen", "127.0.0.1:0"});
    ASSERT_NE(broker_, nullptr);
    http_ = std::string(absl::StripAsciiWhitespace(
        ReadFileOrEmpty(broker_->data_dir() + "/http-address")));
    ASSERT_FALSE(http_.empty());
  }
  void TearDown() override {
    if (broker_) broker_->Stop();
    RemoveTree(dir_);
  }

  ProcessResult Renew(const std::string& out) {
    return RunProcess({testing::kAgentBin, "renew", "--broker",
                       broker_->address(), "--out", out});
  }
  ProcessResult Token(const std::string& out) {
    return RunProcess({testing::kAgentBin, "token", "--broker",
                       broker_->address(), "--out", out, "--audience",
                       "billing"});
  }
  static std::string Serial(const std::string& out) {
    auto j = nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"),
                                   nullptr, false);
    return j.is_object() ? j.value("serial", "") : "";
  }
  void Copy(const std::string& from, const std::string& to) {
    ProcessResult r = RunProcess({"/bin/cp", "-a", from, to});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string Get(const std::string& path) {
    httplib::Client http("http://" + http_);
    auto got = http.Get(path);
    return got && got->status == 200 ? got->body : "";
  }
  // The CRL's entries: upper-case serial -> reason as openssl prints it
  // ("" when the entry has none).
  std::map<std::string, std::string> Crl() {
    const std::string path = dir_ + "/ca.crl";
    WriteFileOrDie(path, Get("/crl/ca.crl"));
    ProcessResult text = RunProcess(
        {kOpenssl, "crl", "-inform", "DER", "-in", path, "-noout", "-text"});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    std::map<std::string, std::string> out;
    std::string serial;
    bool reason_next = false;
    for (absl::string_view line : absl::StrSplit(text.out, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (absl::ConsumePrefix(&line, "Serial Number: ")) {
        serial = std::string(line);
        out[serial] = "";
      } else if (absl::StartsWith(line, "X509v3 CRL Reason Code")) {
        reason_next = true;
      } else if (reason_next) {
        out[serial] = std::string(line);
        reason_next = false;
      }
    }
    return out;
  }
  std::vector<nlohmann::json> Audit() {
    ProcessResult r = broker_->Cli({"audit", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<nlohmann::json> out;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }
  static bool Has(const std::vector<nlohmann::json>& audit,
                  const std::string& actor, const std::string& action,
                  const std::string& result, const std::string& reason) {
    for (const auto& e : audit) {
      if (e["actor"] == actor && e["action"] == action &&
          e["result"] == result && e["reason"] == reason) {
        return true;
      }
    }
    return false;
  }

  std::string dir_;
  std::unique_ptr<BrokerProcess> broker_;
  std::string http_;
};

TEST_F(LineageTest, CopiedKeyIsRefusedAsSupersededAndRevokedWithTheOriginal) {
  TestSim sim = RandomSim("001010000019101");
  broker_->Import({sim});
  const std::string device = dir_ + "/device";
  const std::string copy = dir_ + "/copy";
  ASSERT_EQ(broker_->Bootstrap(WriteSoftSim(dir_, sim), device).exit_code, 0);
  const std::string original = Serial(device);
  ASSERT_FALSE(original.empty());

  // The attacker copies the credential directory and renews from it first.
  Copy(device, copy);
  ProcessResult r = Renew(copy);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string c1 = Serial(copy);
  ASSERT_NE(c1, original);

  // (a) The device's own renewal is refused: a suspected clone, audited and
  // counted. The superseded certificate gets no token either.
  r = Renew(device);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "superseded")) << r.err;
  EXPECT_EQ(Serial(device), original);
  EXPECT_TRUE(Has(Audit(), sim.imsi, "renew", "refused", "superseded"));
  EXPECT_TRUE(absl::StrContains(
      Get("/metrics"),
      "simprov_renewals_refused_total{reason=\"superseded\"} 1"))
      << Get("/metrics");
  r = Token(device);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "was superseded")) << r.err;
  ASSERT_EQ(Token(copy).exit_code, 0);

  // (c) The same renewal asked again (same CSR key, within 10 minutes)
  // gets the certificate already issued, not a new one.
  {
    auto endpoint = ParseBroker(broker_->address());
    ASSERT_TRUE(endpoint.ok());
    auto stub = v1::Bootstrap::NewStub(
        MakeMutualTlsChannel(*endpoint, ReadFileOrEmpty(device + "/ca.pem"),
                             ReadFileOrEmpty(device + "/device.key"),
                             ReadFileOrEmpty(device + "/chain.pem")));
    auto key = PrivateKeyFromPem(ReadFileOrEmpty(copy + "/device.key"));
    ASSERT_TRUE(key.ok());
    v1::RenewRequest req;
    req.set_csr(ToString(*CreateCsr(key->get(), sim.imsi)));
    v1::RenewResponse resp;
    grpc::ClientContext ctx;
    grpc::Status st = stub->Renew(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    auto leaf = CertFromDer(ToBytes(resp.chain(0)));
    ASSERT_TRUE(leaf.ok());
    EXPECT_EQ(DescribeCert(leaf->get()).serial_hex, c1);
    // Another key: refused, counted again.
    EvpPkeyPtr other = GenerateP256Key();
    req.set_csr(ToString(*CreateCsr(other.get(), sim.imsi)));
    grpc::ClientContext ctx2;
    st = stub->Renew(&ctx2, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(st.error_message(), "superseded");
  }

  // The copy's lineage goes on.
  r = Renew(copy);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string c2 = Serial(copy);

  // (b) Revoking the original serial revokes every renewal made from it.
  r = broker_->Cli(
      {"devices", "revoke", "--serial", original, "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& s : {original, c1, c2}) {
    EXPECT_TRUE(absl::StrContains(r.out, s)) << r.out;
  }
  auto crl = Crl();
  for (const std::string& s : {original, c1, c2}) {
    const std::string upper = absl::AsciiStrToUpper(s);
    ASSERT_TRUE(crl.contains(upper)) << s;
    EXPECT_EQ(crl[upper], "Key Compromise") << s;
  }
  r = Renew(copy);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "was revoked (keyCompromise)")) << r.err;
  r = Token(copy);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "revoked")) << r.err;

  // The device's SIM gets it a fresh certificate.
  ASSERT_EQ(broker_->Bootstrap(WriteSoftSim(dir_, sim), device, {"--force"})
                .exit_code,
            0);
  EXPECT_EQ(Token(device).exit_code, 0);
}

TEST_F(LineageTest, SupersededCertificateReachesTheCrlAfterTheGrace) {
  TestSim sim = RandomSim("001010000019102");
  broker_->Import({sim});
  const std::string groups = dir_ + "/groups.json";
  WriteFileOrDie(
      groups, R"({"groups": [{"name": "default", "supersede_grace": "2s"}]})");
  ProcessResult r = broker_->Cli({"groups", "apply", groups});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string device = dir_ + "/device";
  const std::string sim_path = WriteSoftSim(dir_, sim);
  ASSERT_EQ(broker_->Bootstrap(sim_path, device).exit_code, 0);
  const std::string first = Serial(device);
  const std::string old = dir_ + "/old";
  Copy(device, old);
  // A renewal supersedes; a bootstrap with --force supersedes too.
  ASSERT_EQ(Renew(device).exit_code, 0);
  const std::string second = Serial(device);
  ProcessResult t = Token(old);
  EXPECT_EQ(t.exit_code, kExitRefused) << t.err;  // at once
  EXPECT_TRUE(absl::StrContains(t.err, "was superseded")) << t.err;
  ASSERT_EQ(broker_->Bootstrap(sim_path, device, {"--force"}).exit_code, 0);
  const std::string third = Serial(device);

  // Off the CRL during the grace, on it (reason superseded) after.
  EXPECT_FALSE(Crl().contains(absl::AsciiStrToUpper(first)));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto crl = Crl();
        return crl.contains(absl::AsciiStrToUpper(first)) &&
               crl.contains(absl::AsciiStrToUpper(second));
      },
      absl::Seconds(20)))
      << broker_->log();
  auto crl = Crl();
  EXPECT_EQ(crl[absl::AsciiStrToUpper(first)], "Superseded");
  EXPECT_EQ(crl[absl::AsciiStrToUpper(second)], "Superseded");
  EXPECT_FALSE(crl.contains(absl::AsciiStrToUpper(third)));
  EXPECT_TRUE(Has(Audit(), "broker", "revoke", "ok",
                  "reason=superseded serial=" + first));
  r = Renew(old);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "was revoked (superseded)")) << r.err;
  // The current certificate is untouched.
  EXPECT_EQ(Token(device).exit_code, 0);
  ASSERT_EQ(Renew(device).exit_code, 0);
}

TEST_F(LineageTest, DaemonRefusedAsSupersededFallsBackToItsSim) {
  broker_->Stop();
  broker_ = BrokerProcess::Start(
      dir_ + "/broker", {"--http-listen", "127.0.0.1:0", "--cert-ttl", "9s"});
  ASSERT_NE(broker_, nullptr);
  TestSim sim = RandomSim("001010000019103");
  broker_->Import({sim});
  const std::string device = dir_ + "/device";
  const std::string copy = dir_ + "/copy";
  const std::string sim_path = WriteSoftSim(dir_, sim);
  ASSERT_EQ(broker_->Bootstrap(sim_path, device).exit_code, 0);
  const std::string original = Serial(device);
  Copy(device, copy);
  ASSERT_EQ(Renew(copy).exit_code, 0);

  BackgroundProcess daemon(
      {testing::kAgentBin, "run", "--broker", broker_->address(), "--sim",
       "soft:" + sim_path, "--out", device},
      dir_ + "/daemon.log");
  ASSERT_TRUE(
      WaitFor([&] { return Serial(device) != original; }, absl::Seconds(30)))
      << ReadFileOrEmpty(dir_ + "/daemon.log");
  EXPECT_EQ(daemon.Stop(), 0);
  EXPECT_TRUE(absl::StrContains(
      ReadFileOrEmpty(dir_ + "/daemon.log"),
      "renewal refused (renew: superseded): bootstrapping with the SIM"))
      << ReadFileOrEmpty(dir_ + "/daemon.log");
  // The SIM's certificate superseded the copy's lineage.
  ProcessResult r = Renew(copy);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "superseded")) << r.err;
}

}  // namespace
}  // namespace simprov
