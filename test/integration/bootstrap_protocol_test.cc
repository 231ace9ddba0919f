// The device protocol's security claims, checked on the wire against a real
// simprov-broker process (and, where time matters, against the service
// in-process with a fake clock).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/rsa.h>

#include <atomic>
#include <functional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/bootstrap_client.h"
#include "agent/sim/soft_sim.h"
#include "broker/admin/admin_service.h"
#include "broker/ca/ca.h"
#include "broker/enrol/bootstrap_service.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/aka.h"
#include "common/csr.h"
#include "common/digest.h"
#include "common/kdf.h"
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
using ::simprov::testing::TestSim;

// One AKA run, stopped just before Enrol so that tests can tamper.
struct Prepared {
  v1::ChallengeResponse challenge;
  EnrolTranscript transcript;
  std::unique_ptr<SessionKeys> keys;
  v1::EnrolRequest request;
  EvpPkeyPtr key;
};

void Seal(Prepared& p) {
  const EnrolTranscript& t = p.transcript;
  p.request.set_version(t.version);
  p.request.set_session_id(ToString(t.session_id));
  p.request.set_imsi(t.imsi);
  p.request.set_broker_identity(t.broker_identity);
  p.request.set_res(ToString(t.res));
  p.request.set_nonce(ToString(t.nonce));
  p.request.set_csr(ToString(t.csr_der));
  p.request.mutable_device_info()->set_imei(t.imei);
  p.request.mutable_device_info()->set_iccid(t.iccid);
  p.request.set_mac(ToString(TranscriptMac(*p.keys, EncodeTranscript(t))));
}

class ProtocolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { StartBroker({}); }
  static void StartBroker(std::vector<std::string> flags) {
    dir_ = new std::string(MakeTempDir());
    broker_ = BrokerProcess::Start(*dir_ + "/broker", flags).release();
    ASSERT_NE(broker_, nullptr);
  }
  static void TearDownTestSuite() {
    if (broker_) {
      EXPECT_EQ(broker_->Stop(), 0);
    }
    delete broker_;
    RemoveTree(*dir_);
    delete dir_;
  }

  void SetUp() override {
    ASSERT_NE(broker_, nullptr);
    auto endpoint = ParseBroker(broker_->address());
    ASSERT_TRUE(endpoint.ok());
    endpoint_ = *endpoint;
    auto ca = testing::ReadFileOrEmpty(broker_->data_dir() + "/ca.pem");
    stub_ = v1::Bootstrap::NewStub(MakeBrokerChannel(endpoint_, ca));
  }

  // A fresh subscriber known to the broker, and its SIM.
  std::unique_ptr<SoftSim> NewSim(TestSim* out = nullptr) {
    static std::atomic<int> counter{0};
    TestSim sim = RandomSim(absl::StrCat(
        "00101", 7000000000 + counter++ + 1000 * getpid() % 1000000));
    broker_->Import({sim});
    if (out) *out = sim;
    return *SoftSim::InMemory(sim.imsi, *HexDecode(sim.k), *HexDecode(sim.opc));
  }

  grpc::Status Challenge(const std::string& imsi, v1::ChallengeResponse* resp,
                         const std::string& rand = "",
                         const std::string& auts = "") {
    grpc::ClientContext ctx;
    v1::ChallengeRequest req;
    req.set_imsi(imsi);
    req.set_resync_rand(rand);
    req.set_auts(auts);
    return stub_->Challenge(&ctx, req, resp);
  }

  grpc::Status Enrol(const v1::EnrolRequest& req, v1::EnrolResponse* resp) {
    grpc::ClientContext ctx;
    return stub_->Enrol(&ctx, req, resp);
  }

  // Runs Challenge and the SIM, builds a valid request (after `tweak`).
  Prepared Prepare(SoftSim& sim,
                   const std::function<void(Prepared&)>& tweak = nullptr) {
    Prepared p;
    std::string imsi = *sim.Imsi();
    grpc::Status s = Challenge(imsi, &p.challenge);
    EXPECT_TRUE(s.ok()) << s.error_message();
    auto auth = sim.Authenticate(ToBytes(p.challenge.rand()),
                                 ToBytes(p.challenge.autn()));
    EXPECT_TRUE(auth.ok());
    EXPECT_EQ(auth->kind, SimAuthResult::Kind::kSuccess);
    p.key = GenerateP256Key();
    EnrolTranscript& t = p.transcript;
    t.broker_identity = endpoint_.identity;
    t.session_id = ToBytes(p.challenge.session_id());
    t.imsi = imsi;
    t.rand = ToBytes(p.challenge.rand());
    t.autn = ToBytes(p.challenge.autn());
    t.res = auth->res;
    t.nonce = Random::Real().Generate(kNonceSize);
    t.csr_der = *CreateCsr(p.key.get(), imsi);
    p.keys = std::make_unique<SessionKeys>(
        DeriveSessionKeys(auth->ck, auth->ik, t.rand, imsi, t.broker_identity));
    if (tweak) tweak(p);
    Seal(p);
    return p;
  }

  int CertificateCount(const std::string& imsi) {
    auto r = broker_->Cli({"subscribers", "show", imsi});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    size_t pos = r.out.find("certificates: ");
    if (pos == std::string::npos) return -1;
    return std::atoi(r.out.c_str() + pos + 14);
  }

  static std::string* dir_;
  static BrokerProcess* broker_;
  BrokerEndpoint endpoint_;
  std::unique_ptr<v1::Bootstrap::Stub> stub_;
};

std::string* ProtocolTest::dir_ = nullptr;
BrokerProcess* ProtocolTest::broker_ = nullptr;

TEST_F(ProtocolTest, IssuesCertificateNamedByPolicyNotByCsr) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim, [](Prepared& p) {
    p.transcript.csr_der = *CreateCsr(p.key.get(), "evil.example.com");
  });
  v1::EnrolResponse resp;
  grpc::Status s = Enrol(p.request, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  auto plain = OpenAnswer(*p.keys, Sha256(EncodeTranscript(p.transcript)),
                          ToBytes(resp.sealed_answer()));
  ASSERT_TRUE(plain.ok()) << plain.status();
  v1::Answer answer;
  ASSERT_TRUE(answer.ParseFromString(ToString(*plain)));
  auto leaf = CertFromDer(ToBytes(answer.chain(0)));
  ASSERT_TRUE(leaf.ok());
  CertInfo info = DescribeCert(leaf->get());
  EXPECT_EQ(info.subject, "CN=" + p.transcript.imsi);
  EXPECT_EQ(info.uri_sans, std::vector<std::string>{"urn:simprov:device:" +
                                                    p.transcript.imsi});
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(leaf->get()), p.key.get()));
  EXPECT_EQ(answer.device_id(), p.transcript.imsi);
  EXPECT_EQ(CertificateCount(p.transcript.imsi), 1);
}

TEST_F(ProtocolTest, RejectsReplayedRes) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim);
  v1::EnrolResponse resp;
  ASSERT_TRUE(Enrol(p.request, &resp).ok());
  grpc::Status replay = Enrol(p.request, &resp);
  EXPECT_EQ(replay.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CertificateCount(p.transcript.imsi), 1);
}

TEST_F(ProtocolTest, ConcurrentEnrolsOnOneSessionYieldOneCertificate) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim);
  std::atomic<int> ok{0}, unauthenticated{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      v1::EnrolResponse resp;
      grpc::Status s = Enrol(p.request, &resp);
      if (s.ok()) ++ok;
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        ++unauthenticated;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(unauthenticated.load(), 7);
  EXPECT_EQ(CertificateCount(p.transcript.imsi), 1);
}

TEST_F(ProtocolTest, RejectsTamperedMacAndUsesUpTheSession) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim);
  v1::EnrolRequest tampered = p.request;
  std::string mac = tampered.mac();
  mac[7] ^= 0x01;
  tampered.set_mac(mac);
  v1::EnrolResponse resp;
  EXPECT_EQ(Enrol(tampered, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The session is gone: even the genuine request fails now.
  EXPECT_EQ(Enrol(p.request, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CertificateCount(p.transcript.imsi), 0);
}

TEST_F(ProtocolTest, RejectsFieldChangedUnderTheMac) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim);
  v1::EnrolRequest tampered = p.request;
  EvpPkeyPtr other = GenerateP256Key();
  tampered.set_csr(ToString(*CreateCsr(other.get(), p.transcript.imsi)));
  v1::EnrolResponse resp;
  grpc::Status s = Enrol(tampered, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CertificateCount(p.transcript.imsi), 0);
}

TEST_F(ProtocolTest, RejectsZeroByteRes) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim, [](Prepared& p) { p.transcript.res.clear(); });
  v1::EnrolResponse resp;
  EXPECT_EQ(Enrol(p.request, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CertificateCount(p.transcript.imsi), 0);
}

TEST_F(ProtocolTest, RejectsWrongRes) {
  auto sim = NewSim();
  Prepared p =
      Prepare(*sim, [](Prepared& p) { p.transcript.res.back() ^= 0x80; });
  v1::EnrolResponse resp;
  EXPECT_EQ(Enrol(p.request, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ProtocolTest, UnknownImsiGetsADecoyThenIsRefused) {
  const std::string imsi = "001019999999999";
  v1::ChallengeResponse c;
  ASSERT_TRUE(Challenge(imsi, &c).ok());
  EXPECT_EQ(c.session_id().size(), 16u);
  EXPECT_EQ(c.rand().size(), 16u);
  EXPECT_EQ(c.autn().size(), 16u);
  EXPECT_EQ(c.expires_in_ms(), 60000);
  v1::EnrolRequest req;
  req.set_version(1);
  req.set_session_id(c.session_id());
  req.set_imsi(imsi);
  req.set_broker_identity(endpoint_.identity);
  req.set_res(std::string(8, 'x'));
  req.set_nonce(std::string(32, 'n'));
  EvpPkeyPtr key = GenerateP256Key();
  req.set_csr(ToString(*CreateCsr(key.get(), imsi)));
  req.set_mac(std::string(32, 'm'));
  v1::EnrolResponse resp;
  grpc::Status s = Enrol(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "authentication failed");
  EXPECT_TRUE(absl::StrContains(
      broker_->log(), absl::StrCat("IMSI ", imsi, " refused: unknown IMSI")));
}

TEST_F(ProtocolTest, RateLimitsChallengesPerImsi) {
  const std::string imsi = "001018888888888";
  v1::ChallengeResponse c;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Challenge(imsi, &c).ok()) << i;
  }
  EXPECT_EQ(Challenge(imsi, &c).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Another IMSI is not affected.
  EXPECT_TRUE(Challenge("001018888888887", &c).ok());
}

TEST_F(ProtocolTest, NewChallengeBeyondTheCapReplacesTheOldestSession) {
  auto sim = NewSim();
  std::string imsi = *sim->Imsi();
  std::vector<v1::ChallengeResponse> challenges(5);
  for (auto& c : challenges) ASSERT_TRUE(Challenge(imsi, &c).ok());
  v1::EnrolRequest req;
  req.set_version(1);
  req.set_session_id(challenges[0].session_id());
  req.set_imsi(imsi);
  req.set_broker_identity(endpoint_.identity);
  req.set_res(std::string(8, 'x'));
  req.set_nonce(std::string(32, 'n'));
  req.set_csr("x");
  req.set_mac(std::string(32, 'm'));
  v1::EnrolResponse resp;
  grpc::Status s = Enrol(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "unknown or already used session");
}

TEST_F(ProtocolTest, RejectsBadCsrWithInvalidArgument) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim, [](Prepared& p) {
    p.transcript.csr_der = ToBytes("this is not a CSR");
  });
  v1::EnrolResponse resp;
  grpc::Status s = Enrol(p.request, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  auto sim2 = NewSim();
  Prepared weak = Prepare(*sim2, [](Prepared& p) {
    EvpPkeyPtr rsa(EVP_RSA_gen(1024));
    p.transcript.csr_der = *CreateCsr(rsa.get(), p.transcript.imsi);
  });
  s = Enrol(weak.request, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "RSA-1024"))
      << s.error_message();
}

TEST_F(ProtocolTest, RejectsABrokerIdentityThatIsNotOneOfItsNames) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim, [](Prepared& p) {
    p.transcript.broker_identity = "evil.example.com";
  });
  v1::EnrolResponse resp;
  grpc::Status s = Enrol(p.request, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "evil.example.com"));
}

TEST_F(ProtocolTest, RejectsMalformedRequests) {
  v1::ChallengeResponse c;
  EXPECT_EQ(Challenge("12345", &c).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Challenge("00101abc", &c).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  auto sim = NewSim();
  Prepared p = Prepare(*sim);
  v1::EnrolResponse resp;
  v1::EnrolRequest bad = p.request;
  bad.set_version(2);
  EXPECT_EQ(Enrol(bad, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad = p.request;
  bad.set_nonce(std::string(31, 'n'));
  EXPECT_EQ(Enrol(bad, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // None of those used up the session: the genuine request still works.
  EXPECT_TRUE(Enrol(p.request, &resp).ok());
}

TEST_F(ProtocolTest, ResynchronisationNeedsAnOutstandingRandAndAValidAuts) {
  TestSim t;
  auto sim = NewSim(&t);
  v1::ChallengeResponse c;
  // A RAND the broker never issued.
  EXPECT_EQ(Challenge(t.imsi, &c, std::string(16, 'r'), std::string(14, 'a'))
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // An outstanding RAND, but AUTS made with the wrong key.
  ASSERT_TRUE(Challenge(t.imsi, &c).ok());
  auto wrong = Milenage::Create(Random::Real().Generate(16),
                                Random::Real().Generate(16));
  Bytes auts = BuildAuts(*wrong, ToBytes(c.rand()), MakeSqn(1000, 3));
  EXPECT_EQ(Challenge(t.imsi, &c, c.rand(), ToString(auts)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A genuine AUTS is accepted once for an outstanding RAND.
  auto m = Milenage::Create(*HexDecode(t.k), *HexDecode(t.opc));
  v1::ChallengeResponse c2, c3;
  ASSERT_TRUE(Challenge(t.imsi, &c2).ok());
  auts = BuildAuts(*m, ToBytes(c2.rand()), MakeSqn(5000, 7));
  ASSERT_TRUE(Challenge(t.imsi, &c3, c2.rand(), ToString(auts)).ok());
  // Replaying that AUTS fails: its RAND is no longer outstanding.
  EXPECT_EQ(Challenge(t.imsi, &c, c2.rand(), ToString(auts)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The fresh challenge carries SEQ 5001.
  auto out = m->F2345(ToBytes(c3.rand()));
  Bytes autn = ToBytes(c3.autn());
  uint64_t sqn = BytesToUint48(autn.data()) ^ BytesToUint48(out.ak.data());
  EXPECT_EQ(SeqOf(sqn), 5001u);
}

TEST_F(ProtocolTest, ServesTheGrpcHealthService) {
  auto channel = MakeBrokerChannel(
      endpoint_, testing::ReadFileOrEmpty(broker_->data_dir() + "/ca.pem"));
  grpc::GenericStub generic(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer request, response;  // HealthCheckRequest{} is empty
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                    &request, &response, [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mu);
                      status = s;
                      done = true;
                      cv.notify_one();
                    });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes += std::string(s.begin(), s.end());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

// A device certificate from the same CA must never pass as the broker, even
// when its CN names the broker's host: it lacks serverAuth.
TEST_F(ProtocolTest, PinnedAgentRefusesADeviceCertificateAsTheBroker) {
  auto ca = CertificateAuthority::Load(broker_->data_dir(), Clock::Real(),
                                       Random::Real());
  ASSERT_TRUE(ca.ok()) << ca.status();
  EvpPkeyPtr key = GenerateP256Key();
  DeviceCertRequest req;
  req.public_key = key.get();
  req.common_name = "127.0.0.1";
  req.ttl = absl::Hours(1);
  auto cert = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(cert.ok()) << cert.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back(
      {*PrivateKeyToPkcs8Pem(key.get()),
       CertToPem(cert->get()) + (*ca)->ChainPem()});
  class Impostor final : public v1::Bootstrap::Service {
    grpc::Status Challenge(grpc::ServerContext*, const v1::ChallengeRequest*,
                           v1::ChallengeResponse* r) override {
      r->set_rand(std::string(16, 'r'));
      r->set_autn(std::string(16, 'a'));
      return grpc::Status::OK;
    }
  } impostor;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl),
                           &port);
  builder.RegisterService(&impostor);
  auto server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  BrokerEndpoint fake{absl::StrCat("127.0.0.1:", port), "127.0.0.1"};
  auto stub = v1::Bootstrap::NewStub(MakeBrokerChannel(
      fake, testing::ReadFileOrEmpty(broker_->data_dir() + "/ca.pem")));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ChallengeRequest creq;
  creq.set_imsi("001010000000001");
  v1::ChallengeResponse cresp;
  grpc::Status s = stub->Challenge(&ctx, creq, &cresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  server->Shutdown();
}

TEST_F(ProtocolTest, RenewNeedsACertificateThisBrokerIssued) {
  v1::RenewRequest req;
  EvpPkeyPtr key = GenerateP256Key();
  req.set_csr(ToString(*CreateCsr(key.get(), "001010000000001")));
  // No client certificate at all: a status, not a failed handshake.
  {
    grpc::ClientContext ctx;
    v1::RenewResponse resp;
    grpc::Status s = stub_->Renew(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "no client certificate"));
  }
  // A certificate from another CA with the same names.
  const std::string other_dir = MakeTempDir();
  auto other = CertificateAuthority::CreateDevelopment(other_dir, Clock::Real(),
                                                       Random::Real());
  ASSERT_TRUE(other.ok());
  DeviceCertRequest dreq;
  dreq.public_key = key.get();
  dreq.common_name = "001010000000001";
  dreq.device_id_uri = "urn:simprov:device:001010000000001";
  dreq.ttl = absl::Hours(1);
  auto forged = (*other)->IssueDeviceCertificate(dreq);
  ASSERT_TRUE(forged.ok());
  auto channel = MakeMutualTlsChannel(
      endpoint_, testing::ReadFileOrEmpty(broker_->data_dir() + "/ca.pem"),
      *PrivateKeyToPkcs8Pem(key.get()),
      CertToPem(forged->get()) + (*other)->ChainPem());
  grpc::ClientContext ctx;
  v1::RenewResponse resp;
  grpc::Status s = v1::Bootstrap::NewStub(channel)->Renew(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "not issued by this broker"))
      << s.error_message();
  RemoveTree(other_dir);
}

// The same fixture against a broker whose sessions live 300 ms.
class ShortSessionTest : public ProtocolTest {
 protected:
  static void SetUpTestSuite() { StartBroker({"--session-ttl", "300ms"}); }
};

TEST_F(ShortSessionTest, RealBrokerRefusesAnExpiredSession) {
  auto sim = NewSim();
  Prepared p = Prepare(*sim);
  EXPECT_EQ(p.challenge.expires_in_ms(), 300);
  absl::SleepFor(absl::Milliseconds(400));
  v1::EnrolResponse resp;
  grpc::Status s = Enrol(p.request, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "session expired");
  EXPECT_EQ(CertificateCount(p.transcript.imsi), 0);
  // A prompt second attempt succeeds.
  Prepared q = Prepare(*sim);
  EXPECT_TRUE(Enrol(q.request, &resp).ok());
}

// In-process, with a fake clock: an expired session is refused and the
// refusal leaves no certificate and no device binding behind.
TEST(BootstrapperTest, RefusesAnExpiredSessionAndChangesNothing) {
  const std::string dir = MakeTempDir();
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(42);
  auto store = SqliteStore::Open(dir + "/simprov.db", clock);
  ASSERT_TRUE(store.ok()) << store.status();
  auto ca = CertificateAuthority::CreateDevelopment(dir, clock, random);
  ASSERT_TRUE(ca.ok()) << ca.status();
  Bytes kek = random.Generate(32);
  TestSim t = RandomSim("001010123456789");
  v1::ImportRow row;
  row.set_line(2);
  row.set_imsi(t.imsi);
  row.set_ki(t.k);
  row.set_opc(t.opc);
  auto sub = ValidateImportRow(row, kek, random);
  ASSERT_TRUE(sub.ok());
  auto import = (*store)->BeginImport();
  ASSERT_TRUE((*import)->Add(*sub).ok());
  ASSERT_TRUE((*import)->Commit().ok());

  BootstrapOptions options;
  options.names = {"broker.test"};
  Bootstrapper b(options, **store, **ca, kek, clock, random);
  auto sim = *SoftSim::InMemory(t.imsi, *HexDecode(t.k), *HexDecode(t.opc));

  auto run = [&](absl::Duration wait) -> absl::Status {
    v1::ChallengeRequest creq;
    creq.set_imsi(t.imsi);
    auto c = b.Challenge(creq);
    if (!c.ok()) return c.status();
    auto auth = sim->Authenticate(ToBytes(c->rand()), ToBytes(c->autn()));
    EXPECT_EQ(auth->kind, SimAuthResult::Kind::kSuccess);
    clock.Advance(wait);
    Prepared p;
    p.key = GenerateP256Key();
    EnrolTranscript& tr = p.transcript;
    tr.broker_identity = "broker.test";
    tr.session_id = ToBytes(c->session_id());
    tr.imsi = t.imsi;
    tr.rand = ToBytes(c->rand());
    tr.autn = ToBytes(c->autn());
    tr.res = auth->res;
    tr.nonce = random.Generate(32);
    tr.csr_der = *CreateCsr(p.key.get(), t.imsi);
    p.keys = std::make_unique<SessionKeys>(DeriveSessionKeys(
        auth->ck, auth->ik, tr.rand, t.imsi, tr.broker_identity));
    Seal(p);
    return b.Enrol(p.request).status();
  };
  absl::Status expired = run(absl::Seconds(61));
  EXPECT_EQ(expired.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(expired.message(), "session expired");
  EXPECT_TRUE((*store)->CertificatesOf(t.imsi)->empty());
  EXPECT_EQ((*store)->GetSubscriber(t.imsi)->device_id, "");
  auto audit = (*store)->AuditOf(t.imsi);
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().action, "bootstrap");
  EXPECT_EQ(audit->back().result, "refused");
  EXPECT_EQ(audit->back().reason, "session expired");

  // Just inside the limit it works, and binds the device id.
  EXPECT_TRUE(run(absl::Seconds(59)).ok());
  EXPECT_EQ((*store)->CertificatesOf(t.imsi)->size(), 1u);
  EXPECT_EQ((*store)->GetSubscriber(t.imsi)->device_id, t.imsi);
  RemoveTree(dir);
}

}  // namespace
}  // namespace simprov
