// Remote admin: the admin API over mTLS with admin certificates, their
// roles and revocation, and every admin RPC's role check. Real binaries on
// loopback.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/admin/admin_auth.h"
#include "broker/ca/ca.h"
#include "broker/cli/admin_client.h"
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
using ::simprov::testing::RunOk;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

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
  // In the store (shared by every broker on it), not a file of the data dir.
  EXPECT_FALSE(PathExists(dir_ + "/broker/admin-ca/revoked"));
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

  // A data dir of an older version kept revocations in a file: imported
  // once at start, the file renamed.
  auto viewer = CertsFromPem(ReadFileOrEmpty(Certs("viewer") + "/admin.pem"));
  ASSERT_TRUE(viewer.ok() && !viewer->empty());
  const std::string viewer_serial =
      DescribeCert(viewer->front().get()).serial_hex;
  ASSERT_EQ(broker_->Stop(), 0);
  WriteFileOrDie(dir_ + "/broker/admin-ca/revoked",
                 absl::AsciiStrToUpper(viewer_serial) + "\n");
  broker_ =
      BrokerProcess::Start(dir_ + "/broker", {"--admin-listen", "127.0.0.1:0"});
  ASSERT_NE(broker_, nullptr);
  admin_ = std::string(absl::StripAsciiWhitespace(
      ReadFileOrEmpty(dir_ + "/broker/admin-address")));
  EXPECT_FALSE(PathExists(dir_ + "/broker/admin-ca/revoked"));
  EXPECT_TRUE(PathExists(dir_ + "/broker/admin-ca/revoked.imported"));
  r = Remote(Certs("viewer"), {"admin", "whoami"});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.out;
  EXPECT_TRUE(absl::StrContains(
      r.err, "admin certificate " + viewer_serial + " is revoked"))
      << r.err;
  EXPECT_EQ(Remote(Certs("operator"), {"admin", "whoami"}).exit_code,
            kExitRefused);
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
}  // namespace
}  // namespace simprov
