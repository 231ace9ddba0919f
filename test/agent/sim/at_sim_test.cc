// The agent's `--sim at:DEVICE` against a fake modem on a pty holding a
// virtual USIM: in process through OpenSim, and end to end with the real
// simprov-broker and simprov-agent binaries.
#include "agent/sim/at_sim.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/credential_dir.h"
#include "common/aka.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/exit_codes.h"
#include "test/testing/broker_fixture.h"
#include "test/testing/fake_modem.h"
#include "test/testing/virtual_usim.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::FakeModem;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::VirtualUsim;
using ::testing::HasSubstr;

AuthVector Vector(const TestSim& sim, uint64_t sqn) {
  auto m = Milenage::Create(*HexDecode(sim.k), *HexDecode(sim.opc));
  return GenerateVector(*m, Random::Real().Generate(16), sqn, {0x80, 0x00});
}

absl::StatusOr<std::unique_ptr<SimCard>> Open(const FakeModem& modem,
                                              const std::string& opts = "") {
  return OpenSim(absl::StrCat("at:", modem.device(), opts));
}

class AtSimTest : public ::testing::Test {
 protected:
  AtSimTest() : sim_(RandomSim("001010000000201")) {}

  // Opens the modem's SIM, checks what it read, authenticates once.
  void ExpectWorks(FakeModem& modem, VirtualUsim& usim,
                   const std::string& opts = "") {
    auto card = Open(modem, opts);
    ASSERT_TRUE(card.ok()) << card.status();
    auto imsi = (*card)->Imsi();
    ASSERT_TRUE(imsi.ok());
    EXPECT_EQ(*imsi, sim_.imsi);
    DeviceIdentity id = (*card)->Identity();
    EXPECT_EQ(id.imei, "356938035643809");
    EXPECT_EQ(id.iccid, "8988211000000000001");
    const AuthVector v = Vector(sim_, MakeSqn(5, 3));
    auto r = (*card)->Authenticate(v.rand, v.autn);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->kind, SimAuthResult::Kind::kSuccess);
    EXPECT_EQ(r->res, v.xres);
    EXPECT_EQ(r->ck, v.ck);
    EXPECT_EQ(r->ik, v.ik);
    EXPECT_EQ(usim.success_count(), 1);
  }

  TestSim sim_;
};

TEST_F(AtSimTest, EchoOn) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.echo = true, .ate0_works = false});
  ExpectWorks(modem, usim);
  EXPECT_EQ(modem.CountCommands("ATE0"), 1);
}

TEST_F(AtSimTest, EchoOff) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.echo = false});
  ExpectWorks(modem, usim);
}

TEST_F(AtSimTest, EchoTurnedOffByAte0) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.echo = true});
  ExpectWorks(modem, usim);
}

TEST_F(AtSimTest, UnsolicitedResultCodesBetweenLines) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.urcs = {"+CREG: 1,\"00C3\",\"0000A1B2\",7", "RING",
                                   "+CMTI: \"SM\",3", "+CEREG: 5", "^SYSSTART"},
                          .fragmented = true});
  ExpectWorks(modem, usim);
}

TEST_F(AtSimTest, GarbageLines) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.urcs = {"+QIND: \"csq\",20,99"}, .garbage = true});
  ExpectWorks(modem, usim);
}

TEST_F(AtSimTest, T0AnswersAreFetchedWithGetResponse) {
  VirtualUsim usim(sim_, {.t0 = true});
  FakeModem modem(&usim, {.fragmented = true});
  ExpectWorks(modem, usim);
  EXPECT_EQ(modem.CountCommands("AT+CSIM=78,\"00880081"), 1);
  EXPECT_EQ(modem.CountCommands("AT+CSIM=10,\"00C00000"), 1);
}

TEST_F(AtSimTest, EveryIccidCommandAndNone) {
  for (const std::string cmd : {"+CCID", "+QCCID", "+ICCID", ""}) {
    SCOPED_TRACE(cmd);
    VirtualUsim usim(sim_);
    FakeModem modem(&usim, {.iccid_command = cmd, .cgsn_works = cmd != ""});
    auto card = Open(modem);
    ASSERT_TRUE(card.ok()) << card.status();
    DeviceIdentity id = (*card)->Identity();
    EXPECT_EQ(id.iccid, cmd.empty() ? "" : "8988211000000000001");
    EXPECT_EQ(id.imei, cmd.empty() ? "" : "356938035643809");
  }
}

TEST_F(AtSimTest, SyncFailureCarriesAuts) {
  VirtualUsim usim(sim_, {.t0 = true});
  usim.SetAllSeqMs(1000);
  FakeModem modem(&usim);
  auto card = Open(modem);
  ASSERT_TRUE(card.ok()) << card.status();
  const AuthVector v = Vector(sim_, MakeSqn(1, 0));
  auto r = (*card)->Authenticate(v.rand, v.autn);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->kind, SimAuthResult::Kind::kSyncFailure);
  EXPECT_TRUE(r->res.empty());
  auto m = Milenage::Create(*HexDecode(sim_.k), *HexDecode(sim_.opc));
  auto sqn_ms = RecoverSqnMs(*m, v.rand, r->auts);
  ASSERT_TRUE(sqn_ms.ok()) << sqn_ms.status();
  EXPECT_EQ(*sqn_ms, MakeSqn(1000, 0));
  // The network resynchronises: SEQ_MS + 1 is accepted.
  const AuthVector next = Vector(sim_, MakeSqn(1001, 7));
  r = (*card)->Authenticate(next.rand, next.autn);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, SimAuthResult::Kind::kSuccess);
}

TEST_F(AtSimTest, MacFailureIs9862) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim);
  auto card = Open(modem);
  ASSERT_TRUE(card.ok()) << card.status();
  TestSim other = RandomSim(sim_.imsi);  // the network has another key
  const AuthVector v = Vector(other, MakeSqn(1, 0));
  auto r = (*card)->Authenticate(v.rand, v.autn);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, SimAuthResult::Kind::kMacFailure);
  EXPECT_TRUE(r->res.empty() && r->ck.empty() && r->ik.empty());
  EXPECT_EQ(usim.mac_failure_count(), 1);
}

TEST_F(AtSimTest, ModemThatStopsAnsweringTimesOut) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.stop_answering_at = "AT+CSIM"});
  auto card = Open(modem, ",timeout=1");
  ASSERT_TRUE(card.ok()) << card.status();
  const AuthVector v = Vector(sim_, MakeSqn(1, 0));
  absl::Time start = absl::Now();
  auto r = (*card)->Authenticate(v.rand, v.autn);
  absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(r.status().message(),
              HasSubstr(absl::StrCat("modem on ", modem.device(),
                                     " did not answer AT+CSIM within 1s")));
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(3));
  // The port is dead now: no second wait.
  start = absl::Now();
  r = (*card)->Authenticate(v.rand, v.autn);
  EXPECT_FALSE(r.ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(200));
}

TEST_F(AtSimTest, SilentPortFailsWithinTheTimeout) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.stop_answering_at = "AT"});
  const absl::Time start = absl::Now();
  auto card = Open(modem, ",baud=9600,timeout=1.5");
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(card.ok());
  EXPECT_EQ(card.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(card.status().message(),
              HasSubstr(absl::StrCat("no modem answers on ", modem.device())));
  EXPECT_GE(took, absl::Milliseconds(1400));
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_GE(modem.CountCommands("AT"), 2);  // it kept trying within the time
}

TEST_F(AtSimTest, CmeErrorIsReportedWithAHint) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.cme_error_for = "AT+CIMI", .cme_error = "11"});
  auto card = Open(modem);
  ASSERT_FALSE(card.ok());
  EXPECT_EQ(card.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(card.status().message(),
              HasSubstr("refused AT+CIMI: +CME ERROR: 11 (the SIM needs its "
                        "PIN: unlock it first)"));

  FakeModem no_csim(&usim, {.cme_error_for = "AT+CSIM", .cme_error = "4"});
  card = Open(no_csim);
  ASSERT_TRUE(card.ok()) << card.status();
  const AuthVector v = Vector(sim_, MakeSqn(1, 0));
  auto r = (*card)->Authenticate(v.rand, v.autn);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("refused AT+CSIM: +CME ERROR: 4"));
}

TEST_F(AtSimTest, SpecParsing) {
  auto o = ParseAtSimSpec("/dev/ttyUSB2");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->device, "/dev/ttyUSB2");
  EXPECT_EQ(o->baud, 115200);
  EXPECT_EQ(o->timeout, absl::Seconds(10));
  o = ParseAtSimSpec("/dev/ttyUSB2,baud=9600,timeout=2.5");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->baud, 9600);
  EXPECT_EQ(o->timeout, absl::Milliseconds(2500));
  o = ParseAtSimSpec("/dev/ttyACM0,timeout=500ms");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->timeout, absl::Milliseconds(500));
  for (const char* bad : {"", ",baud=9600", "/dev/x,baud=12345", "/dev/x,baud=",
                          "/dev/x,timeout=0", "/dev/x,timeout=abc",
                          "/dev/x,timeout=nan", "/dev/x,parity=even"}) {
    EXPECT_EQ(ParseAtSimSpec(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST_F(AtSimTest, OpenSimNamesTheAcceptedForms) {
  auto s = OpenSim("modem:/dev/ttyUSB0");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("soft:FILE"));
  EXPECT_THAT(s.status().message(), HasSubstr("at:DEVICE"));
  EXPECT_THAT(s.status().message(), HasSubstr("pcsc[:READER]"));
  s = OpenSim("at:/nonexistent/ttyUSB9");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(),
              HasSubstr("cannot open modem port /nonexistent/ttyUSB9"));
  s = OpenSim("at:/dev/null");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("not a serial port"));
}

// --- End to end: the real broker and agent binaries ----------------------

class AtSimEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    broker_ = BrokerProcess::Start(dir_ + "/broker");
    ASSERT_NE(broker_, nullptr);
    sim_ = RandomSim("001010000000211");
    broker_->Import({sim_});
  }
  void TearDown() override {
    broker_.reset();
    RemoveTree(dir_);
  }

  ProcessResult Bootstrap(const FakeModem& modem, const std::string& out,
                          const std::string& opts = ",timeout=5") {
    return RunProcess(
        {testing::kAgentBin, "bootstrap", "--broker", broker_->address(),
         "--sim", absl::StrCat("at:", modem.device(), opts), "--out", out});
  }

  void ExpectNothingWritten(const std::string& out) {
    for (const char* f : kCredentialFiles)
      EXPECT_FALSE(PathExists(out + "/" + f)) << f;
  }

  std::string dir_;
  TestSim sim_;
  std::unique_ptr<BrokerProcess> broker_;
};

TEST_F(AtSimEndToEndTest, FirstBootThroughAModem) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.urcs = {"+CREG: 1", "RING"}});
  const std::string out = dir_ + "/device";
  ProcessResult r = Bootstrap(modem, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("provisioned device 001010000000211"));
  for (const char* f : kCredentialFiles)
    EXPECT_TRUE(PathExists(out + "/" + f)) << f;
  auto j = nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"),
                                 nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.value("imsi", ""), sim_.imsi);
  EXPECT_EQ(usim.success_count(), 1);
  EXPECT_EQ(usim.sync_failure_count(), 0);
  // The device info went to the broker: its audit trail names the IMEI.
  ProcessResult audit = broker_->Cli({"audit", "--imsi", sim_.imsi});
  EXPECT_THAT(audit.out, HasSubstr("imei=356938035643809")) << audit.err;
}

TEST_F(AtSimEndToEndTest, ResynchronisesWhenTheUsimIsFarAhead) {
  VirtualUsim usim(sim_, {.t0 = true});
  usim.SetAllSeqMs(5000);
  FakeModem modem(&usim, {.echo = false});
  const std::string out = dir_ + "/device";
  ProcessResult r = Bootstrap(modem, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : kCredentialFiles)
    EXPECT_TRUE(PathExists(out + "/" + f)) << f;
  EXPECT_EQ(usim.sync_failure_count(), 1);
  EXPECT_EQ(usim.success_count(), 1);
  uint64_t highest = 0;
  for (uint64_t s : usim.seq_ms()) highest = std::max(highest, s);
  EXPECT_EQ(highest, 5001u);
}

TEST_F(AtSimEndToEndTest, SimRejectingTheNetworkWritesNothing) {
  TestSim wrong = sim_;
  wrong.k = RandomSim(sim_.imsi).k;
  VirtualUsim usim(wrong);
  FakeModem modem(&usim);
  const std::string out = dir_ + "/device";
  ProcessResult r = Bootstrap(modem, out);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_THAT(r.err, HasSubstr("does not hold this SIM's key"));
  EXPECT_EQ(usim.mac_failure_count(), 1);
  ExpectNothingWritten(out);
}

TEST_F(AtSimEndToEndTest, DeadModemFailsClearlyInBoundedTime) {
  VirtualUsim usim(sim_);
  FakeModem modem(&usim, {.stop_answering_at = "AT+CSIM"});
  const std::string out = dir_ + "/device";
  const absl::Time start = absl::Now();
  ProcessResult r = Bootstrap(modem, out, ",timeout=1");
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, -1);  // exited by itself
  EXPECT_THAT(r.err, HasSubstr("did not answer AT+CSIM within 1s")) << r.err;
  ExpectNothingWritten(out);
}

}  // namespace
}  // namespace simprov
