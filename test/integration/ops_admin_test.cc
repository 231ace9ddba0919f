// Operating the broker: the operator's own CA and its rollover,
// remote admin with roles, the config file. Real binaries on loopback.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/admin/admin_auth.h"
#include "broker/ca/ca.h"
#include "broker/cli/admin_client.h"
#include "broker/config_file.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/exit_codes.h"
#include "common/x509.h"
#include "simprov/v1/access.grpc.pb.h"
#include "simprov/v1/admin.grpc.pb.h"
#include "simprov/v1/fleet.grpc.pb.h"
#include "simprov/v1/ops.grpc.pb.h"
#include "simprov/v1/registry.grpc.pb.h"
#include "simprov/v1/token.grpc.pb.h"
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

constexpr char kOpensslConf[] = R"([req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_int]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_iss]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_forged_admin]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:simprov:admin:admin:mallory
)";

void RunOk(const std::vector<std::string>& argv) {
  ProcessResult r = RunProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << argv[0] << " " << argv[1] << ": " << r.err;
}

// An operator PKI made with the openssl CLI: root -> intermediate -> issuing
// (the broker's CA), plus a non-CA certificate under the root.
struct OperatorPki {
  std::string dir;
  std::string root_pem, chain_pem;  // chain: intermediate + root
  std::string issuing_pem, issuing_key;
  std::string int_key;             // a key that does not match issuing_pem
  std::string leaf_pem, leaf_key;  // not a CA
};

OperatorPki MakePki(const std::string& dir, const std::string& name) {
  OperatorPki p;
  p.dir = dir;
  std::filesystem::create_directories(dir);
  const std::string conf = dir + "/openssl.cnf";
  WriteFileOrDie(conf, kOpensslConf);
  auto key_args = [](const std::string& key) {
    return std::vector<std::string>{
        "-newkey", "ec",      "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes",  "-keyout", key};
  };
  auto req = [&](const std::string& base, const std::string& cn) {
    std::vector<std::string> argv = {"/usr/bin/openssl", "req", "-new",
                                     "-config", conf};
    for (auto& a : key_args(dir + "/" + base + ".key")) argv.push_back(a);
    argv.insert(argv.end(),
                {"-out", dir + "/" + base + ".csr", "-subj", "/CN=" + cn});
    RunOk(argv);
  };
  auto sign = [&](const std::string& base, const std::string& ca,
                  const std::string& ext, const std::string& serial) {
    RunOk({"/usr/bin/openssl", "x509", "-req", "-in", dir + "/" + base + ".csr",
           "-CA", dir + "/" + ca + ".pem", "-CAkey", dir + "/" + ca + ".key",
           "-set_serial", serial, "-days", "365", "-extfile", conf,
           "-extensions", ext, "-out", dir + "/" + base + ".pem"});
  };
  std::vector<std::string> root = {"/usr/bin/openssl", "req",   "-x509",
                                   "-config",          conf,    "-extensions",
                                   "v3_root",          "-days", "3650"};
  for (auto& a : key_args(dir + "/root.key")) root.push_back(a);
  root.insert(root.end(),
              {"-out", dir + "/root.pem", "-subj", "/CN=" + name + " Root"});
  RunOk(root);
  req("int", name + " Intermediate");
  sign("int", "root", "v3_int", "2");
  req("iss", name + " Issuing");
  sign("iss", "int", "v3_iss", "3");
  req("leaf", name + " Not A CA");
  sign("leaf", "root", "v3_leaf", "4");
  for (const char* k : {"root.key", "int.key", "iss.key", "leaf.key"}) {
    chmod((dir + "/" + k).c_str(), 0600);
  }
  p.root_pem = dir + "/root.pem";
  p.chain_pem = dir + "/chain.pem";
  WriteFileOrDie(p.chain_pem, ReadFileOrEmpty(dir + "/int.pem") +
                                  ReadFileOrEmpty(dir + "/root.pem"));
  p.issuing_pem = dir + "/iss.pem";
  p.issuing_key = dir + "/iss.key";
  p.int_key = dir + "/int.key";
  p.leaf_pem = dir + "/leaf.pem";
  p.leaf_key = dir + "/leaf.key";
  return p;
}

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

class OpsAdminTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }
  std::string dir_;
};

// ---- Operator CA ---------------------------------------------------------

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

// ---- Remote admin --------------------------------------------------------

class RemoteAdminTest : public OpsAdminTest {
 protected:
  void SetUp() override {
    OpsAdminTest::SetUp();
    broker_ = BrokerProcess::Start(dir_ + "/broker",
                                   {"--admin-listen", "127.0.0.1:0"});
    ASSERT_NE(broker_, nullptr);
    admin_ = std::string(absl::StripAsciiWhitespace(
        ReadFileOrEmpty(dir_ + "/broker/admin-address")));
    ASSERT_FALSE(admin_.empty());
    for (const char* role : {"viewer", "operator", "admin"}) {
      ProcessResult r =
          broker_->Cli({"admin", "issue-cert", "--role", role, "--out",
                        Certs(role), "--name", std::string(role) + "-bob"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }
  std::string Certs(const std::string& role) { return dir_ + "/" + role; }
  ProcessResult Remote(const std::string& cert_dir,
                       std::vector<std::string> args) {
    std::vector<std::string> argv = {testing::kCliBin, "--admin", admin_,
                                     "--admin-cert", cert_dir};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv);
  }
  std::unique_ptr<BrokerProcess> broker_;
  std::string admin_;
};

TEST_F(RemoteAdminTest, AdminCertificateFiles) {
  struct stat st;
  ASSERT_EQ(stat((Certs("viewer") + "/admin.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto chain = CertsFromPem(ReadFileOrEmpty(Certs("viewer") + "/admin.pem"));
  ASSERT_TRUE(chain.ok());
  CertInfo info = DescribeCert((*chain)[0].get());
  EXPECT_EQ(info.uri_sans,
            std::vector<std::string>{"urn:simprov:admin:viewer:viewer-bob"});
  EXPECT_EQ(ReadFileOrEmpty(Certs("viewer") + "/ca.pem"),
            ReadFileOrEmpty(dir_ + "/broker/admin-ca/ca.pem"));
  ProcessResult r = Remote(Certs("operator"), {"admin", "whoami"});
  EXPECT_EQ(r.out, "operator-bob operator\n") << r.err;
  // An existing key is not overwritten without --force.
  r = broker_->Cli(
      {"admin", "issue-cert", "--role", "viewer", "--out", Certs("viewer")});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
}

TEST_F(RemoteAdminTest, ViewerReadsButCannotChangeOperatorCanAdminIssues) {
  TestSim sim = RandomSim("001010000007003");
  broker_->Import({sim});
  ASSERT_EQ(
      broker_->Bootstrap(WriteSoftSim(dir_, sim), dir_ + "/device").exit_code,
      0);
  ProcessResult r = Remote(Certs("viewer"), {"subscribers", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, sim.imsi)) << r.out;
  EXPECT_EQ(Remote(Certs("viewer"), {"devices", "list"}).exit_code, 0);
  EXPECT_EQ(Remote(Certs("viewer"), {"audit"}).exit_code, 0);

  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{
           {"devices", "revoke", sim.imsi},
           {"subscribers", "suspend", sim.imsi},
           {"tokens", "revoke", "--device", sim.imsi},
           {"admin", "issue-cert", "--role", "admin", "--out",
            dir_ + "/escalated"},
           {"ca", "activate"}}) {
    r = Remote(Certs("viewer"), cmd);
    EXPECT_EQ(r.exit_code, kExitRefused) << cmd[0] << " " << cmd[1];
    EXPECT_TRUE(absl::StrContains(r.err, "permission denied: viewer-bob"))
        << r.err;
  }
  EXPECT_FALSE(PathExists(dir_ + "/escalated/admin.pem"));
  r = broker_->Cli({"subscribers", "show", sim.imsi});
  EXPECT_TRUE(absl::StrContains(r.out, "active")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "revoked")) << r.out;

  // Operator: lifecycle yes, admin certificates no.
  r = Remote(Certs("operator"), {"subscribers", "suspend", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Remote(Certs("operator"), {"devices", "revoke", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Remote(Certs("operator"), {"admin", "issue-cert", "--role", "viewer",
                                 "--out", dir_ + "/op-issued"});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  // Admin issues admin certificates remotely.
  r = Remote(Certs("admin"), {"admin", "issue-cert", "--role", "viewer",
                              "--out", dir_ + "/carol", "--name", "carol"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Remote(dir_ + "/carol", {"admin", "whoami"}).out, "carol viewer\n");

  // The audit names the admin.
  r = broker_->Cli({"audit"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  bool suspend = false, revoke = false, issued = false;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    if (absl::StrContains(line, "operator-bob") &&
        absl::StrContains(line, "suspend")) {
      suspend = true;
    }
    if (absl::StrContains(line, "operator-bob") &&
        absl::StrContains(line, "revoke")) {
      revoke = true;
    }
    if (absl::StrContains(line, "admin-bob") &&
        absl::StrContains(line, "admin-cert") &&
        absl::StrContains(line, "carol")) {
      issued = true;
    }
  }
  EXPECT_TRUE(suspend && revoke && issued) << r.out;
}

TEST_F(RemoteAdminTest, RevokedAdminCertificateIsRefusedAtOnceAndAfterRestart) {
  auto chain = CertsFromPem(ReadFileOrEmpty(Certs("operator") + "/admin.pem"));
  ASSERT_TRUE(chain.ok() && !chain->empty());
  const std::string serial = DescribeCert(chain->front().get()).serial_hex;
  ASSERT_EQ(Remote(Certs("operator"), {"admin", "whoami"}).out,
            "operator-bob operator\n");

  // A viewer may not revoke; a malformed serial changes nothing.
  ProcessResult r = Remote(Certs("viewer"), {"admin", "revoke-cert", serial});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  r = Remote(Certs("admin"), {"admin", "revoke-cert", "xyz"});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "serial must be hex digits")) << r.err;
  EXPECT_FALSE(PathExists(dir_ + "/broker/admin-ca/revoked"));
  EXPECT_EQ(Remote(Certs("operator"), {"admin", "whoami"}).exit_code, 0);

  // Revoked in the colon-separated upper-case form a viewer of the
  // certificate might copy.
  std::string colons;
  for (size_t i = 0; i < serial.size(); i += 2) {
    absl::StrAppend(&colons, i == 0 ? "" : ":",
                    absl::AsciiStrToUpper(serial.substr(i, 2)));
  }
  r = Remote(Certs("admin"), {"admin", "revoke-cert", colons});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "admin certificate " + serial +
                       " revoked: it is refused from now on\n");
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/broker/admin-ca/revoked").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  r = Remote(Certs("operator"), {"admin", "whoami"});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.out;
  EXPECT_TRUE(
      absl::StrContains(r.err, "admin certificate " + serial + " is revoked"))
      << r.err;
  r = Remote(Certs("operator"), {"subscribers", "list"});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.out;
  r = broker_->Cli({"admin", "revoke-cert", serial});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "admin certificate " + serial + " was already revoked\n");

  // Still revoked after a restart; the other certificates still work.
  ASSERT_EQ(broker_->Stop(), 0);
  broker_ =
      BrokerProcess::Start(dir_ + "/broker", {"--admin-listen", "127.0.0.1:0"});
  ASSERT_NE(broker_, nullptr);
  admin_ = std::string(absl::StripAsciiWhitespace(
      ReadFileOrEmpty(dir_ + "/broker/admin-address")));
  EXPECT_EQ(Remote(Certs("operator"), {"admin", "whoami"}).exit_code,
            kExitRefused);
  EXPECT_EQ(Remote(Certs("viewer"), {"admin", "whoami"}).out,
            "viewer-bob viewer\n");

  r = broker_->Cli({"audit", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int revocations = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    if (absl::StrContains(line, "\"revoke-admin-cert\"")) {
      ++revocations;
      EXPECT_TRUE(absl::StrContains(line, "\"admin-bob\"")) << line;
      EXPECT_TRUE(absl::StrContains(line, serial)) << line;
    }
  }
  EXPECT_EQ(revocations, 1) << r.out;
}

TEST_F(RemoteAdminTest, CertificatesNotFromTheAdminCaAreRefusedAtTls) {
  // A device certificate from the same broker's device CA.
  TestSim sim = RandomSim("001010000007004");
  broker_->Import({sim});
  const std::string device = dir_ + "/device";
  ASSERT_EQ(broker_->Bootstrap(WriteSoftSim(dir_, sim), device).exit_code, 0);
  const std::string ca = ReadFileOrEmpty(Certs("admin") + "/ca.pem");
  auto make_dir = [&](const std::string& name, const std::string& key,
                      const std::string& chain) {
    const std::string d = dir_ + "/" + name;
    std::filesystem::create_directories(d);
    WriteFileOrDie(d + "/admin.key", key);
    WriteFileOrDie(d + "/admin.pem", chain);
    WriteFileOrDie(d + "/ca.pem", ca);
    return d;
  };
  const std::string as_device =
      make_dir("as-device", ReadFileOrEmpty(device + "/device.key"),
               ReadFileOrEmpty(device + "/chain.pem"));
  // A self-made certificate that claims role admin.
  OperatorPki pki = MakePki(dir_ + "/pki", "Mallory");
  RunOk({"/usr/bin/openssl", "req", "-new", "-config", pki.dir + "/openssl.cnf",
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", pki.dir + "/m.key", "-out", pki.dir + "/m.csr", "-subj",
         "/CN=mallory"});
  RunOk({"/usr/bin/openssl", "x509", "-req", "-in", pki.dir + "/m.csr", "-CA",
         pki.root_pem, "-CAkey", pki.dir + "/root.key", "-set_serial", "9",
         "-days", "30", "-extfile", pki.dir + "/openssl.cnf", "-extensions",
         "v3_forged_admin", "-out", pki.dir + "/m.pem"});
  const std::string forged =
      make_dir("forged", ReadFileOrEmpty(pki.dir + "/m.key"),
               ReadFileOrEmpty(pki.dir + "/m.pem"));
  const std::string no_cert = make_dir("no-cert", "", "");
  for (const std::string& d : {as_device, forged, no_cert}) {
    ProcessResult r = Remote(d, {"subscribers", "list"});
    EXPECT_EQ(r.exit_code, kExitUnreachable) << d << ": " << r.err;
    EXPECT_FALSE(absl::StrContains(r.out, sim.imsi));
  }
  // And the admin listener never serves the device API's callers: the
  // device port does not offer the admin services.
  ProcessResult r =
      RunProcess({testing::kCliBin, "--admin", broker_->address(),
                  "--admin-cert", Certs("admin"), "subscribers", "list"});
  EXPECT_NE(r.exit_code, 0);
}

// Every admin RPC has a role, and each handler enforces it: one role below
// is refused, the role itself gets past authorization.
TEST_F(RemoteAdminTest, EveryAdminRpcChecksItsRole) {
  std::map<std::string, AdminRole> table;
  for (const AdminMethodRole& m : AdminMethodRoles()) {
    EXPECT_TRUE(table.emplace(std::string(m.method), m.role).second)
        << m.method;
  }
  // Through a message of each file, so its descriptor is linked in.
  const google::protobuf::ServiceDescriptor* services[] = {
      v1::ImportBatch::descriptor()->file()->FindServiceByName("Admin"),
      v1::ApplyGroupsRequest::descriptor()->file()->FindServiceByName("Fleet"),
      v1::CreateAppRequest::descriptor()->file()->FindServiceByName(
          "TokenAdmin"),
      v1::WhoAmIRequest::descriptor()->file()->FindServiceByName("Access"),
      v1::ListPendingRequest::descriptor()->file()->FindServiceByName(
          "RegistryAdmin"),
      v1::RotateKekRequest::descriptor()->file()->FindServiceByName("Ops"),
  };
  std::vector<std::pair<std::string, std::string>> methods;  // key, path
  for (const auto* svc : services) {
    ASSERT_NE(svc, nullptr);
    for (int i = 0; i < svc->method_count(); ++i) {
      const std::string key =
          absl::StrCat(svc->name(), ".", svc->method(i)->name());
      EXPECT_TRUE(table.count(key)) << key << " has no role";
      methods.push_back({key, absl::StrCat("/", svc->full_name(), "/",
                                           svc->method(i)->name())});
    }
  }
  EXPECT_EQ(methods.size(), table.size()) << "the role table names a method "
                                             "no admin service has";

  // A certificate from the admin CA without any role.
  const std::string no_role = dir_ + "/no-role";
  {
    auto admin_ca = CertificateAuthority::Load(dir_ + "/broker/admin-ca",
                                               Clock::Real(), Random::Real());
    ASSERT_TRUE(admin_ca.ok()) << admin_ca.status();
    EvpPkeyPtr key = GenerateP256Key();
    DeviceCertRequest req;
    req.public_key = key.get();
    req.common_name = "no-role";
    req.ttl = absl::Hours(1);
    auto cert = (*admin_ca)->IssueDeviceCertificate(req);
    ASSERT_TRUE(cert.ok());
    std::filesystem::create_directories(no_role);
    WriteFileOrDie(no_role + "/admin.key", *PrivateKeyToPkcs8Pem(key.get()));
    WriteFileOrDie(no_role + "/admin.pem",
                   CertToPem(cert->get()) + (*admin_ca)->ChainPem());
    WriteFileOrDie(no_role + "/ca.pem", (*admin_ca)->TrustAnchorsPem());
  }
  auto call = [&](const std::string& cert_dir, const std::string& path) {
    auto channel = RemoteAdminChannel(admin_, cert_dir);
    EXPECT_TRUE(channel.ok());
    grpc::GenericStub stub(*channel);
    grpc::CompletionQueue cq;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    auto rpc = stub.PrepareCall(&ctx, path, &cq);
    void* tag;
    bool ok;
    rpc->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    rpc->Write(request, reinterpret_cast<void*>(2));
    cq.Next(&tag, &ok);
    rpc->WritesDone(reinterpret_cast<void*>(3));
    cq.Next(&tag, &ok);
    grpc::ByteBuffer response;
    do {
      rpc->Read(&response, reinterpret_cast<void*>(4));
      cq.Next(&tag, &ok);
    } while (ok);
    grpc::Status status;
    rpc->Finish(&status, reinterpret_cast<void*>(5));
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  };
  const std::map<AdminRole, std::string> below = {
      {AdminRole::kViewer, no_role},
      {AdminRole::kOperator, Certs("viewer")},
      {AdminRole::kAdmin, Certs("operator")}};
  const std::map<AdminRole, std::string> at = {
      {AdminRole::kViewer, Certs("viewer")},
      {AdminRole::kOperator, Certs("operator")},
      {AdminRole::kAdmin, Certs("admin")}};
  for (const auto& [key, path] : methods) {
    const AdminRole role = table[key];
    grpc::Status refused = call(below.at(role), path);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << key << ": " << refused.error_message();
    grpc::Status allowed = call(at.at(role), path);
    EXPECT_NE(allowed.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << key << ": " << allowed.error_message();
    EXPECT_NE(allowed.error_code(), grpc::StatusCode::UNAVAILABLE)
        << key << ": " << allowed.error_message();
  }
}

// ---- Configuration -------------------------------------------------------

TEST(ConfigText, ParsesTomlAndYamlSubsets) {
  auto toml = ParseConfigText(
      "# broker\nlisten = \"127.0.0.1:0\"  # inline\nrate-burst = 4\n"
      "public-name = [\"a.example\", 'b.example']\ntoken-audiences = [\n"
      "  \"x\",\n  \"y\",\n]\n",
      false);
  ASSERT_TRUE(toml.ok()) << toml.status();
  ASSERT_EQ(toml->size(), 4u);
  EXPECT_EQ((*toml)[0].values, std::vector<std::string>{"127.0.0.1:0"});
  EXPECT_EQ((*toml)[2].values,
            (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ((*toml)[3].values, (std::vector<std::string>{"x", "y"}));
  auto yaml = ParseConfigText(
      "listen: 127.0.0.1:0\npublic-name:\n  - a.example\n  - b.example\n"
      "log-level: 'debug'\n",
      true);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  ASSERT_EQ(yaml->size(), 3u);
  EXPECT_EQ((*yaml)[1].values,
            (std::vector<std::string>{"a.example", "b.example"}));
  auto bad = ParseConfigText("listen\n", false);
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "line 1"));
  EXPECT_FALSE(ParseConfigText("[section]\n", false).ok());
}

std::string WaitForFile(const std::string& path) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    std::string s(absl::StripAsciiWhitespace(ReadFileOrEmpty(path)));
    if (!s.empty()) return s;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return "";
}

TEST_F(OpsAdminTest, ConfigFileSetsValuesAndFlagsOverrideIt) {
  const std::string data = dir_ + "/broker";
  const std::string conf = dir_ + "/broker.toml";
  WriteFileOrDie(conf, absl::StrCat("data-dir = \"", dir_,
                                    "/not-this\"\nhttp-listen = "
                                    "\"127.0.0.1:0\"\nlog-level = \"error\"\n"
                                    "admin_listen = \"127.0.0.1:0\"\n"));
  // --data-dir on the command line wins over the file's data-dir.
  auto broker = BrokerProcess::Start(data, {"--config", conf});
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(PathExists(dir_ + "/not-this"));
  EXPECT_FALSE(WaitForFile(data + "/http-address").empty());
  EXPECT_FALSE(WaitForFile(data + "/admin-address").empty());
  EXPECT_FALSE(absl::StrContains(broker->log(), "INFO")) << broker->log();
  ASSERT_EQ(broker->Stop(), 0);

  // YAML, with a flag overriding a key.
  const std::string yaml = dir_ + "/broker.yaml";
  WriteFileOrDie(yaml, "http-listen: 127.0.0.1:0\nlog-level: error\n");
  broker =
      BrokerProcess::Start(data, {"--config", yaml, "--log-level", "info"});
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(WaitForFile(data + "/http-address").empty());
  EXPECT_TRUE(absl::StrContains(broker->log(), "INFO")) << broker->log();
  ASSERT_EQ(broker->Stop(), 0);
}

TEST_F(OpsAdminTest, UnknownConfigKeysAreRefusedByName) {
  const std::string conf = dir_ + "/broker.toml";
  WriteFileOrDie(conf, "listen = \"127.0.0.1:0\"\nno-such-flag = 1\n");
  ProcessResult r = RunProcess(
      {testing::kBrokerBin, "--data-dir", dir_ + "/broker", "--config", conf});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "unknown key \"no-such-flag\""))
      << r.err;
  EXPECT_FALSE(PathExists(dir_ + "/broker"));
}

TEST_F(OpsAdminTest, ValuesFromFilesAndTheEnvironment) {
  const std::string data = dir_ + "/broker";
  // SIMPROV_<FLAG>_FILE: the value lives in a file (a secret's way in).
  const std::string value_file = dir_ + "/http-listen.secret";
  WriteFileOrDie(value_file, "127.0.0.1:0\n");
  setenv("SIMPROV_HTTP_LISTEN_FILE", value_file.c_str(), 1);
  setenv("SIMPROV_LOG_LEVEL", "error", 1);
  auto broker = BrokerProcess::Start(data);
  unsetenv("SIMPROV_HTTP_LISTEN_FILE");
  unsetenv("SIMPROV_LOG_LEVEL");
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(WaitForFile(data + "/http-address").empty());
  EXPECT_FALSE(absl::StrContains(broker->log(), "INFO")) << broker->log();
  ASSERT_EQ(broker->Stop(), 0);
  ::unlink((data + "/http-address").c_str());

  // In the config file: NAME-file reads flag NAME's value from a file.
  const std::string conf = dir_ + "/broker.toml";
  WriteFileOrDie(conf,
                 absl::StrCat("admin-listen-file = \"", value_file, "\"\n"));
  broker = BrokerProcess::Start(data, {"--config", conf});
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(WaitForFile(data + "/admin-address").empty());
}

}  // namespace
}  // namespace simprov
