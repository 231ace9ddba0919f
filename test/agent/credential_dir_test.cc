// The credential set switches atomically: a crash at any step of writing a
// new set leaves the old complete set or the new complete set, and the key
// always matches the certificate.
#include "agent/credential_dir.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "agent/daemon.h"
#include "broker/ca/ca.h"
#include "common/atomic_file.h"
#include "common/x509.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;

int g_crash_at = -1;
int g_steps = 0;
void CrashAtStep(const char*) {
  if (g_steps++ == g_crash_at) _exit(42);  // no cleanup, like power loss
}

class CredentialDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    auto ca = CertificateAuthority::CreateDevelopment(dir_ + "/ca", clock_,
                                                      Random::Real());
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
  }
  void TearDown() override { RemoveTree(dir_); }

  Credentials NewSet() {
    EvpPkeyPtr key = GenerateP256Key();
    DeviceCertRequest req;
    req.public_key = key.get();
    req.common_name = "001010000000001";
    req.device_id_uri = "urn:simprov:device:001010000000001";
    req.ttl = absl::Hours(1);
    auto cert = ca_->IssueDeviceCertificate(req);
    EXPECT_TRUE(cert.ok());
    Credentials c;
    c.key_pem = *PrivateKeyToPkcs8Pem(key.get());
    c.cert_pem = CertToPem(cert->get());
    c.chain_pem = c.cert_pem + ca_->ChainPem();
    c.ca_pem = ca_->TrustAnchorsPem();
    c.imsi = "001010000000001";
    c.device_id = c.imsi;
    c.leaf = DescribeCert(cert->get());
    c.server_time = clock_.Now();
    return c;
  }

  // Writes `c` in a child that dies at step `crash_at`; true if it died.
  bool WriteAndCrash(const std::string& out, const Credentials& c,
                     int crash_at) {
    pid_t pid = fork();
    if (pid == 0) {
      g_crash_at = crash_at;
      g_steps = 0;
      SetCredentialWriteStepHookForTesting(CrashAtStep);
      absl::Status s = WriteCredentialSet(out, c, "b:1", Random::Real());
      _exit(s.ok() ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_NE(WEXITSTATUS(status), 1) << "write failed at step " << crash_at;
    return WEXITSTATUS(status) == 42;
  }

  // The serial of the complete, consistent set in `out`.
  std::string ConsistentSerial(const std::string& out) {
    EXPECT_TRUE(CheckExistingCredentials(out, clock_.Now()).ok());
    auto cert = CertFromPem(ReadFileOrEmpty(out + "/device.crt"));
    auto chain = CertsFromPem(ReadFileOrEmpty(out + "/chain.pem"));
    if (!cert.ok() || !chain.ok()) return "";
    EXPECT_EQ(CertToDer((*chain)[0].get()), CertToDer(cert->get()));
    auto j = nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"));
    const std::string serial = DescribeCert(cert->get()).serial_hex;
    EXPECT_EQ(j["serial"], serial);
    return serial;
  }

  FakeClock clock_{absl::Now()};
  std::string dir_;
  std::unique_ptr<CertificateAuthority> ca_;
};

TEST_F(CredentialDirTest, CrashAtAnyStepKeepsTheOldOrTheNewCompleteSet) {
  const std::string out = dir_ + "/creds";
  const Credentials old_set = NewSet();
  ASSERT_TRUE(WriteCredentialSet(out, old_set, "b:1", Random::Real()).ok());
  int steps = 0;
  int saw_old = 0, saw_new = 0;
  for (int crash_at = 0;; ++crash_at) {
    const Credentials new_set = NewSet();
    bool crashed = WriteAndCrash(out, new_set, crash_at);
    const std::string serial = ConsistentSerial(out);
    EXPECT_TRUE(serial == old_set.leaf.serial_hex ||
                serial == new_set.leaf.serial_hex)
        << "step " << crash_at;
    if (serial == new_set.leaf.serial_hex) {
      ++saw_new;
    } else {
      ++saw_old;
    }
    // Restore the old set for the next round.
    ASSERT_TRUE(WriteCredentialSet(out, old_set, "b:1", Random::Real()).ok());
    if (!crashed) {
      steps = crash_at;
      break;
    }
    ASSERT_LT(crash_at, 100);
  }
  EXPECT_EQ(steps, 9);    // directory, 5 files, switch, sync, old removed
  EXPECT_GE(saw_old, 6);  // crashes before the switch
  EXPECT_GE(saw_new, 2);  // crashes after it
}

TEST_F(CredentialDirTest, CrashDuringTheFirstWriteLeavesNoSetOrAComplete) {
  for (int crash_at = 0; crash_at < 20; ++crash_at) {
    const std::string out = dir_ + "/first-" + std::to_string(crash_at);
    const Credentials set = NewSet();
    WriteAndCrash(out, set, crash_at);
    absl::Status s = CheckExistingCredentials(out, clock_.Now());
    if (s.ok()) {
      EXPECT_EQ(ConsistentSerial(out), set.leaf.serial_hex);
    } else {
      EXPECT_TRUE(absl::StrContains(s.message(), "missing")) << s;
    }
  }
}

TEST(TimeFloorTest, AuthenticatedTimeNeverGoesBackwardsWithinABoot) {
  const std::string dir = MakeTempDir();
  const std::string state = dir + "/time.json";
  FakeClock elapsed(absl::FromUnixSeconds(1000));  // time since boot
  const absl::Time t0 = absl::FromUnixSeconds(1800000000);
  EXPECT_EQ(ApplyTimeFloor(state, t0, elapsed.Now(), "boot-a"), t0);
  elapsed.Advance(absl::Seconds(60));
  // A later answer that claims an earlier time (a replayed or skewed
  // server): the floor is t0 + 60 s.
  EXPECT_EQ(
      ApplyTimeFloor(state, t0 + absl::Seconds(10), elapsed.Now(), "boot-a"),
      t0 + absl::Seconds(60));
  // A time after the floor is taken as it is.
  elapsed.Advance(absl::Seconds(5));
  EXPECT_EQ(
      ApplyTimeFloor(state, t0 + absl::Seconds(70), elapsed.Now(), "boot-a"),
      t0 + absl::Seconds(70));
  // After a reboot the elapsed clock restarted: no floor applies.
  FakeClock rebooted(absl::FromUnixSeconds(3));
  EXPECT_EQ(ApplyTimeFloor(state, t0, rebooted.Now(), "boot-b"), t0);
  // Without a state file nothing is kept.
  EXPECT_EQ(ApplyTimeFloor("", t0, elapsed.Now(), "boot-a"), t0);
  RemoveTree(dir);
}

}  // namespace
}  // namespace simprov
