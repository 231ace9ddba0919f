// End-to-end: the real simprov-broker, simprov and simprov-agent binaries on
// loopback, used as an operator and a device would use them.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/bootstrap_client.h"
#include "agent/credential_dir.h"
#include "agent/daemon.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/x509.h"
#include "simprov/v1/bootstrap.grpc.pb.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

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

class IntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }

  std::unique_ptr<BrokerProcess> StartBroker(
      std::vector<std::string> extra = {}) {
    auto b = BrokerProcess::Start(dir_ + "/broker", std::move(extra));
    EXPECT_NE(b, nullptr);
    return b;
  }

  // Nothing at all was written into `out`.
  void ExpectNothingWritten(const std::string& out) {
    for (const char* f : kCredentialFiles) {
      EXPECT_FALSE(PathExists(out + "/" + f)) << f;
    }
  }

  std::string Serial(const std::string& out) {
    auto j = nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"),
                                   nullptr, false);
    return j.is_object() ? j.value("serial", "") : "";
  }

  std::string dir_;
};

TEST_F(IntegrationTest, FirstBootWithoutPinnedCaWritesACompleteVerifiedSet) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000101");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "provisioned device 001010000000101"));

  struct stat st;
  ASSERT_EQ(stat((out + "/device.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto key = PrivateKeyFromPem(ReadFileOrEmpty(out + "/device.key"));
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(absl::StrContains(ReadFileOrEmpty(out + "/device.key"),
                                "-----BEGIN PRIVATE KEY-----"));  // PKCS#8
  auto leaf = CertFromPem(ReadFileOrEmpty(out + "/device.crt"));
  ASSERT_TRUE(leaf.ok());
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(leaf->get()), key->get()));
  auto chain = CertsFromPem(ReadFileOrEmpty(out + "/chain.pem"));
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->size(), 2u);  // leaf + issuing CA
  EXPECT_EQ(CertToDer((*chain)[0].get()), CertToDer(leaf->get()));
  // ca.pem is the broker's root, and the chain verifies to it.
  EXPECT_EQ(ReadFileOrEmpty(out + "/ca.pem"),
            ReadFileOrEmpty(broker->data_dir() + "/ca.pem"));
  auto anchor = CertFromPem(ReadFileOrEmpty(out + "/ca.pem"));
  ASSERT_TRUE(anchor.ok());
  EXPECT_TRUE(VerifyChain(leaf->get(), {(*chain)[1].get()}, {anchor->get()},
                          absl::Now(), "sslclient")
                  .ok());
  CertInfo info = DescribeCert(leaf->get());
  EXPECT_EQ(info.subject, "CN=001010000000101");
  EXPECT_EQ(info.uri_sans,
            std::vector<std::string>{"urn:simprov:device:001010000000101"});
  EXPECT_NEAR(absl::ToDoubleHours(info.not_after - absl::Now()), 24 * 30, 0.1);

  auto j = nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"));
  EXPECT_EQ(j["device_id"], "001010000000101");
  EXPECT_EQ(j["imsi"], "001010000000101");
  EXPECT_EQ(j["broker"], broker->address());
  EXPECT_EQ(j["serial"], info.serial_hex);
  EXPECT_TRUE(j.contains("not_after"));
  EXPECT_TRUE(j.contains("server_time"));
  // The broker recorded it.
  ProcessResult show = broker->Cli({"subscribers", "show", sim.imsi});
  EXPECT_TRUE(absl::StrContains(show.out, "serial " + info.serial_hex))
      << show.out;
  EXPECT_TRUE(absl::StrContains(show.out, "device_id:  001010000000101"));
}

TEST_F(IntegrationTest, FirstBootWithPinnedCaAndIdempotentRerunAndForce) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000102");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  const std::string sim_path = WriteSoftSim(dir_, sim);
  const std::string pin = broker->data_dir() + "/ca.pem";
  ProcessResult r = broker->Bootstrap(sim_path, out, {"--broker-ca", pin});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string first = Serial(out);
  const std::string first_key = ReadFileOrEmpty(out + "/device.key");
  ASSERT_FALSE(first.empty());

  // Rerun: valid credentials, so no broker contact at all (it is stopped).
  EXPECT_EQ(broker->Stop(), 0);
  r = broker->Bootstrap(sim_path, out, {"--broker-ca", pin});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "nothing to do"));
  EXPECT_EQ(Serial(out), first);

  // --force re-provisions with a new key.
  broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  r = broker->Bootstrap(sim_path, out, {"--broker-ca", pin, "--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(Serial(out), first);
  EXPECT_NE(ReadFileOrEmpty(out + "/device.key"), first_key);
  // Only one generation remains.
  int generations = 0;
  for (const auto& e : std::filesystem::directory_iterator(out)) {
    if (absl::StartsWith(e.path().filename().string(), ".gen-")) ++generations;
  }
  EXPECT_EQ(generations, 1);
}

TEST_F(IntegrationTest, PinnedToAnotherCaTheAgentRefusesTheBroker) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000103");
  broker->Import({sim});
  // Another broker's CA.
  auto other = BrokerProcess::Start(dir_ + "/other");
  ASSERT_NE(other, nullptr);
  const std::string out = dir_ + "/device";
  ProcessResult r =
      broker->Bootstrap(WriteSoftSim(dir_, sim), out,
                        {"--broker-ca", other->data_dir() + "/ca.pem"});
  EXPECT_EQ(r.exit_code, kExitUnreachable) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "does not verify against --broker-ca"))
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  ExpectNothingWritten(out);
}

TEST_F(IntegrationTest, WrongKIsRefusedBySimAndNothingIsWritten) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000104");
  broker->Import({sim});
  TestSim wrong = sim;
  wrong.k = RandomSim(sim.imsi).k;
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, wrong), out);
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_TRUE(absl::StrContains(r.err, "does not hold this SIM's key"))
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  ExpectNothingWritten(out);
}

TEST_F(IntegrationTest, UnknownImsiGetsADecoyAndIsRefused) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000105");  // never imported
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  // The decoy AUTN fails the SIM's MAC check: the SIM refuses the network.
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  ExpectNothingWritten(out);
  EXPECT_TRUE(absl::StrContains(
      broker->log(), "IMSI 001010000000105 gets a decoy (unknown IMSI)"));
}

TEST_F(IntegrationTest, SimFarAheadOnEveryIndSlotResynchronises) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000106");
  broker->Import({sim});
  std::string seq = "[";
  for (int i = 0; i < 32; ++i) {
    absl::StrAppend(&seq, i ? "," : "", 1000000 + i);
  }
  seq += "]";
  const std::string sim_path =
      WriteSoftSim(dir_, sim, absl::StrCat(", \"seq_ms\": ", seq));
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(sim_path, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(
      absl::StrContains(broker->log(), "IMSI 001010000000106 resynchronised"));
  // The broker continues from the SIM's highest SEQ (1000031).
  ProcessResult show = broker->Cli({"subscribers", "show", sim.imsi});
  auto pos = show.out.find("sqn:");
  ASSERT_NE(pos, std::string::npos);
  uint64_t sqn = std::stoull(show.out.substr(pos + 4));
  EXPECT_EQ(sqn >> 5, 1000032u);
  // The soft SIM persisted its new state.
  auto j = nlohmann::json::parse(ReadFileOrEmpty(sim_path));
  EXPECT_EQ(j["seq_ms"][sqn & 31], 1000032);
}

TEST_F(IntegrationTest, BadCsvImportsNothingAndNamesTheLine) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim a = RandomSim("001010000000201"), b = RandomSim("001010000000202");
  const std::string secret_k = "00112233445566778899aabbccddeeff";
  struct Case {
    std::string csv;
    std::string expect;
  };
  const Case cases[] = {
      {absl::StrCat("imsi,ki,opc\n", a.imsi, ",", a.k, ",", a.opc, "\n",
                    "\n",  // blank lines still count
                    b.imsi, ",", secret_k.substr(2), ",", b.opc, "\n"),
       "line 4: ki must be 32 hex digits"},
      {absl::StrCat("imsi,ki,opc\n", a.imsi, ",", a.k, ",", a.opc, "\n", a.imsi,
                    ",", b.k, ",", b.opc, "\n"),
       "line 3: duplicate IMSI 001010000000201"},
      {absl::StrCat("imsi,ki,opc,group\n", a.imsi, ",", a.k, ",", a.opc,
                    ",default\n12x45,", b.k, ",", b.opc, ",\n"),
       "line 3: imsi must be 6 to 15 decimal digits"},
      {absl::StrCat("imsi,ki\n", a.imsi, ",", a.k, "\n"),
       "line 1: missing required column 'opc'"},
      {absl::StrCat("imsi,ki,opc,colour\n"), "line 1: unknown column 'colour'"},
      {absl::StrCat("imsi,ki,opc\n", a.imsi, ",", a.k, ",", a.opc, ",extra\n"),
       "line 2: expected 3 fields, found 4"},
      {absl::StrCat("imsi,ki,opc,amf\n", a.imsi, ",", a.k, ",", a.opc, ",80\n"),
       "line 2: amf must be 4 hex digits"},
  };
  for (const Case& c : cases) {
    const std::string path = dir_ + "/bad.csv";
    WriteFileOrDie(path, c.csv);
    ProcessResult r = broker->Cli({"subscribers", "import", path});
    EXPECT_EQ(r.exit_code, kExitUsage) << c.expect;
    EXPECT_TRUE(absl::StrContains(r.err, c.expect)) << r.err;
    EXPECT_FALSE(absl::StrContains(r.err, secret_k.substr(2)));
    ProcessResult list = broker->Cli({"subscribers", "list"});
    EXPECT_EQ(list.exit_code, 0);
    EXPECT_FALSE(absl::StrContains(list.out, a.imsi)) << c.expect;
  }
  // The good file imports both.
  broker->Import({a, b});
  ProcessResult list = broker->Cli({"subscribers", "list"});
  EXPECT_TRUE(absl::StrContains(list.out, a.imsi));
  EXPECT_TRUE(absl::StrContains(list.out, b.imsi));
}

TEST_F(IntegrationTest, KeysNeverAppearInTheDataDirOrLogs) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000301");
  broker->Import({sim});
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), dir_ + "/dev");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ProcessResult show = broker->Cli({"subscribers", "show", sim.imsi});
  ASSERT_EQ(broker->Stop(), 0);  // flushes the WAL into the database
  std::vector<std::string> needles;
  for (const std::string& hex : {sim.k, sim.opc}) {
    needles.push_back(hex);
    needles.push_back(absl::AsciiStrToUpper(hex));
    needles.push_back(ToString(*HexDecode(hex)));  // raw bytes
  }
  std::vector<std::string> haystacks = {broker->log(), r.out, r.err, show.out,
                                        show.err};
  int files = 0;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(broker->data_dir())) {
    if (e.is_regular_file()) {
      haystacks.push_back(ReadFileOrEmpty(e.path().string()));
      ++files;
    }
  }
  EXPECT_GE(files, 8);  // store, kek, CA files, TLS files
  for (const std::string& h : haystacks) {
    for (const std::string& n : needles) {
      EXPECT_EQ(h.find(n), std::string::npos);
    }
  }
}

TEST_F(IntegrationTest, RestartKeepsSubscribersAndSqn) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000401");
  broker->Import({sim});
  const std::string sim_path = WriteSoftSim(dir_, sim);
  ASSERT_EQ(broker->Bootstrap(sim_path, dir_ + "/dev").exit_code, 0);
  std::string before = broker->Cli({"subscribers", "show", sim.imsi}).out;
  ASSERT_EQ(broker->Stop(), 0);
  EXPECT_FALSE(PathExists(broker->data_dir() + "/admin.sock"));

  broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  EXPECT_EQ(broker->Cli({"subscribers", "show", sim.imsi}).out, before);
  ProcessResult r = broker->Bootstrap(sim_path, dir_ + "/dev", {"--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The SQN continued: the SIM accepted it without resynchronisation.
  EXPECT_FALSE(absl::StrContains(broker->log(), "resynchronised"));
  ProcessResult show = broker->Cli({"subscribers", "show", sim.imsi});
  EXPECT_TRUE(absl::StrContains(show.out, "certificates: 2")) << show.out;
}

// A bootstrap the broker answered survives a crash of the broker: the
// certificate and device binding were durable before the answer left.
TEST_F(IntegrationTest, AnsweredBootstrapSurvivesABrokerCrash) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000402");
  broker->Import({sim});
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), dir_ + "/dev");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  broker->Kill();
  broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  ProcessResult show = broker->Cli({"subscribers", "show", sim.imsi});
  EXPECT_TRUE(absl::StrContains(show.out, "serial " + Serial(dir_ + "/dev")))
      << show.out;
  EXPECT_TRUE(absl::StrContains(show.out, "device_id:  " + sim.imsi));
}

TEST_F(IntegrationTest, ImportStreamsLargeFilesAllOrNothing) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  constexpr int kRows = 20000;
  std::string csv = "imsi,ki,opc,group\n";
  const std::string k(32, 'a'), opc(32, 'b');
  for (int i = 0; i < kRows; ++i) {
    absl::StrAppend(&csv, 310150000000000 + i, ",", k, ",", opc, ",fleet\n");
  }
  const std::string path = dir_ + "/big.csv";
  // Rows must name existing groups.
  WriteFileOrDie(dir_ + "/groups.json", R"({"groups": [{"name": "fleet"}]})");
  ASSERT_EQ(broker->Cli({"groups", "apply", dir_ + "/groups.json"}).exit_code,
            0);
  // A bad last row: nothing of the 20,000 before it is imported.
  WriteFileOrDie(path, csv + "310150000000000,zz,zz,fleet\n");
  ProcessResult r = broker->Cli({"subscribers", "import", path});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("line ", kRows + 2, ":")))
      << r.err;
  r = broker->Cli({"subscribers", "list", "--group", "fleet"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);  // header only
  WriteFileOrDie(path, csv);
  r = broker->Cli({"subscribers", "import", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("imported ", kRows, " subscribers\n"));
  r = broker->Cli({"subscribers", "list", "--group", "fleet"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), kRows + 1);
}

TEST_F(IntegrationTest, HttpListenServesHealthAndTrustAnchors) {
  auto broker = StartBroker({"--http-listen", "127.0.0.1:0"});
  ASSERT_NE(broker, nullptr);
  auto hp = ParseHostPort(absl::StripAsciiWhitespace(
      ReadFileOrEmpty(broker->data_dir() + "/http-address")));
  ASSERT_TRUE(hp.ok()) << hp.status();
  httplib::Client client(hp->host, hp->port);
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  auto ca = client.Get("/ca.pem");
  ASSERT_TRUE(ca);
  EXPECT_EQ(ca->status, 200);
  EXPECT_EQ(ca->body, ReadFileOrEmpty(broker->data_dir() + "/ca.pem"));
  EXPECT_EQ(client.Get("/nope")->status, 404);
}

TEST_F(IntegrationTest, DataDirFilesArePrivate) {
  auto broker = StartBroker({"--public-name", "broker.test"});
  ASSERT_NE(broker, nullptr);
  for (const char* f : {"kek", "ca/issuing.key", "ca/root.key",
                        "tls/server.key", "simprov.db", "admin.sock"}) {
    struct stat st;
    ASSERT_EQ(stat((broker->data_dir() + "/" + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0077, 0u) << f;
  }
  // The TLS certificate names the listen host (IP SAN) and public names.
  auto tls =
      CertFromPem(ReadFileOrEmpty(broker->data_dir() + "/tls/server.pem"));
  ASSERT_TRUE(tls.ok());
  CertInfo info = DescribeCert(tls->get());
  EXPECT_EQ(info.ip_sans, std::vector<std::string>{"127.0.0.1"});
  EXPECT_EQ(info.dns_sans, std::vector<std::string>{"broker.test"});
  // And the server sends leaf + issuing CA.
  EXPECT_EQ(
      CertsFromPem(ReadFileOrEmpty(broker->data_dir() + "/tls/server.pem"))
          ->size(),
      2u);
}

TEST_F(IntegrationTest, ClearErrorsAndExitCodes) {
  // Usage.
  ProcessResult r = RunProcess({testing::kAgentBin, "bootstrap", "--sim",
                                "soft:/nonexistent", "--out", dir_});
  EXPECT_EQ(r.exit_code, kExitUsage);
  r = RunProcess({testing::kAgentBin, "bootstrap", "--broker", "nonsense",
                  "--sim", "soft:/x", "--out", dir_ + "/o"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "is not HOST:PORT")) << r.err;
  r = RunProcess({testing::kAgentBin, "bootstrap", "--broker", "127.0.0.1:1",
                  "--sim", "soft:/nonexistent", "--out", dir_ + "/o"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "soft SIM")) << r.err;
  // Unreachable broker: a closed port.
  TestSim sim = RandomSim("001010000000501");
  r = RunProcess({testing::kAgentBin, "bootstrap", "--broker", "127.0.0.1:1",
                  "--sim", "soft:" + WriteSoftSim(dir_, sim), "--out",
                  dir_ + "/o", "--attempts", "1", "--timeout", "2s"});
  EXPECT_EQ(r.exit_code, kExitUnreachable) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "unreachable")) << r.err;
  ExpectNothingWritten(dir_ + "/o");
  // The CLI without a running broker.
  r = RunProcess({testing::kCliBin, "--data-dir", dir_ + "/nothing",
                  "subscribers", "list"});
  EXPECT_EQ(r.exit_code, kExitUnreachable);
  EXPECT_TRUE(absl::StrContains(r.err, "is simprov-broker running")) << r.err;
  // --help everywhere.
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {testing::kAgentBin, "--help"},
           {testing::kAgentBin, "bootstrap", "--help"},
           {testing::kBrokerBin, "--help"},
           {testing::kCliBin, "--help"},
           {testing::kCliBin, "subscribers", "import", "--help"}}) {
    r = RunProcess(argv);
    EXPECT_EQ(r.exit_code, 0) << argv.back();
    EXPECT_TRUE(absl::StrContains(r.out, "--")) << r.out;
  }
}

// A man in the middle without --broker-ca can relay, but it cannot change
// the sealed answer without the agent noticing: nothing is written.
class TamperingProxy final : public v1::Bootstrap::Service {
 public:
  // `delay` > 0: relay faithfully but late; otherwise flip one bit.
  explicit TamperingProxy(std::shared_ptr<grpc::Channel> upstream,
                          absl::Duration delay = absl::ZeroDuration())
      : stub_(v1::Bootstrap::NewStub(upstream)), delay_(delay) {}
  grpc::Status Time(grpc::ServerContext*, const v1::EnrolRequest* req,
                    v1::EnrolResponse* resp) override {
    grpc::ClientContext ctx;
    grpc::Status s = stub_->Time(&ctx, *req, resp);
    absl::SleepFor(delay_);
    return s;
  }
  grpc::Status Challenge(grpc::ServerContext*, const v1::ChallengeRequest* req,
                         v1::ChallengeResponse* resp) override {
    grpc::ClientContext ctx;
    return stub_->Challenge(&ctx, *req, resp);
  }
  grpc::Status Enrol(grpc::ServerContext*, const v1::EnrolRequest* req,
                     v1::EnrolResponse* resp) override {
    grpc::ClientContext ctx;
    grpc::Status s = stub_->Enrol(&ctx, *req, resp);
    if (delay_ > absl::ZeroDuration()) {
      absl::SleepFor(delay_);
      return s;
    }
    if (s.ok()) {
      std::string sealed = resp->sealed_answer();
      sealed[sealed.size() / 2] ^= 0x01;
      resp->set_sealed_answer(sealed);
    }
    return s;
  }

 private:
  std::unique_ptr<v1::Bootstrap::Stub> stub_;
  const absl::Duration delay_;
};

// A TLS server with a throwaway self-signed identity, in this process.
std::unique_ptr<grpc::Server> StartProxy(grpc::Service* service, int* port) {
  EvpPkeyPtr key = GenerateP256Key();
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME_add_entry_by_txt(
      X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("mitm"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509_set_pubkey(cert.get(), key.get());
  X509_sign(cert.get(), key.get(), EVP_sha256());
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back(
      {*PrivateKeyToPkcs8Pem(key.get()), CertToPem(cert.get())});
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl),
                           port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

TEST_F(IntegrationTest, TamperedAnswerIsRejectedAndNothingIsWritten) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000601");
  broker->Import({sim});
  auto upstream = ParseBroker(broker->address());
  TamperingProxy proxy(MakeBrokerChannel(*upstream, ""));
  int port = 0;
  auto server = StartProxy(&proxy, &port);
  ASSERT_NE(port, 0);
  const std::string out = dir_ + "/device";
  ProcessResult r =
      RunProcess({testing::kAgentBin, "bootstrap", "--broker",
                  absl::StrCat("127.0.0.1:", port), "--sim",
                  "soft:" + WriteSoftSim(dir_, sim), "--out", out});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "answer failed authentication"))
      << r.err;
  ExpectNothingWritten(out);
  server->Shutdown();
}

TEST_F(IntegrationTest, RenewGivesANewKeyAndSerialWithoutTheSim) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000701");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  const std::string sim_path = WriteSoftSim(dir_, sim);
  ASSERT_EQ(broker->Bootstrap(sim_path, out).exit_code, 0);
  const std::string serial = Serial(out);
  const std::string key = ReadFileOrEmpty(out + "/device.key");
  const std::string sim_state = ReadFileOrEmpty(sim_path);
  ProcessResult r = RunProcess({testing::kAgentBin, "renew", "--broker",
                                broker->address(), "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(Serial(out), serial);
  EXPECT_NE(ReadFileOrEmpty(out + "/device.key"), key);
  EXPECT_EQ(ReadFileOrEmpty(sim_path), sim_state);  // the SIM was not used
  auto j = nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"));
  EXPECT_EQ(j["device_id"], sim.imsi);
  EXPECT_EQ(j["imsi"], sim.imsi);
  auto leaf = CertFromPem(ReadFileOrEmpty(out + "/device.crt"));
  auto k = PrivateKeyFromPem(ReadFileOrEmpty(out + "/device.key"));
  ASSERT_TRUE(leaf.ok() && k.ok());
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(leaf->get()), k->get()));
  EXPECT_EQ(DescribeCert(leaf->get()).subject, "CN=" + sim.imsi);
  ProcessResult show = broker->Cli({"subscribers", "show", sim.imsi});
  EXPECT_TRUE(absl::StrContains(show.out, "certificates: 2")) << show.out;
  EXPECT_TRUE(absl::StrContains(broker->log(), "renewed as " + Serial(out)));

  // Against another broker: its TLS does not verify against DIR/ca.pem.
  auto other = BrokerProcess::Start(dir_ + "/other");
  ASSERT_NE(other, nullptr);
  r = RunProcess({testing::kAgentBin, "renew", "--broker", other->address(),
                  "--out", out});
  EXPECT_EQ(r.exit_code, kExitUnreachable) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "does not verify against")) << r.err;
}

TEST_F(IntegrationTest, RenewOfAnExpiredCertificateIsRefused) {
  auto broker = StartBroker({"--cert-ttl", "1s"});
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000702");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(WriteSoftSim(dir_, sim), out).exit_code, 0);
  absl::SleepFor(absl::Milliseconds(1500));
  ProcessResult r = RunProcess({testing::kAgentBin, "renew", "--broker",
                                broker->address(), "--out", out});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "certificate has expired")) << r.err;
}

TEST_F(IntegrationTest, RenewWithoutCredentialsIsAUsageError) {
  ProcessResult r = RunProcess({testing::kAgentBin, "renew", "--broker",
                                "127.0.0.1:1", "--out", dir_ + "/none"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "bootstrap first")) << r.err;
}

// Polls `pred` every 50 ms for up to `limit`.
template <typename Pred>
bool WaitFor(Pred pred, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return pred();
}

TEST_F(IntegrationTest, DaemonRenewsAShortLivedCertificateBeforeItExpires) {
  auto broker = StartBroker({"--cert-ttl", "6s"});
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000801");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  const std::string marker = dir_ + "/renewed";
  testing::BackgroundProcess daemon(
      {testing::kAgentBin, "run", "--broker", broker->address(), "--sim",
       "soft:" + WriteSoftSim(dir_, sim), "--out", out, "--on-renew",
       "echo renewed >> " + marker},
      dir_ + "/daemon.log");
  ASSERT_TRUE(WaitFor([&] { return !Serial(out).empty(); }, absl::Seconds(20)))
      << ReadFileOrEmpty(dir_ + "/daemon.log");
  const std::string first = Serial(out);
  auto leaf = CertFromPem(ReadFileOrEmpty(out + "/device.crt"));
  ASSERT_TRUE(leaf.ok());
  const absl::Time expiry = DescribeCert(leaf->get()).not_after;
  ASSERT_TRUE(WaitFor([&] { return Serial(out) != first; }, absl::Seconds(20)))
      << ReadFileOrEmpty(dir_ + "/daemon.log");
  // Renewed (not re-bootstrapped) before the first certificate expired.
  EXPECT_LT(absl::Now(), expiry + absl::Seconds(1));
  EXPECT_TRUE(absl::StrContains(broker->log(), "renewed as"));
  ASSERT_TRUE(WaitFor([&] { return PathExists(marker); }, absl::Seconds(5)));
  EXPECT_EQ(daemon.Stop(), 0);
  EXPECT_TRUE(
      absl::StrContains(ReadFileOrEmpty(dir_ + "/daemon.log"), "stopping"));
}

TEST_F(IntegrationTest, DaemonFallsBackToTheSimWhenTheCertificateExpired) {
  auto broker = StartBroker({"--cert-ttl", "2s"});
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000802");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  const std::string sim_path = WriteSoftSim(dir_, sim);
  ASSERT_EQ(broker->Bootstrap(sim_path, out).exit_code, 0);
  const std::string first = Serial(out);
  absl::SleepFor(absl::Milliseconds(2500));  // let it expire
  testing::BackgroundProcess daemon(
      {testing::kAgentBin, "run", "--broker", broker->address(), "--sim",
       "soft:" + sim_path, "--out", out},
      dir_ + "/daemon.log");
  ASSERT_TRUE(WaitFor([&] { return Serial(out) != first; }, absl::Seconds(20)))
      << ReadFileOrEmpty(dir_ + "/daemon.log");
  EXPECT_EQ(daemon.Stop(), 0);
  const std::string log = broker->log();
  EXPECT_TRUE(absl::StrContains(ReadFileOrEmpty(dir_ + "/daemon.log"),
                                "bootstrapping with the SIM"));
  // Two SIM bootstraps: the first one and the fallback.
  size_t issued = 0;
  for (size_t p = log.find("enrol: IMSI 001010000000802 issued");
       p != std::string::npos;
       p = log.find("enrol: IMSI 001010000000802 issued", p + 1)) {
    ++issued;
  }
  EXPECT_GE(issued, 2u);
}

TEST_F(IntegrationTest, TimeCommandPrintsAuthenticatedTimeAndSkew) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000901");
  broker->Import({sim});
  ProcessResult r =
      RunProcess({testing::kAgentBin, "time", "--broker", broker->address(),
                  "--sim", "soft:" + WriteSoftSim(dir_, sim), "--broker-ca",
                  broker->data_dir() + "/ca.pem", "--out", dir_ + "/state"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "authenticated time: ")) << r.out;
  // The last authenticated time is kept for the never-backwards floor.
  auto state = nlohmann::json::parse(ReadFileOrEmpty(dir_ + "/state/time.json"),
                                     nullptr, false);
  ASSERT_TRUE(state.is_object());
  EXPECT_NEAR(state["authenticated_unix_ms"].get<double>(),
              absl::ToUnixMillis(absl::Now()), 5000);
  auto pos = r.out.find("skew:");
  ASSERT_NE(pos, std::string::npos);
  double skew = std::stod(r.out.substr(pos + 5));
  EXPECT_LT(std::abs(skew), 1.0);  // same machine, same clock
  EXPECT_TRUE(absl::StrContains(broker->log(),
                                "time: IMSI 001010000000901 authenticated"));
  // No certificate was issued for it.
  EXPECT_TRUE(absl::StrContains(
      broker->Cli({"subscribers", "show", sim.imsi}).out, "certificates: 0"));
}

// The setter is injected: the test never touches the machine's clock.
TEST_F(IntegrationTest, CheckClockSetsAClockThatIsFarOff) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000902");
  broker->Import({sim});
  class RecordingSetter : public ClockSetter {
   public:
    absl::Status Set(absl::Time t) override {
      set_to = t;
      return absl::OkStatus();
    }
    absl::Time set_to = absl::InfinitePast();
  } setter;
  AgentConfig config;
  config.broker = *ParseBroker(broker->address());
  config.sim_spec = "soft:" + WriteSoftSim(dir_, sim);
  // A device clock that runs an hour fast (it keeps running: the exchange
  // may take seconds under a sanitizer).
  class OffsetClock : public Clock {
   public:
    explicit OffsetClock(absl::Duration d) : d_(d) {}
    absl::Time Now() const override { return absl::Now() + d_; }

   private:
    absl::Duration d_;
  } device_clock(absl::Hours(1));
  auto check = CheckClock(config, device_clock, Random::Real(), &setter,
                          absl::Seconds(2));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->set);
  EXPECT_NEAR(absl::ToDoubleSeconds(check->skew), 3600, 1);
  EXPECT_NEAR(absl::ToDoubleSeconds(setter.set_to - absl::Now()), 0, 5);
  EXPECT_LE(check->authenticated.uncertainty, check->authenticated.round_trip);
  // Within the tolerated skew nothing is set.
  RecordingSetter untouched;
  OffsetClock close(absl::Milliseconds(500));
  check =
      CheckClock(config, close, Random::Real(), &untouched, absl::Seconds(2));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_FALSE(check->set);
  EXPECT_EQ(untouched.set_to, absl::InfinitePast());
}

TEST_F(IntegrationTest, AnAnswerSlowerThanTheBoundIsRefused) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000000903");
  broker->Import({sim});
  TamperingProxy slow(MakeBrokerChannel(*ParseBroker(broker->address()), ""),
                      absl::Milliseconds(700));
  int port = 0;
  auto server = StartProxy(&slow, &port);
  ASSERT_NE(port, 0);
  const std::string out = dir_ + "/device";
  for (const char* command : {"bootstrap", "time"}) {
    std::vector<std::string> argv = {testing::kAgentBin,
                                     command,
                                     "--broker",
                                     absl::StrCat("127.0.0.1:", port),
                                     "--sim",
                                     "soft:" + WriteSoftSim(dir_, sim),
                                     "--max-round-trip",
                                     "500ms",
                                     "--attempts",
                                     "1"};
    if (std::string(command) == "bootstrap") {
      argv.insert(argv.end(), {"--out", out});
    }
    ProcessResult r = RunProcess(argv);
    EXPECT_NE(r.exit_code, 0) << command;
    EXPECT_TRUE(absl::StrContains(r.err, "cannot be trusted")) << r.err;
  }
  ExpectNothingWritten(out);
  server->Shutdown();
}

TEST_F(IntegrationTest, SigtermStopsTheBrokerCleanly) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  EXPECT_EQ(broker->Stop(), 0);
  EXPECT_TRUE(absl::StrContains(broker->log(), "received SIGTERM"));
  EXPECT_TRUE(absl::StrContains(broker->log(), "stopped"));
}

}  // namespace
}  // namespace simprov
