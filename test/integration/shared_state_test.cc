// Several brokers on one store, in-process: N Bootstrappers (each with its
// own CA object, clock and randomness, as separate processes would have)
// over one Store with shared_state on. A challenge answered by one is
// completed by an Enrol on another; a session is used once whichever
// brokers its Enrols reach; the per-IMSI rate limit and open-session cap
// hold across brokers; SQNs never repeat.
//
// SharedBrokers is the seam for running the same claims against a shared
// database server: it opens the store from a URL (only "sqlite:PATH"
// here); a backend that answers IsShared() needs no shared_state flag.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <latch>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/sim/soft_sim.h"
#include "broker/admin/admin_service.h"
#include "broker/ca/ca.h"
#include "broker/enrol/bootstrap_service.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/aka.h"
#include "common/csr.h"
#include "common/kdf.h"
#include "common/milenage.h"
#include "common/transcript.h"
#include "common/x509.h"
#include "test/testing/broker_fixture.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RandomSim;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::TestSim;

constexpr char kName[] = "broker.test";

// Opens the store a cluster shares, from a URL: "sqlite:PATH".
absl::StatusOr<std::unique_ptr<Store>> OpenSharedStore(const std::string& url,
                                                       Clock& clock) {
  if (absl::StartsWith(url, "sqlite:")) {
    auto s = SqliteStore::Open(url.substr(7), clock);
    if (!s.ok()) return s.status();
    return std::unique_ptr<Store>(std::move(*s));
  }
  return absl::UnimplementedError(absl::StrCat("no store for ", url));
}

// N brokers' device services on one store.
class SharedBrokers {
 public:
  SharedBrokers(const std::string& dir, const std::string& store_url, int n,
                BootstrapOptions options = {})
      : clock_(absl::FromUnixSeconds(1800000000)) {
    auto store = OpenSharedStore(store_url, clock_);
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    kek_ = Random::Real().Generate(32);
    options.names = {kName};
    options.shared_state = true;
    for (int i = 0; i < n; ++i) {
      auto& b = brokers_.emplace_back(std::make_unique<Broker>());
      b->random = std::make_unique<DeterministicRandom>(100 + i);
      // Separate CA objects on one CA (as brokers loading the same key).
      if (i == 0) {
        auto ca =
            CertificateAuthority::CreateDevelopment(dir, clock_, *b->random);
        EXPECT_TRUE(ca.ok()) << ca.status();
        b->ca = std::move(*ca);
      } else {
        auto ca = CertificateAuthority::Load(dir, clock_, *b->random);
        EXPECT_TRUE(ca.ok()) << ca.status();
        b->ca = std::move(*ca);
      }
      b->service = std::make_unique<Bootstrapper>(options, *store_, *b->ca,
                                                  kek_, clock_, *b->random);
    }
  }
  ~SharedBrokers() {
    brokers_.clear();
    store_.reset();
  }

  TestSim Import(const std::string& imsi) {
    TestSim t = RandomSim(imsi);
    v1::ImportRow row;
    row.set_line(2);
    row.set_imsi(t.imsi);
    row.set_ki(t.k);
    row.set_opc(t.opc);
    DeterministicRandom random(7);
    auto sub = ValidateImportRow(row, kek_, random);
    EXPECT_TRUE(sub.ok()) << sub.status();
    auto import = store_->BeginImport();
    EXPECT_TRUE((*import)->Add(*sub).ok());
    EXPECT_TRUE((*import)->Commit().ok());
    return t;
  }

  Bootstrapper& operator[](int i) { return *brokers_[i]->service; }
  Store& store() { return *store_; }
  FakeClock& clock() { return clock_; }

 private:
  struct Broker {
    std::unique_ptr<DeterministicRandom> random;
    std::unique_ptr<CertificateAuthority> ca;
    std::unique_ptr<Bootstrapper> service;
  };
  FakeClock clock_;
  Bytes kek_;
  std::unique_ptr<Store> store_;
  std::vector<std::unique_ptr<Broker>> brokers_;
};

// A device's answer to a challenge: a sealed, valid Enrol request.
// `claimed_imsi`: the IMSI the request names (default: the SIM's own).
v1::EnrolRequest Answer(SoftSim& sim, const TestSim& t,
                        const v1::ChallengeResponse& c,
                        std::string claimed_imsi = "") {
  const std::string imsi = claimed_imsi.empty() ? t.imsi : claimed_imsi;
  auto auth = sim.Authenticate(ToBytes(c.rand()), ToBytes(c.autn()));
  EXPECT_TRUE(auth.ok());
  EXPECT_EQ(auth->kind, SimAuthResult::Kind::kSuccess);
  EvpPkeyPtr key = GenerateP256Key();
  EnrolTranscript tr;
  tr.broker_identity = kName;
  tr.session_id = ToBytes(c.session_id());
  tr.imsi = imsi;
  tr.rand = ToBytes(c.rand());
  tr.autn = ToBytes(c.autn());
  tr.res = auth->res;
  tr.nonce = Random::Real().Generate(kNonceSize);
  tr.csr_der = *CreateCsr(key.get(), imsi);
  SessionKeys keys =
      DeriveSessionKeys(auth->ck, auth->ik, tr.rand, imsi, kName);
  v1::EnrolRequest req;
  req.set_version(tr.version);
  req.set_session_id(ToString(tr.session_id));
  req.set_imsi(tr.imsi);
  req.set_broker_identity(tr.broker_identity);
  req.set_res(ToString(tr.res));
  req.set_nonce(ToString(tr.nonce));
  req.set_csr(ToString(tr.csr_der));
  req.set_mac(ToString(TranscriptMac(keys, EncodeTranscript(tr))));
  return req;
}

absl::StatusOr<v1::ChallengeResponse> Challenge(Bootstrapper& b,
                                                const std::string& imsi) {
  v1::ChallengeRequest req;
  req.set_imsi(imsi);
  return b.Challenge(req);
}

class SharedStateTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override {
    brokers_.reset();
    RemoveTree(dir_);
  }
  void Start(int n, BootstrapOptions options = {}) {
    brokers_ = std::make_unique<SharedBrokers>(
        dir_, "sqlite:" + dir_ + "/simprov.db", n, options);
  }
  std::string dir_;
  std::unique_ptr<SharedBrokers> brokers_;
};

TEST_F(SharedStateTest, ChallengeOnOneBrokerEnrolsOnAnother) {
  Start(2);
  TestSim t = brokers_->Import("001010000031001");
  auto sim = *SoftSim::InMemory(t.imsi, *HexDecode(t.k), *HexDecode(t.opc));
  auto c = Challenge((*brokers_)[0], t.imsi);
  ASSERT_TRUE(c.ok()) << c.status();
  // Nothing secret at rest: no XRES, CK or IK in the session row.
  auto m = Milenage::Create(*HexDecode(t.k), *HexDecode(t.opc));
  ASSERT_TRUE(m.ok());
  Milenage::Outputs secrets = m->F2345(ToBytes(c->rand()));
  auto row = brokers_->store().TakeSession(ToBytes(c->session_id()));
  ASSERT_TRUE(row.ok()) << row.status();
  for (const Bytes& secret : {secrets.res, secrets.ck, secrets.ik}) {
    for (const Bytes* field : {&row->xres_hash, &row->sealed_keys}) {
      EXPECT_EQ(std::search(field->begin(), field->end(), secret.begin(),
                            secret.end()),
                field->end());
    }
  }
  ASSERT_TRUE(brokers_->store().PutSession(*row, {}).ok());  // put back

  v1::EnrolRequest req = Answer(*sim, t, *c);
  auto resp = (*brokers_)[1].Enrol(req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_FALSE(resp->sealed_answer().empty());
  EXPECT_EQ(brokers_->store().CertificatesOf(t.imsi)->size(), 1u);
  // Used up on every broker.
  for (int i = 0; i < 2; ++i) {
    auto again = (*brokers_)[i].Enrol(req);
    EXPECT_EQ(again.status().code(), absl::StatusCode::kUnauthenticated) << i;
    EXPECT_EQ(again.status().message(), "unknown or already used session");
  }
  EXPECT_EQ(brokers_->store().CertificatesOf(t.imsi)->size(), 1u);
  EXPECT_EQ(*brokers_->store().CountSessions(""), 0);
}

// Whoever can write the store but lacks the KEK cannot make an answered
// challenge enrol another device id or IMSI: the sealed CK || IK is bound
// to them, so the altered session does not open and counts as gone.
TEST_F(SharedStateTest, AlteredSessionRowDoesNotEnrol) {
  Start(2);
  TestSim t = brokers_->Import("001010000036001");
  TestSim victim = brokers_->Import("001010000036002");
  auto sim = *SoftSim::InMemory(t.imsi, *HexDecode(t.k), *HexDecode(t.opc));
  for (int attack = 0; attack < 3; ++attack) {
    auto c = Challenge((*brokers_)[0], t.imsi);
    ASSERT_TRUE(c.ok()) << c.status();
    auto row = brokers_->store().TakeSession(ToBytes(c->session_id()));
    ASSERT_TRUE(row.ok()) << row.status();
    // The attacker's own SIM answers (it holds CK and IK).
    v1::EnrolRequest req =
        Answer(*sim, t, *c, attack == 2 ? victim.imsi : std::string());
    if (attack == 0) row->device_id = "victim-device";
    if (attack == 1) row->group = "privileged";
    if (attack == 2) row->imsi = victim.imsi;  // the row names the victim
    ASSERT_TRUE(brokers_->store().PutSession(*row, {}).ok());
    auto r = (*brokers_)[1].Enrol(req);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << attack;
    EXPECT_EQ(r.status().message(), "unknown or already used session")
        << attack;
  }
  EXPECT_TRUE(brokers_->store().CertificatesOf(t.imsi)->empty());
  EXPECT_TRUE(brokers_->store().CertificatesOf(victim.imsi)->empty());
}

TEST_F(SharedStateTest, ConcurrentEnrolsOnTwoBrokersYieldOneCertificate) {
  Start(2);
  for (int round = 0; round < 10; ++round) {
    TestSim t = brokers_->Import(absl::StrCat("00101000003", 2000 + round));
    auto sim = *SoftSim::InMemory(t.imsi, *HexDecode(t.k), *HexDecode(t.opc));
    auto c = Challenge((*brokers_)[round % 2], t.imsi);
    ASSERT_TRUE(c.ok()) << c.status();
    v1::EnrolRequest req = Answer(*sim, t, *c);
    constexpr int kPerBroker = 3;
    std::atomic<int> ok{0};
    std::latch start(2 * kPerBroker);
    std::vector<std::thread> threads;
    for (int i = 0; i < 2 * kPerBroker; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        auto r = (*brokers_)[i % 2].Enrol(req);
        if (r.ok()) {
          ok.fetch_add(1);
        } else {
          EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(ok.load(), 1) << "round " << round;
    EXPECT_EQ(brokers_->store().CertificatesOf(t.imsi)->size(), 1u);
  }
}

TEST_F(SharedStateTest, ConcurrentChallengesOnTwoBrokersNeverRepeatASqn) {
  BootstrapOptions options;
  options.rate_burst = 1000;
  options.max_sessions_per_imsi = 1000;
  Start(2, options);
  TestSim t = brokers_->Import("001010000033001");
  auto sim = *SoftSim::InMemory(t.imsi, *HexDecode(t.k), *HexDecode(t.opc));
  constexpr int kPerBroker = 20;
  std::vector<std::vector<v1::ChallengeResponse>> got(2);
  std::latch start(2);
  std::vector<std::thread> threads;
  for (int b = 0; b < 2; ++b) {
    threads.emplace_back([&, b] {
      start.arrive_and_wait();
      for (int i = 0; i < kPerBroker; ++i) {
        auto c = Challenge((*brokers_)[b], t.imsi);
        ASSERT_TRUE(c.ok()) << c.status();
        got[b].push_back(*c);
      }
    });
  }
  for (auto& th : threads) th.join();
  // SQN xor AK is the AUTN's first 6 bytes; AK = f5(RAND) under the SIM's
  // keys. Every SQN is distinct, across both brokers.
  auto m = Milenage::Create(*HexDecode(t.k), *HexDecode(t.opc));
  ASSERT_TRUE(m.ok());
  std::set<uint64_t> sqns;
  v1::ChallengeResponse newest;
  for (const auto& list : got) {
    for (const auto& c : list) {
      Bytes ak = m->F2345(ToBytes(c.rand())).ak;
      Bytes sqn = ToBytes(c.autn().substr(0, 6));
      for (size_t i = 0; i < 6; ++i) sqn[i] ^= ak[i];
      const uint64_t v = BytesToUint48(sqn.data());
      if (sqns.empty() || v > *sqns.rbegin()) newest = c;
      sqns.insert(v);
    }
  }
  EXPECT_EQ(sqns.size(), 2u * kPerBroker);
  EXPECT_EQ(*sqns.rbegin(), brokers_->store().GetSubscriber(t.imsi)->last_sqn);
  // The newest is a valid challenge, answered on either broker.
  auto r = (*brokers_)[0].Enrol(Answer(*sim, t, newest));
  EXPECT_TRUE(r.ok()) << r.status();
}

TEST_F(SharedStateTest, RateLimitAndSessionCapHoldAcrossBrokers) {
  BootstrapOptions options;
  options.rate_burst = 4;
  options.rate_refill = absl::Seconds(10);
  options.max_sessions_per_imsi = 3;
  Start(2, options);
  TestSim t = brokers_->Import("001010000034001");
  std::vector<v1::ChallengeResponse> cs;
  for (int i = 0; i < 4; ++i) {
    auto c = Challenge((*brokers_)[i % 2], t.imsi);
    ASSERT_TRUE(c.ok()) << i << ": " << c.status();
    cs.push_back(*c);
  }
  // The burst is spent on both brokers together.
  for (int b = 0; b < 2; ++b) {
    auto refused = Challenge((*brokers_)[b], t.imsi);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  }
  // Three open sessions across both; the oldest was replaced.
  EXPECT_EQ(*brokers_->store().CountSessions(t.imsi), 3);
  auto sim = *SoftSim::InMemory(t.imsi, *HexDecode(t.k), *HexDecode(t.opc));
  auto oldest = (*brokers_)[1].Enrol(Answer(*sim, t, cs[0]));
  EXPECT_EQ(oldest.status().message(), "unknown or already used session");
  // A token back after one refill period, on either broker.
  brokers_->clock().Advance(absl::Seconds(10));
  EXPECT_TRUE(Challenge((*brokers_)[1], t.imsi).ok());
  EXPECT_EQ(Challenge((*brokers_)[0], t.imsi).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(SharedStateTest, ExpiredSessionsAreSweptFromTheStore) {
  Start(2);
  TestSim t = brokers_->Import("001010000035001");
  ASSERT_TRUE(Challenge((*brokers_)[0], t.imsi).ok());
  EXPECT_EQ(*brokers_->store().CountSessions(""), 1);
  (*brokers_)[1].Sweep();
  EXPECT_EQ(*brokers_->store().CountSessions(""), 1);
  brokers_->clock().Advance(absl::Seconds(61));
  (*brokers_)[1].Sweep();
  EXPECT_EQ(*brokers_->store().CountSessions(""), 0);
}

}  // namespace
}  // namespace simprov
