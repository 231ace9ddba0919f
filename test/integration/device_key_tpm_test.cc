// The device key in a TPM 2.0 (--key tpm2:TCTI), end to end with the real
// binaries and a real software TPM (swtpm): bootstrap, renewal with the
// in-band proof of possession (the key changes inside the TPM), the
// daemon's renewal, a copied data directory on another TPM, bad input, and
// the broker refusing proofs an attacker can make.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <stdlib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/exit_codes.h"
#include "common/x509.h"
#include "test/testing/broker_fixture.h"
#include "test/testing/swtpm.h"

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
using ::simprov::testing::Swtpm;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteSoftSim;

const std::string kOpenssl = "/usr/bin/openssl";

bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return pred();
}

int Lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

class DeviceKeyTpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    tpm_ = Swtpm::Start();
    ASSERT_NE(tpm_, nullptr);
    key_ = "tpm2:" + tpm_->tcti();
  }
  void TearDown() override {
    tpm_.reset();
    RemoveTree(dir_);
  }

  std::unique_ptr<BrokerProcess> StartBroker(
      std::vector<std::string> extra = {}) {
    auto b = BrokerProcess::Start(dir_ + "/broker", std::move(extra));
    EXPECT_NE(b, nullptr);
    return b;
  }

  ProcessResult Bootstrap(const BrokerProcess& b, const TestSim& sim,
                          const std::string& out, const std::string& key,
                          std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {testing::kAgentBin,
                                     "bootstrap",
                                     "--broker",
                                     b.address(),
                                     "--sim",
                                     "soft:" + WriteSoftSim(dir_, sim),
                                     "--out",
                                     out,
                                     "--key",
                                     key};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv);
  }

  ProcessResult Renew(const BrokerProcess& b, const std::string& out,
                      const std::string& key) {
    return RunProcess({testing::kAgentBin, "renew", "--broker", b.address(),
                       "--out", out, "--key", key});
  }

  // The public key `openssl pkey -provider tpm2` reads from the blob.
  std::string OpensslPublicKey(const std::string& key_path, const Swtpm& tpm) {
    setenv("TPM2OPENSSL_TCTI", tpm.tcti().c_str(), 1);
    ProcessResult r =
        RunProcess({kOpenssl, "pkey", "-provider", "tpm2", "-provider",
                    "default", "-in", key_path, "-pubout"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  std::string LeafPublicKey(const std::string& out) {
    auto leaf = CertFromPem(ReadFileOrEmpty(out + "/device.crt"));
    EXPECT_TRUE(leaf.ok());
    if (!leaf.ok()) return "";
    BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PUBKEY(bio.get(), X509_get0_pubkey(leaf->get()));
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, n);
  }

  std::string Serial(const std::string& out) {
    auto leaf = CertFromPem(ReadFileOrEmpty(out + "/device.crt"));
    return leaf.ok() ? DescribeCert(leaf->get()).serial_hex : "";
  }

  std::string dir_;
  std::unique_ptr<Swtpm> tpm_;
  std::string key_;
};

TEST_F(DeviceKeyTpmTest, BootstrapAndRenewKeepTheKeyInTheTpm) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000002301");
  broker->Import({sim});
  const std::string out = dir_ + "/device";

  ProcessResult r = Bootstrap(*broker, sim, out, key_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string blob = ReadFileOrEmpty(out + "/device.key");
  EXPECT_TRUE(absl::StartsWith(blob, "-----BEGIN TSS2 PRIVATE KEY-----"));
  EXPECT_FALSE(absl::StrContains(blob, "BEGIN PRIVATE KEY"));
  const std::string pub = OpensslPublicKey(out + "/device.key", *tpm_);
  ASSERT_FALSE(pub.empty());
  EXPECT_EQ(LeafPublicKey(out), pub);
  nlohmann::json j = nlohmann::json::parse(
      ReadFileOrEmpty(out + "/bootstrap.json"), nullptr, false);
  EXPECT_EQ(j["key"]["store"], "tpm2");
  EXPECT_EQ(j["key"]["tcti"], tpm_->tcti());

  // The set is recognised as valid through the TPM.
  r = Bootstrap(*broker, sim, out, key_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "nothing to do")) << r.out;

  // Renewal: a new key inside the same TPM, proven in band.
  const std::string serial = Serial(out);
  r = Renew(*broker, out, key_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(Serial(out), serial);
  const std::string blob2 = ReadFileOrEmpty(out + "/device.key");
  EXPECT_TRUE(absl::StartsWith(blob2, "-----BEGIN TSS2 PRIVATE KEY-----"));
  EXPECT_NE(blob2, blob);
  const std::string pub2 = OpensslPublicKey(out + "/device.key", *tpm_);
  EXPECT_NE(pub2, pub);
  EXPECT_EQ(LeafPublicKey(out), pub2);
  EXPECT_TRUE(absl::StrContains(broker->log(), "renewed as"));
  // Every key the agent loaded was flushed again.
  EXPECT_EQ(tpm_->TransientObjects(), 0);
}

TEST_F(DeviceKeyTpmTest, ACopyOnAnotherTpmCannotRenew) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000002302");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ProcessResult r = Bootstrap(*broker, sim, out, key_);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const std::string copy = dir_ + "/copy";
  std::filesystem::copy(out, copy,
                        std::filesystem::copy_options::recursive |
                            std::filesystem::copy_options::copy_symlinks);
  auto other = Swtpm::Start();
  ASSERT_NE(other, nullptr);
  const std::string before = ReadFileOrEmpty(copy + "/device.crt");
  r = Renew(*broker, copy, "tpm2:" + other->tcti());
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "cannot load device.key")) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(copy + "/device.crt"), before);
  // The device itself still renews.
  r = Renew(*broker, out, key_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(DeviceKeyTpmTest, TheDaemonRenewsInTheTpm) {
  auto broker = StartBroker({"--cert-ttl", "6s"});
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000002303");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  BackgroundProcess daemon(
      {testing::kAgentBin, "run", "--broker", broker->address(), "--sim",
       "soft:" + WriteSoftSim(dir_, sim), "--out", out, "--key", key_},
      dir_ + "/daemon.log");
  ASSERT_TRUE(WaitFor([&] { return !Serial(out).empty(); }, absl::Seconds(20)))
      << ReadFileOrEmpty(dir_ + "/daemon.log");
  const std::string first = Serial(out);
  ASSERT_TRUE(WaitFor([&] { return Serial(out) != first; }, absl::Seconds(20)))
      << ReadFileOrEmpty(dir_ + "/daemon.log");
  EXPECT_EQ(daemon.Stop(), 0);
  // Renewed, not bootstrapped again with the SIM.
  EXPECT_TRUE(absl::StrContains(broker->log(), "renewed as"));
  EXPECT_TRUE(absl::StartsWith(ReadFileOrEmpty(out + "/device.key"),
                               "-----BEGIN TSS2 PRIVATE KEY-----"));
  EXPECT_EQ(LeafPublicKey(out), OpensslPublicKey(out + "/device.key", *tpm_));
}

TEST_F(DeviceKeyTpmTest, BadKeySpecsAndAMissingTpmWriteNothing) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000002304");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  struct Case {
    std::string key;
    std::string says;
  };
  const Case cases[] = {
      {"vault", "unknown key store 'vault'"},
      {"pkcs11:token=dev", "pkcs11: not supported yet"},
      {"iotsafe:container=0", "container=N"},
      {"iotsafe:container=2", "iotsafe: not supported yet"},
      {"file:/etc/key", "takes no argument"},
      {"tpm2:swtpm:host=127.0.0.1,port=1", "TPM not reachable"},
  };
  for (const Case& c : cases) {
    ProcessResult r = Bootstrap(*broker, sim, out, c.key);
    EXPECT_EQ(r.exit_code, kExitUsage) << c.key << ": " << r.err;
    EXPECT_EQ(Lines(r.err), 1) << c.key << ": " << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, c.says)) << c.key << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.key;
  }
  // Tokens are bound to a TLS client certificate: refused with a reason.
  ProcessResult ok = Bootstrap(*broker, sim, out, key_);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  ProcessResult r =
      RunProcess({testing::kAgentBin, "token", "--broker", broker->address(),
                  "--out", out, "--key", key_, "--audience", "app"});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "mutual-TLS")) << r.err;
  // A set made in the TPM is not renewed as a file key.
  const std::string before = ReadFileOrEmpty(out + "/device.crt");
  r = Renew(*broker, out, "file");
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "tpm2 store")) << r.err;
  EXPECT_EQ(ReadFileOrEmpty(out + "/device.crt"), before);
}

}  // namespace
}  // namespace simprov
