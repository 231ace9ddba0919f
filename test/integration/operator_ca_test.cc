// The operator's own CA: installed at first start, refused when its files
// are bad, staged and activated in a rollover. Real binaries on loopback.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "common/x509.h"
#include "test/integration/ops_admin_testing.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakePki;
using ::simprov::testing::OperatorPki;
using ::simprov::testing::OpsAdminTest;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

std::vector<std::string> CaFlags(const OperatorPki& p) {
  return {"--ca-cert",   p.issuing_pem, "--ca-key",
          p.issuing_key, "--ca-chain",  p.chain_pem};
}

std::string Issuer(const std::string& cert_path) {
  auto c = CertFromPem(ReadFileOrEmpty(cert_path));
  return c.ok() ? DescribeCert(c->get()).issuer : "";
}

// Verifies a device's credential dir against `root_path` alone.
absl::Status VerifiesTo(const std::string& out, const std::string& root_path) {
  auto certs = CertsFromPem(ReadFileOrEmpty(out + "/chain.pem"));
  auto root = CertFromPem(ReadFileOrEmpty(root_path));
  if (!certs.ok() || !root.ok()) return absl::InternalError("unreadable");
  std::vector<X509*> mids;
  for (size_t i = 1; i < certs->size(); ++i) mids.push_back((*certs)[i].get());
  return VerifyChain((*certs)[0].get(), mids, {root->get()}, absl::Now(),
                     "sslclient");
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (!std::filesystem::exists(dir)) return names;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    std::string line = e.path().string();
    if (e.is_regular_file()) {
      line += " " + ReadFileOrEmpty(e.path().string());
    }
    names.push_back(line);
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(OpsAdminTest, OperatorCaIssuesChainsThatVerifyToTheOperatorsRoot) {
  OperatorPki pki = MakePki(dir_ + "/pki", "Acme");
  const std::string data = dir_ + "/broker";
  auto broker = BrokerProcess::Start(data, CaFlags(pki));
  ASSERT_NE(broker, nullptr);
  struct stat st;
  ASSERT_EQ(stat((data + "/ca/issuing.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadFileOrEmpty(data + "/ca.pem"), ReadFileOrEmpty(pki.root_pem));

  TestSim sim = RandomSim("001010000007001");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  const std::string sim_path = WriteSoftSim(dir_, sim);
  ProcessResult r = broker->Bootstrap(sim_path, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Issuer(out + "/device.crt"), "CN=Acme Issuing");
  EXPECT_TRUE(VerifiesTo(out, pki.root_pem).ok())
      << VerifiesTo(out, pki.root_pem);
  // ca.pem on the device is exactly the operator's root.
  auto anchors = CertsFromPem(ReadFileOrEmpty(out + "/ca.pem"));
  ASSERT_TRUE(anchors.ok());
  ASSERT_EQ(anchors->size(), 1u);
  EXPECT_EQ(DescribeCert((*anchors)[0].get()).subject, "CN=Acme Root");
  // The broker's TLS certificate verifies to the operator's root: renew
  // runs over TLS checked against ca.pem.
  r = RunProcess({testing::kAgentBin, "renew", "--broker", broker->address(),
                  "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto tls = CertsFromPem(ReadFileOrEmpty(data + "/tls/server.pem"));
  auto root = CertFromPem(ReadFileOrEmpty(pki.root_pem));
  ASSERT_TRUE(tls.ok() && root.ok());
  std::vector<X509*> mids;
  for (size_t i = 1; i < tls->size(); ++i) mids.push_back((*tls)[i].get());
  EXPECT_TRUE(VerifyChain((*tls)[0].get(), mids, {root->get()}, absl::Now(),
                          "sslserver")
                  .ok());

  // A restart without the flags keeps the operator's CA.
  ASSERT_EQ(broker->Stop(), 0);
  broker = BrokerProcess::Start(data);
  ASSERT_NE(broker, nullptr);
  r = RunProcess({testing::kAgentBin, "renew", "--broker", broker->address(),
                  "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Issuer(out + "/device.crt"), "CN=Acme Issuing");
  EXPECT_TRUE(VerifiesTo(out, pki.root_pem).ok());
}

TEST_F(OpsAdminTest, BadOperatorCaFilesAreRefusedAndChangeNothing) {
  OperatorPki pki = MakePki(dir_ + "/pki", "Acme");
  const std::string key_0644 = dir_ + "/pki/iss-0644.key";
  WriteFileOrDie(key_0644, ReadFileOrEmpty(pki.issuing_key));
  chmod(key_0644.c_str(), 0644);
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  } cases[] = {
      {{"--ca-cert", pki.issuing_pem, "--ca-key", pki.int_key, "--ca-chain",
        pki.chain_pem},
       "does not match --ca-cert"},
      {{"--ca-cert", pki.leaf_pem, "--ca-key", pki.leaf_key, "--ca-chain",
        pki.chain_pem},
       "is not a CA certificate"},
      {{"--ca-cert", pki.issuing_pem, "--ca-key", key_0644, "--ca-chain",
        pki.chain_pem},
       "is readable by group or others (mode 0644)"},
      {{"--ca-cert", pki.issuing_pem, "--ca-key", pki.issuing_key},
       "give --ca-chain"},
  };
  // An existing data dir (development CA) and a fresh one.
  const std::string existing = dir_ + "/existing";
  {
    auto b = BrokerProcess::Start(existing);
    ASSERT_NE(b, nullptr);
    ASSERT_EQ(b->Stop(), 0);
  }
  const auto before = ListDir(existing);
  const std::string before_ca = ReadFileOrEmpty(existing + "/ca.pem");
  for (const Case& c : cases) {
    for (const std::string& data : {existing, dir_ + "/fresh"}) {
      std::vector<std::string> argv = {testing::kBrokerBin, "--data-dir", data,
                                       "--listen", "127.0.0.1:0"};
      argv.insert(argv.end(), c.flags.begin(), c.flags.end());
      ProcessResult r = RunProcess(argv);
      EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
      EXPECT_TRUE(absl::StrContains(r.err, c.error)) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    EXPECT_FALSE(PathExists(dir_ + "/fresh"));
    EXPECT_EQ(ListDir(existing), before);
    EXPECT_EQ(ReadFileOrEmpty(existing + "/ca.pem"), before_ca);
  }
}

TEST_F(OpsAdminTest, RolloverServesTheNewAnchorBeforeTheNewCaSigns) {
  const std::string data = dir_ + "/broker";
  auto broker = BrokerProcess::Start(data);  // development CA
  ASSERT_NE(broker, nullptr);
  const std::string old_root = dir_ + "/old-root.pem";
  WriteFileOrDie(old_root, ReadFileOrEmpty(data + "/ca.pem"));
  TestSim sim = RandomSim("001010000007002");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(WriteSoftSim(dir_, sim), out).exit_code, 0);
  ASSERT_EQ(broker->Stop(), 0);

  // Stage the operator's CA: served as an anchor at once, not signing.
  OperatorPki pki = MakePki(dir_ + "/pki", "NewCo");
  std::vector<std::string> flags = CaFlags(pki);
  flags.insert(flags.end(), {"--ca-activate-after", "1h"});
  broker = BrokerProcess::Start(data, flags);
  ASSERT_NE(broker, nullptr);
  ProcessResult r = broker->Cli({"ca", "status"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "staged:  CN=NewCo Issuing")) << r.out;
  r = RunProcess({testing::kAgentBin, "renew", "--broker", broker->address(),
                  "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Signed by the old CA still, but the device now trusts the new root.
  EXPECT_EQ(Issuer(out + "/device.crt"), "CN=simprov development issuing CA");
  EXPECT_TRUE(VerifiesTo(out, old_root).ok());
  auto anchors = CertsFromPem(ReadFileOrEmpty(out + "/ca.pem"));
  ASSERT_TRUE(anchors.ok());
  std::vector<std::string> subjects;
  for (auto& c : *anchors) subjects.push_back(DescribeCert(c.get()).subject);
  EXPECT_NE(std::find(subjects.begin(), subjects.end(), "CN=NewCo Root"),
            subjects.end());
  EXPECT_NE(std::find(subjects.begin(), subjects.end(),
                      "CN=simprov development root CA"),
            subjects.end());
  // Restarting with the same flags does not stage again.
  ASSERT_EQ(broker->Stop(), 0);
  broker = BrokerProcess::Start(data, flags);
  ASSERT_NE(broker, nullptr);

  // Activation: the new CA signs; the old certificate still renews.
  r = broker->Cli({"ca", "activate"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "active:  CN=NewCo Issuing")) << r.out;
  r = RunProcess({testing::kAgentBin, "renew", "--broker", broker->address(),
                  "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Issuer(out + "/device.crt"), "CN=NewCo Issuing");
  EXPECT_TRUE(VerifiesTo(out, pki.root_pem).ok());
  r = broker->Cli({"audit"});
  EXPECT_TRUE(absl::StrContains(r.out, "ca-activate")) << r.out;
  // After a restart (TLS now under the new CA) the device renews again.
  ASSERT_EQ(broker->Stop(), 0);
  broker = BrokerProcess::Start(data);
  ASSERT_NE(broker, nullptr);
  r = RunProcess({testing::kAgentBin, "renew", "--broker", broker->address(),
                  "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(data + "/ca.pem"), ReadFileOrEmpty(pki.root_pem));
  r = broker->Cli({"ca", "activate"});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
}

TEST_F(OpsAdminTest, StagedCaActivatesItselfAfterTheDelay) {
  const std::string data = dir_ + "/broker";
  auto broker = BrokerProcess::Start(data);
  ASSERT_NE(broker, nullptr);
  ASSERT_EQ(broker->Stop(), 0);
  OperatorPki pki = MakePki(dir_ + "/pki", "Later");
  std::vector<std::string> flags = CaFlags(pki);
  flags.insert(flags.end(), {"--ca-activate-after", "1s"});
  broker = BrokerProcess::Start(data, flags);
  ASSERT_NE(broker, nullptr);
  // The sweeper runs every 5 s.
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  std::string out;
  while (absl::Now() < deadline) {
    out = broker->Cli({"ca", "status"}).out;
    if (absl::StrContains(out, "active:  CN=Later Issuing")) break;
    absl::SleepFor(absl::Milliseconds(500));
  }
  EXPECT_TRUE(absl::StrContains(out, "active:  CN=Later Issuing")) << out;
  EXPECT_TRUE(absl::StrContains(out, "retired: 1")) << out;
}
}  // namespace
}  // namespace simprov
