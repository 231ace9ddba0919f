// Whether an IMSI is active must not show on the device API: a real
// simprov-broker process is asked for challenges and enrolments for an
// active, a suspended and an unknown IMSI, and its answers (AUTN layout,
// status codes and messages, latency) are compared.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "agent/bootstrap_client.h"
#include "common/aka.h"
#include "common/csr.h"
#include "common/transcript.h"
#include "common/x509.h"
#include "simprov/v1/bootstrap.grpc.pb.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RandomSim;
using ::simprov::testing::RemoveTree;

constexpr int kActive = 0, kSuspended = 1, kUnknown = 2;
const char* const kKindNames[] = {"active", "suspended", "unknown"};

class EnumerationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir());
    // Thousands of challenges per IMSI: no rate limit in the way.
    broker_ = BrokerProcess::Start(
                  *dir_ + "/broker",
                  {"--rate-burst", "1000000", "--rate-refill", "1ms"})
                  .release();
    ASSERT_NE(broker_, nullptr);
    const int pid = getpid() % 100000;
    imsis_ = new std::array<std::string, 3>{
        absl::StrCat("0010162", 100000 + pid, "1"),
        absl::StrCat("0010162", 100000 + pid, "2"),
        absl::StrCat("0010162", 100000 + pid, "3")};
    active_sim_ = new testing::TestSim(RandomSim((*imsis_)[kActive]));
    broker_->Import({*active_sim_, RandomSim((*imsis_)[kSuspended])});
    auto r = broker_->Cli({"subscribers", "suspend", (*imsis_)[kSuspended]});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    if (broker_) {
      EXPECT_EQ(broker_->Stop(), 0);
    }
    delete broker_;
    RemoveTree(*dir_);
    delete dir_;
    delete imsis_;
    delete active_sim_;
  }

  void SetUp() override {
    ASSERT_NE(broker_, nullptr);
    auto endpoint = ParseBroker(broker_->address());
    ASSERT_TRUE(endpoint.ok());
    endpoint_ = *endpoint;
    auto ca = testing::ReadFileOrEmpty(broker_->data_dir() + "/ca.pem");
    stub_ = v1::Bootstrap::NewStub(MakeBrokerChannel(endpoint_, ca));
  }

  grpc::Status Challenge(const std::string& imsi, v1::ChallengeResponse* resp) {
    grpc::ClientContext ctx;
    v1::ChallengeRequest req;
    req.set_imsi(imsi);
    return stub_->Challenge(&ctx, req, resp);
  }

  // An Enrol on a fresh session of `imsi` by someone who does not hold K.
  grpc::Status EnrolWithout(const std::string& imsi, const std::string& res,
                            const std::string& identity) {
    v1::ChallengeResponse c;
    grpc::Status s = Challenge(imsi, &c);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::EnrolRequest req;
    req.set_version(kProtocolVersion);
    req.set_session_id(c.session_id());
    req.set_imsi(imsi);
    req.set_broker_identity(identity);
    req.set_res(res);
    req.set_nonce(std::string(32, 'n'));
    EvpPkeyPtr key = GenerateP256Key();
    req.set_csr(ToString(*CreateCsr(key.get(), imsi)));
    req.set_mac(std::string(32, 'm'));
    grpc::ClientContext ctx;
    v1::EnrolResponse resp;
    return stub_->Enrol(&ctx, req, &resp);
  }

  grpc::Status Resync(const std::string& imsi, const std::string& rand,
                      const std::string& auts) {
    grpc::ClientContext ctx;
    v1::ChallengeRequest req;
    req.set_imsi(imsi);
    req.set_resync_rand(rand);
    req.set_auts(auts);
    v1::ChallengeResponse resp;
    return stub_->Challenge(&ctx, req, &resp);
  }

  // Resynchronisation with the RAND of an outstanding challenge of `imsi`
  // and an AUTS that does not verify (nobody without K can make one).
  grpc::Status BogusResync(const std::string& imsi, double* micros = nullptr,
                           std::string* rand = nullptr) {
    v1::ChallengeResponse c;
    grpc::Status s = Challenge(imsi, &c);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (rand != nullptr) *rand = c.rand();
    const auto start = std::chrono::steady_clock::now();
    s = Resync(imsi, c.rand(), std::string(14, 'a'));
    const auto end = std::chrono::steady_clock::now();
    if (micros != nullptr) {
      *micros = std::chrono::duration<double, std::micro>(end - start).count();
    }
    return s;
  }

  // Runs `timed` (which returns microseconds) once per kind per round, in a
  // shuffled order; returns the median of each kind.
  static std::array<double, 3> Medians(
      int rounds, std::mt19937& rng, const std::function<double(int)>& timed) {
    std::array<std::vector<double>, 3> micros;
    std::array<int, 3> order = {kActive, kSuspended, kUnknown};
    for (int i = 0; i < rounds; ++i) {
      std::shuffle(order.begin(), order.end(), rng);
      for (int kind : order) micros[kind].push_back(timed(kind));
    }
    std::array<double, 3> medians;
    for (int kind = 0; kind < 3; ++kind) {
      auto& v = micros[kind];
      std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
      medians[kind] = v[v.size() / 2];
    }
    return medians;
  }

  // Warms up, then measures 400 rounds; measures again once if the medians
  // are more than 15 % apart (a burst of load on a shared machine).
  static void ExpectSameMedians(const std::string& what,
                                const std::function<double(int)>& timed) {
    std::mt19937 rng(12345);
    (void)Medians(50, rng, timed);  // warm-up
    std::array<double, 3> m;
    bool close = false;
    for (int attempt = 0; attempt < 2 && !close; ++attempt) {
      m = Medians(400, rng, timed);
      const double lo = *std::min_element(m.begin(), m.end());
      const double hi = *std::max_element(m.begin(), m.end());
      close = hi <= lo * 1.15;
      std::cout << what << ", attempt " << attempt << ": median latency (us): "
                << "active " << m[kActive] << ", suspended " << m[kSuspended]
                << ", unknown " << m[kUnknown] << "\n";
    }
    EXPECT_TRUE(close) << what << ": medians (us): active " << m[kActive]
                       << ", suspended " << m[kSuspended] << ", unknown "
                       << m[kUnknown] << " differ by more than 15 %";
  }

  static std::string* dir_;
  static BrokerProcess* broker_;
  static std::array<std::string, 3>* imsis_;
  static testing::TestSim* active_sim_;
  BrokerEndpoint endpoint_;
  std::unique_ptr<v1::Bootstrap::Stub> stub_;
};

std::string* EnumerationTest::dir_ = nullptr;
BrokerProcess* EnumerationTest::broker_ = nullptr;
std::array<std::string, 3>* EnumerationTest::imsis_ = nullptr;
testing::TestSim* EnumerationTest::active_sim_ = nullptr;

// A real AUTN carries the subscriber's AMF in clear (bytes 6-7); a decoy
// carries the AMF a real one would.
TEST_F(EnumerationTest, EveryChallengeCarriesTheDefaultAmf) {
  for (int round = 0; round < 50; ++round) {
    for (int kind : {kActive, kSuspended, kUnknown}) {
      v1::ChallengeResponse c;
      grpc::Status s = Challenge((*imsis_)[kind], &c);
      ASSERT_TRUE(s.ok()) << kKindNames[kind] << ": " << s.error_message();
      ASSERT_EQ(c.session_id().size(), 16u);
      ASSERT_EQ(c.rand().size(), 16u);
      ASSERT_EQ(c.autn().size(), 16u);
      EXPECT_EQ(HexEncode(ToBytes(c.autn().substr(6, 2))), "8000")
          << kKindNames[kind] << " round " << round;
      EXPECT_EQ(c.expires_in_ms(), 60000);
    }
  }
}

// A suspended subscriber's decoy carries the subscriber's own AMF, as its
// real challenges did before it was suspended.
TEST_F(EnumerationTest, SuspendedSubscribersDecoyCarriesItsOwnAmf) {
  const std::string imsi = absl::StrCat((*imsis_)[kActive], "9").substr(1);
  const testing::TestSim sim = RandomSim(imsi);
  const std::string csv = broker_->data_dir() + ".amf.csv";
  testing::WriteFileOrDie(csv, absl::StrCat("imsi,ki,opc,amf\n", imsi, ",",
                                            sim.k, ",", sim.opc, ",9001\n"));
  auto r = broker_->Cli({"subscribers", "import", csv});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v1::ChallengeResponse c;
  ASSERT_TRUE(Challenge(imsi, &c).ok());
  EXPECT_EQ(HexEncode(ToBytes(c.autn().substr(6, 2))), "9001");
  r = broker_->Cli({"subscribers", "suspend", imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Challenge(imsi, &c).ok());
    EXPECT_EQ(HexEncode(ToBytes(c.autn().substr(6, 2))), "9001");
  }
}

// Same request, same answer, whatever the IMSI: a wrong broker identity, an
// empty RES, a wrong RES.
TEST_F(EnumerationTest, EnrolAnswersTheSameForEveryKindOfImsi) {
  struct Case {
    std::string res;
    std::string identity;
  };
  const std::vector<Case> cases = {
      {"", "not-this-broker"},
      {std::string(8, '\0'), "not-this-broker"},
      {std::string(16, '\0'), "not-this-broker"},
      {"", endpoint_.identity},
      {std::string(8, '\0'), endpoint_.identity},
      {std::string(8, 'x'), endpoint_.identity},
  };
  for (const Case& c : cases) {
    std::array<grpc::Status, 3> answers;
    for (int kind : {kActive, kSuspended, kUnknown}) {
      answers[kind] = EnrolWithout((*imsis_)[kind], c.res, c.identity);
      EXPECT_FALSE(answers[kind].ok());
    }
    for (int kind : {kSuspended, kUnknown}) {
      EXPECT_EQ(answers[kind].error_code(), answers[kActive].error_code())
          << kKindNames[kind] << " vs active, identity " << c.identity
          << ", RES of " << c.res.size() << " bytes";
      EXPECT_EQ(answers[kind].error_message(), answers[kActive].error_message())
          << kKindNames[kind] << " vs active, identity " << c.identity
          << ", RES of " << c.res.size() << " bytes";
    }
  }
}

// The timing oracle: an active IMSI's challenge advances its SQN durably;
// a suspended or unknown one must take as long. Interleaved in a shuffled
// order after a warm-up, medians compared.
TEST_F(EnumerationTest, ChallengesTakeTheSameTimeForEveryKindOfImsi) {
  ExpectSameMedians("challenge", [this](int kind) {
    v1::ChallengeResponse c;
    const auto start = std::chrono::steady_clock::now();
    grpc::Status s = Challenge((*imsis_)[kind], &c);
    const auto end = std::chrono::steady_clock::now();
    EXPECT_TRUE(s.ok()) << kKindNames[kind] << ": " << s.error_message();
    return std::chrono::duration<double, std::micro>(end - start).count();
  });
}

// A bogus resynchronisation is refused alike for every kind of IMSI, uses up
// the RAND, and takes as long.
TEST_F(EnumerationTest, ResynchronisationIsRefusedAlikeForEveryKindOfImsi) {
  std::array<grpc::Status, 3> answers;
  for (int kind : {kActive, kSuspended, kUnknown}) {
    answers[kind] = BogusResync((*imsis_)[kind]);
    EXPECT_EQ(answers[kind].error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << kKindNames[kind];
    EXPECT_EQ(answers[kind].error_message(), answers[kActive].error_message())
        << kKindNames[kind];
  }
  // The refused RAND is used up: not even a genuine AUTS is taken for it.
  std::string rand;
  ASSERT_EQ(BogusResync((*imsis_)[kActive], nullptr, &rand).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto m = Milenage::Create(*HexDecode(active_sim_->k),
                            *HexDecode(active_sim_->opc));
  ASSERT_TRUE(m.ok());
  const std::string genuine =
      ToString(BuildAuts(*m, ToBytes(rand), MakeSqn(5000, 7)));
  EXPECT_EQ(Resync((*imsis_)[kActive], rand, genuine).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // (A genuine AUTS for an outstanding RAND is taken.)
  v1::ChallengeResponse c;
  ASSERT_TRUE(Challenge((*imsis_)[kActive], &c).ok());
  EXPECT_TRUE(
      Resync((*imsis_)[kActive], c.rand(),
             ToString(BuildAuts(*m, ToBytes(c.rand()), MakeSqn(5000, 7))))
          .ok());

  ExpectSameMedians("resynchronisation", [this](int kind) {
    double micros = 0;
    grpc::Status s = BogusResync((*imsis_)[kind], &micros);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << kKindNames[kind];
    return micros;
  });
}

}  // namespace
}  // namespace simprov
