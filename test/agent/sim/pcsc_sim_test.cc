// The agent's `--sim pcsc[:READER]` through the real pcscd and vpcd, with a
// virtual USIM as the card: in process through OpenSim, and end to end
// with the real simprov-broker and simprov-agent binaries. These tests
// share pcscd's one virtual reader: ctest runs them one at a time
// (RESOURCE_LOCK pcsc).
#include "agent/sim/pcsc_sim.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "agent/credential_dir.h"
#include "common/aka.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/exit_codes.h"
#include "test/testing/broker_fixture.h"
#include "test/testing/virtual_usim.h"
#include "test/testing/vpcd_card.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::PcscDaemon;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::VirtualUsim;
using ::simprov::testing::VpcdCard;
using ::testing::HasSubstr;

AuthVector Vector(const TestSim& sim, uint64_t sqn) {
  auto m = Milenage::Create(*HexDecode(sim.k), *HexDecode(sim.opc));
  return GenerateVector(*m, Random::Real().Generate(16), sqn, {0x80, 0x00});
}

class PcscSimTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = PcscDaemon::Ensure(&daemon_error_).release();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(daemon_, nullptr) << daemon_error_;
    // A card from an earlier test must be gone before the next goes in.
    ASSERT_TRUE(daemon_->WaitForCard(false, absl::Seconds(10)));
    dir_ = MakeTempDir();
    sim_ = RandomSim("001010000000301");
  }
  void TearDown() override {
    card_.reset();
    broker_.reset();
    RemoveTree(dir_);
  }

  void Insert(VirtualUsim* usim) {
    card_ = VpcdCard::Insert(usim);
    ASSERT_NE(card_, nullptr)
        << "vpcd does not accept a card on port " << testing::kVpcdPort;
    ASSERT_TRUE(daemon_->WaitForCard(true, absl::Seconds(10)))
        << "pcscd does not see the virtual card";
  }

  void StartBroker() {
    broker_ = BrokerProcess::Start(dir_ + "/broker");
    ASSERT_NE(broker_, nullptr);
    broker_->Import({sim_});
  }

  ProcessResult Bootstrap(const std::string& sim_spec, const std::string& out,
                          const std::string& broker = "") {
    return RunProcess({testing::kAgentBin, "bootstrap", "--broker",
                       broker.empty() ? broker_->address() : broker, "--sim",
                       sim_spec, "--out", out},
                      absl::Seconds(60));
  }

  void ExpectNothingWritten(const std::string& out) {
    for (const char* f : kCredentialFiles)
      EXPECT_FALSE(PathExists(out + "/" + f)) << f;
  }

  static PcscDaemon* daemon_;
  static std::string daemon_error_;
  std::string dir_;
  TestSim sim_;
  std::unique_ptr<VpcdCard> card_;
  std::unique_ptr<BrokerProcess> broker_;
};

PcscDaemon* PcscSimTest::daemon_ = nullptr;
std::string PcscSimTest::daemon_error_;

TEST_F(PcscSimTest, FirstBoot) {
  StartBroker();
  VirtualUsim usim(sim_, {.iccid = "8988211000000000301"});
  Insert(&usim);
  const std::string out = dir_ + "/device";
  ProcessResult r = Bootstrap("pcsc", out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("provisioned device 001010000000301"));
  for (const char* f : kCredentialFiles)
    EXPECT_TRUE(PathExists(out + "/" + f)) << f;
  auto j = nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"),
                                 nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.value("imsi", ""), sim_.imsi);
  EXPECT_EQ(usim.success_count(), 1);
  EXPECT_EQ(usim.sync_failure_count(), 0);
}

TEST_F(PcscSimTest, Resynchronisation) {
  StartBroker();
  VirtualUsim usim(sim_, {.t0 = true});  // 61xx / 6Cxx on the way
  usim.SetAllSeqMs(7000);
  Insert(&usim);
  const std::string out = dir_ + "/device";
  ProcessResult r = Bootstrap(absl::StrCat("pcsc:", daemon_->reader()), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : kCredentialFiles)
    EXPECT_TRUE(PathExists(out + "/" + f)) << f;
  EXPECT_EQ(usim.sync_failure_count(), 1);
  EXPECT_EQ(usim.success_count(), 1);
  uint64_t highest = 0;
  for (uint64_t s : usim.seq_ms()) highest = std::max(highest, s);
  EXPECT_EQ(highest, 7001u);
}

TEST_F(PcscSimTest, NoCardPresent) {
  // No broker needed: the agent fails before any network contact.
  const std::string out = dir_ + "/device";
  ProcessResult r = Bootstrap("pcsc", out, "127.0.0.1:9");
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_THAT(r.err, HasSubstr("PC/SC: no card in any reader (readers: "));
  EXPECT_THAT(r.err, HasSubstr(daemon_->reader()));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  ExpectNothingWritten(out);

  auto sim = OpenSim(absl::StrCat("pcsc:", daemon_->reader()));
  ASSERT_FALSE(sim.ok());
  EXPECT_EQ(sim.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(sim.status().message(),
              HasSubstr("no card in reader '" + daemon_->reader() + "'"));
}

TEST_F(PcscSimTest, UnknownReaderIsNamed) {
  auto sim = OpenSim("pcsc:No Such Reader");
  ASSERT_FALSE(sim.ok());
  EXPECT_EQ(sim.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(sim.status().message(),
              HasSubstr("no reader named 'No Such Reader' (readers: "));
  EXPECT_THAT(sim.status().message(), HasSubstr(daemon_->reader()));
  sim = OpenSim("pcsc:Virtual PCD");
  ASSERT_FALSE(sim.ok());
  EXPECT_THAT(sim.status().message(), HasSubstr("names several readers"));
}

TEST_F(PcscSimTest, PcscdNotRunning) {
  // libpcsclite finds pcscd through this socket path.
  ASSERT_EQ(setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm", 1), 0);
  ProcessResult r = Bootstrap("pcsc", dir_ + "/device", "127.0.0.1:9");
  unsetenv("PCSCLITE_CSOCK_NAME");
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_THAT(r.err, HasSubstr("PC/SC: pcscd is not running"));
}

TEST_F(PcscSimTest, ReadsTheCardAndAuthenticatesInProcess) {
  for (bool t0 : {false, true}) {
    SCOPED_TRACE(t0 ? "T=0" : "T=1");
    VirtualUsim usim(sim_, {.iccid = "89882110000000003012", .t0 = t0});
    Insert(&usim);
    auto sim = OpenSim("pcsc:PCD 00 00");  // part of the name will do
    if (!sim.ok() && card_->dropped_by_reader()) {
      // vpcd itself closed the card's connection (seen once under
      // ASan and load: the reader answered 0 bytes): insert it again.
      std::cerr << "vpcd dropped the card (" << sim.status()
                << "); inserting it again\n";
      card_.reset();
      ASSERT_TRUE(daemon_->WaitForCard(false, absl::Seconds(10)));
      Insert(&usim);
      sim = OpenSim("pcsc:PCD 00 00");
    }
    ASSERT_TRUE(sim.ok()) << sim.status();
    EXPECT_EQ(*(*sim)->Imsi(), sim_.imsi);
    EXPECT_EQ((*sim)->Identity().iccid, "89882110000000003012");
    EXPECT_EQ((*sim)->Identity().imei, "");

    const AuthVector v = Vector(sim_, MakeSqn(3, 2));
    auto r = (*sim)->Authenticate(v.rand, v.autn);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->kind, SimAuthResult::Kind::kSuccess);
    EXPECT_EQ(r->res, v.xres);
    EXPECT_EQ(r->ck, v.ck);
    EXPECT_EQ(r->ik, v.ik);
    // Another program selecting something else meanwhile does not matter:
    // AUTHENTICATE re-selects the USIM.
    usim.Reset();
    const AuthVector wrong = Vector(RandomSim(sim_.imsi), MakeSqn(4, 2));
    r = (*sim)->Authenticate(wrong.rand, wrong.autn);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->kind, SimAuthResult::Kind::kMacFailure);
    sim->reset();
    card_.reset();
    ASSERT_TRUE(daemon_->WaitForCard(false, absl::Seconds(10)));
  }
}

}  // namespace
}  // namespace simprov
