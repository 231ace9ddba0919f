// End-to-end tests of the fleet lifecycle with the real
// simprov-broker, simprov and simprov-agent binaries: group policies,
// suspend/resume, revocation and the CRL, replacement, IMEI lock, devices
// and the audit trail.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/x509.h"
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

// posix_spawn does not search PATH.
const std::string kOpenssl = "/usr/bin/openssl";

// notBefore is backdated 5 minutes (rounded up to a whole second) and
// notAfter is issuance + ttl (rounded down): their distance is within a
// second of ttl + 5 minutes.
void ExpectLifetime(const CertInfo& info, absl::Duration ttl) {
  absl::Duration d = info.not_after - info.not_before;
  EXPECT_LE(d, ttl + absl::Minutes(5)) << d;
  EXPECT_GE(d, ttl + absl::Minutes(5) - absl::Seconds(1)) << d;
}

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }

  std::unique_ptr<BrokerProcess> StartBroker(std::vector<std::string> extra = {
                                                 "--http-listen",
                                                 "127.0.0.1:0"}) {
    auto b = BrokerProcess::Start(dir_ + "/broker", std::move(extra));
    EXPECT_NE(b, nullptr);
    return b;
  }

  ProcessResult Apply(const BrokerProcess& b, const std::string& json) {
    const std::string path = dir_ + "/groups.json";
    WriteFileOrDie(path, json);
    return b.Cli({"groups", "apply", path});
  }

  ProcessResult Renew(const BrokerProcess& b, const std::string& out) {
    return RunProcess(
        {testing::kAgentBin, "renew", "--broker", b.address(), "--out", out});
  }

  X509Ptr Leaf(const std::string& out) {
    auto leaf = CertFromPem(ReadFileOrEmpty(out + "/device.crt"));
    EXPECT_TRUE(leaf.ok());
    return leaf.ok() ? std::move(*leaf) : nullptr;
  }

  nlohmann::json BootstrapJson(const std::string& out) {
    return nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"),
                                 nullptr, false);
  }

  // `simprov audit --json ...` as parsed lines.
  std::vector<nlohmann::json> Audit(const BrokerProcess& b,
                                    std::vector<std::string> args) {
    args.insert(args.begin(), {"audit", "--json"});
    ProcessResult r = b.Cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<nlohmann::json> out;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (line.empty()) continue;
      out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }

  std::string HttpUrl(const BrokerProcess& b) {
    std::string addr = ReadFileOrEmpty(b.data_dir() + "/http-address");
    absl::StripTrailingAsciiWhitespace(&addr);
    return addr;
  }

  std::string dir_;
};

bool Has(const std::vector<nlohmann::json>& audit, const std::string& actor,
         const std::string& action, const std::string& target,
         const std::string& result, const std::string& reason_part = "") {
  for (const auto& e : audit) {
    if (e["actor"] == actor && e["action"] == action && e["target"] == target &&
        e["result"] == result &&
        absl::StrContains(e["reason"].get<std::string>(), reason_part)) {
      return true;
    }
  }
  return false;
}

TEST_F(FleetTest, TemplatesSetSubjectSansAndLifetimeAtIssuanceAndRenewal) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000006001");
  broker->Import({sim});
  ProcessResult r = Apply(*broker, R"({"groups": [{"name": "cams",
      "subject": "CN=cam-#{imsi},O=Acme #{group}", "cert_ttl": "7200s",
      "san": {"dns": ["#{device_id}.cams.example.com"],
              "uri": ["urn:acme:thing:#{device_id}"]},
      "key_types": ["p256", "p384"],
      "token": {"audiences": ["https://api.example.com"], "max_ttl": "1h",
                "identifiers": ["imsi", "iccid"]},
      "registries": [{"target": "mqtt", "thing": "cam-#{device_id}",
                      "topics": ["devices/#{device_id}/#"]}],
      "registration": "async", "imei_lock": false}]})");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "applied 1 groups: cams\n");
  r = broker->Cli({"subscribers", "set-group", sim.imsi, "cams"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const std::string out = dir_ + "/device";
  r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  X509Ptr leaf = Leaf(out);
  ASSERT_NE(leaf, nullptr);
  CertInfo info = DescribeCert(leaf.get());
  EXPECT_EQ(info.subject, "O=Acme cams,CN=cam-" + sim.imsi);
  EXPECT_EQ(info.uri_sans,
            (std::vector<std::string>{"urn:simprov:device:" + sim.imsi,
                                      "urn:acme:thing:" + sim.imsi}));
  EXPECT_EQ(info.dns_sans,
            std::vector<std::string>{sim.imsi + ".cams.example.com"});
  // notBefore is backdated 5 minutes; notAfter is issuance + 7200s.
  ExpectLifetime(info, absl::Seconds(7200));
  EXPECT_EQ(BootstrapJson(out)["subject"], "O=Acme cams,CN=cam-" + sim.imsi);

  // The CRL Distribution Points carry the broker's HTTP URL.
  const std::string der = ReadFileOrEmpty(out + "/device.crt");
  ProcessResult text = RunProcess(
      {kOpenssl, "x509", "-in", out + "/device.crt", "-noout", "-text"});
  EXPECT_TRUE(absl::StrContains(
      text.out, "URI:http://" + HttpUrl(*broker) + "/crl/ca.crl"))
      << text.out;

  // A changed policy applies at the next renewal.
  r = Apply(*broker, R"({"groups": [{"name": "cams",
      "subject": "CN=#{device_id}", "cert_ttl": "1h"}]})");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Renew(*broker, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  info = DescribeCert(Leaf(out).get());
  EXPECT_EQ(info.subject, "CN=" + sim.imsi);
  EXPECT_EQ(info.uri_sans,
            std::vector<std::string>{"urn:simprov:device:" + sim.imsi});
  EXPECT_TRUE(info.dns_sans.empty());
  ExpectLifetime(info, absl::Hours(1));

  // A key type outside the policy is refused.
  r = Apply(*broker,
            R"({"groups": [{"name": "cams", "key_types": ["ed25519"]}]})");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Renew(*broker, out);
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "key type P-256 is not allowed"))
      << r.err;
}

TEST_F(FleetTest, UnknownPlaceholderOrKeyIsRefusedAndNothingApplied) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  ProcessResult r = Apply(*broker, R"({"groups": [
      {"name": "good", "subject": "CN=#{imsi}"},
      {"name": "bad", "subject": "CN=cam-#{serial}"}]})");
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "unknown placeholder #{serial}"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "group bad")) << r.err;
  r = Apply(*broker, R"({"groups": [{"name": "x", "colour": "red"}]})");
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "unknown key \"colour\"")) << r.err;
  r = Apply(*broker,
            R"({"groups": [{"name": "x", "san": {"uri": ["u:#{nope}"]}}]})");
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "#{nope}")) << r.err;
  // All or nothing: "good" was not applied either.
  r = broker->Cli({"groups", "show", "good"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "no group named good")) << r.err;
  r = broker->Cli({"groups", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\"name\":\"default\"")) << r.out;
}

TEST_F(FleetTest, ImportOfAnUnknownGroupNamesTheLine) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000006002");
  const std::string csv = dir_ + "/subs.csv";
  WriteFileOrDie(csv, absl::StrCat("imsi,ki,opc,group\n", sim.imsi, ",", sim.k,
                                   ",", sim.opc, ",nosuch\n"));
  ProcessResult r = broker->Cli({"subscribers", "import", csv});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "line 2: group nosuch does not exist"))
      << r.err;
  ASSERT_EQ(Apply(*broker, R"({"groups": [{"name": "nosuch"}]})").exit_code, 0);
  r = broker->Cli({"subscribers", "import", csv});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A group in use cannot be deleted; an empty one can.
  r = broker->Cli({"groups", "delete", "nosuch"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "still has 1 subscribers")) << r.err;
  ASSERT_EQ(
      broker->Cli({"subscribers", "set-group", sim.imsi, "default"}).exit_code,
      0);
  r = broker->Cli({"groups", "delete", "nosuch"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = broker->Cli({"groups", "delete", "default"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  r = broker->Cli({"subscribers", "set-group", sim.imsi, "nosuch"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "no group named nosuch")) << r.err;
}

TEST_F(FleetTest, SuspendRefusesBootstrapAndRenewalUntilResumed) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000006003");
  broker->Import({sim});
  const std::string sim_path = WriteSoftSim(dir_, sim);
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(sim_path, out).exit_code, 0);

  ProcessResult r = broker->Cli({"subscribers", "suspend", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "subscriber " + sim.imsi + " is suspended\n");
  // Bootstrap: a decoy challenge, refused like an unknown IMSI.
  r = broker->Bootstrap(sim_path, dir_ + "/again", {"--force"});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  r = Renew(*broker, out);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "subscriber is suspended")) << r.err;
  r = broker->Cli({"subscribers", "suspend", sim.imsi});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(
      r.err, "cannot suspend: subscriber " + sim.imsi + " is suspended"))
      << r.err;

  auto audit = Audit(*broker, {"--imsi", sim.imsi});
  EXPECT_TRUE(Has(audit, "local", "suspend", sim.imsi, "ok"));
  EXPECT_TRUE(Has(audit, sim.imsi, "bootstrap", sim.imsi, "refused",
                  "subscriber is suspended"));
  EXPECT_TRUE(Has(audit, sim.imsi, "renew", sim.imsi, "refused",
                  "subscriber is suspended"));

  r = broker->Cli({"subscribers", "resume", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Renew(*broker, out).exit_code, 0);
  EXPECT_EQ(broker->Bootstrap(sim_path, out, {"--force"}).exit_code, 0);

  // Terminated is final: resume is refused.
  ASSERT_EQ(broker->Cli({"subscribers", "terminate", sim.imsi}).exit_code, 0);
  r = broker->Cli({"subscribers", "resume", sim.imsi});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "is terminated")) << r.err;
  EXPECT_EQ(Renew(*broker, out).exit_code, kExitRefused);
  EXPECT_EQ(broker->Bootstrap(sim_path, out, {"--force"}).exit_code,
            kExitRefused);
}

TEST_F(FleetTest, RevokedCertificateIsOnTheSignedCrlAndRenewalIsRefused) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000006004");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(WriteSoftSim(dir_, sim), out).exit_code, 0);
  const std::string serial = BootstrapJson(out)["serial"];

  ProcessResult r =
      broker->Cli({"devices", "revoke", sim.imsi, "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "revoked 1 certificate: " + serial + "; CRL regenerated\n");
  r = Renew(*broker, out);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.err, "certificate " + serial + " was revoked (keyCompromise)"))
      << r.err;

  // The CRL over HTTP, right after the command returned.
  httplib::Client http("http://" + HttpUrl(*broker));
  auto got = http.Get("/crl/ca.crl");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->get_header_value("Content-Type"), "application/pkix-crl");
  const std::string crl = dir_ + "/ca.crl";
  WriteFileOrDie(crl, got->body);
  const std::string issuers = dir_ + "/issuers.pem";
  WriteFileOrDie(issuers,
                 ReadFileOrEmpty(broker->data_dir() + "/ca/issuing.pem") +
                     ReadFileOrEmpty(broker->data_dir() + "/ca.pem"));
  ProcessResult text = RunProcess({kOpenssl, "crl", "-inform", "DER", "-in",
                                   crl, "-CAfile", issuers, "-noout", "-text"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(absl::StrContains(text.err + text.out, "verify OK")) << text.err;
  EXPECT_TRUE(absl::StrContains(
      text.out, "Serial Number: " + absl::AsciiStrToUpper(serial)))
      << text.out;
  EXPECT_TRUE(absl::StrContains(text.out, "Key Compromise")) << text.out;
  EXPECT_TRUE(absl::StrContains(text.out, "Next Update:")) << text.out;
  EXPECT_TRUE(absl::StrContains(text.out, "X509v3 CRL Number")) << text.out;

  // Negative: a CRL with one flipped signature byte does not verify.
  std::string tampered = got->body;
  tampered[tampered.size() - 3] ^= 0x01;
  WriteFileOrDie(crl, tampered);
  text = RunProcess({kOpenssl, "crl", "-inform", "DER", "-in", crl, "-CAfile",
                     issuers, "-noout"});
  EXPECT_FALSE(absl::StrContains(text.err + text.out, "verify OK"));

  // A fresh bootstrap with the SIM gives a new, valid certificate; revoking
  // it by serial lists both.
  ASSERT_EQ(
      broker->Bootstrap(WriteSoftSim(dir_, sim), out, {"--force"}).exit_code,
      0);
  const std::string second = BootstrapJson(out)["serial"];
  r = broker->Cli({"devices", "revoke", "--serial", second});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  got = http.Get("/crl/ca.crl");
  ASSERT_TRUE(got);
  WriteFileOrDie(crl, got->body);
  text = RunProcess({kOpenssl, "crl", "-inform", "DER", "-in", crl, "-CAfile",
                     issuers, "-noout", "-text"});
  EXPECT_TRUE(absl::StrContains(text.out, absl::AsciiStrToUpper(serial)));
  EXPECT_TRUE(absl::StrContains(text.out, absl::AsciiStrToUpper(second)));
  // The persisted copy is the served one.
  EXPECT_EQ(ReadFileOrEmpty(broker->data_dir() + "/ca.crl"), got->body);

  r = broker->Cli({"devices", "revoke", sim.imsi, "--reason", "stolen"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "unknown revocation reason \"stolen\""))
      << r.err;
  r = broker->Cli({"devices", "revoke", "--serial", "0badc0de"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  r = broker->Cli({"devices", "revoke"});
  EXPECT_EQ(r.exit_code, kExitUsage);

  auto audit = Audit(*broker, {"--imsi", sim.imsi});
  EXPECT_TRUE(Has(audit, "local", "revoke", sim.imsi, "ok",
                  "reason=keyCompromise serial=" + serial));
  EXPECT_TRUE(Has(audit, sim.imsi, "renew", sim.imsi, "refused",
                  "revoked certificate " + serial));
}

TEST_F(FleetTest, ReplacedSimIsRefusedAndTheNewOneInheritsTheDevice) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim old_sim = RandomSim("001010000006005");
  TestSim new_sim = RandomSim("001010000006006");
  broker->Import({old_sim, new_sim});
  ASSERT_EQ(Apply(*broker, R"({"groups": [{"name": "cams",
      "subject": "CN=cam-#{imsi}", "cert_ttl": "2h",
      "san": {"uri": ["urn:acme:thing:cam-#{device_id}"]},
      "registries": [{"target": "mqtt", "thing": "cam-#{device_id}",
                      "topics": ["devices/#{device_id}/#"]}]}]})")
                .exit_code,
            0);
  ASSERT_EQ(
      broker->Cli({"subscribers", "set-group", old_sim.imsi, "cams"}).exit_code,
      0);
  const std::string old_out = dir_ + "/old";
  const std::string old_path = WriteSoftSim(dir_, old_sim);
  ASSERT_EQ(broker->Bootstrap(old_path, old_out).exit_code, 0);
  const std::string old_serial = BootstrapJson(old_out)["serial"];

  ProcessResult r =
      broker->Cli({"devices", "replace", old_sim.imsi, new_sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "device " + old_sim.imsi + ": SIM " +
                                           old_sim.imsi + " replaced by " +
                                           new_sim.imsi))
      << r.out;
  // The old SIM is refused: renewal and bootstrap.
  r = Renew(*broker, old_out);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "was revoked (superseded)")) << r.err;
  EXPECT_EQ(broker->Bootstrap(old_path, old_out, {"--force"}).exit_code,
            kExitRefused);

  // The new SIM provisions by itself as the same device, same policy.
  const std::string new_out = dir_ + "/new";
  r = broker->Bootstrap(WriteSoftSim(dir_, new_sim), new_out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = BootstrapJson(new_out);
  EXPECT_EQ(j["device_id"], old_sim.imsi);
  EXPECT_EQ(j["imsi"], new_sim.imsi);
  CertInfo info = DescribeCert(Leaf(new_out).get());
  EXPECT_EQ(info.subject, "CN=cam-" + new_sim.imsi);  // its own CN
  // The thing name built on #{device_id} is the old one's.
  EXPECT_EQ(info.uri_sans,
            (std::vector<std::string>{"urn:simprov:device:" + old_sim.imsi,
                                      "urn:acme:thing:cam-" + old_sim.imsi}));
  ExpectLifetime(info, absl::Hours(2));

  r = broker->Cli({"devices", "show", old_sim.imsi, "--json"});  // device id
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto dev = nlohmann::json::parse(r.out);
  EXPECT_EQ(dev["imsi"], new_sim.imsi);
  EXPECT_EQ(dev["group"], "cams");
  EXPECT_EQ(dev["status"], "active");
  EXPECT_EQ(dev["serial"], BootstrapJson(new_out)["serial"]);
  EXPECT_EQ(dev["cert_status"], "valid");
  EXPECT_EQ(dev["registry_status"], "-");
  // Asked for by IMSI, the old SIM shows its state.
  r = broker->Cli({"subscribers", "show", old_sim.imsi});
  EXPECT_TRUE(absl::StrContains(r.out, "status:     replaced")) << r.out;

  // An operator reactivates the old SIM: it becomes a device of its own.
  ASSERT_EQ(broker->Cli({"subscribers", "resume", old_sim.imsi}).exit_code, 0);
  r = broker->Bootstrap(old_path, old_out, {"--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string reborn = BootstrapJson(old_out)["device_id"];
  EXPECT_NE(reborn, old_sim.imsi);
  EXPECT_TRUE(absl::StartsWith(reborn, old_sim.imsi + "-")) << reborn;

  auto audit = Audit(*broker, {"--imsi", old_sim.imsi});
  EXPECT_TRUE(Has(audit, "local", "replace", old_sim.imsi, "ok",
                  "new_imsi=" + new_sim.imsi + " revoked=" + old_serial));
}

TEST_F(FleetTest, ImeiLockBindsTheFirstImeiUntilCleared) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000006007");
  broker->Import({sim});
  ASSERT_EQ(Apply(*broker, R"({"groups": [{"name": "locked",
      "imei_lock": true, "subject": "CN=#{imsi}-#{imei}"}]})")
                .exit_code,
            0);
  ASSERT_EQ(
      broker->Cli({"subscribers", "set-group", sim.imsi, "locked"}).exit_code,
      0);
  const std::string a = "490154203237518";
  const std::string b = "356938035643809";
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(
      WriteSoftSim(dir_, sim, ", \"imei\": \"" + a + "\""), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(DescribeCert(Leaf(out).get()).subject, "CN=" + sim.imsi + "-" + a);
  // Renewal keeps the bound IMEI for #{imei}.
  ASSERT_EQ(Renew(*broker, out).exit_code, 0);
  EXPECT_EQ(DescribeCert(Leaf(out).get()).subject, "CN=" + sim.imsi + "-" + a);

  // The SIM in another device is refused, and so is one without an IMEI.
  r = broker->Bootstrap(WriteSoftSim(dir_, sim, ", \"imei\": \"" + b + "\""),
                        dir_ + "/other");
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "IMEI lock")) << r.err;
  r = broker->Bootstrap(WriteSoftSim(dir_, sim), dir_ + "/other");
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  r = broker->Cli({"devices", "show", sim.imsi, "--json"});
  EXPECT_EQ(nlohmann::json::parse(r.out)["imei"], a);

  auto audit = Audit(*broker, {"--imsi", sim.imsi});
  EXPECT_TRUE(Has(audit, sim.imsi, "bootstrap", sim.imsi, "refused",
                  "IMEI lock: IMEI " + b + " is not the bound " + a));
  EXPECT_TRUE(Has(audit, sim.imsi, "bootstrap", sim.imsi, "refused",
                  "IMEI lock: no IMEI sent"));

  // Cleared: the next IMEI seen binds, the old one is then refused.
  r = broker->Cli({"subscribers", "clear-imei-lock", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = broker->Bootstrap(WriteSoftSim(dir_, sim, ", \"imei\": \"" + b + "\""),
                        dir_ + "/other");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = broker->Bootstrap(WriteSoftSim(dir_, sim, ", \"imei\": \"" + a + "\""),
                        out, {"--force"});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  audit = Audit(*broker, {"--imsi", sim.imsi});
  EXPECT_TRUE(
      Has(audit, "local", "clear-imei-lock", sim.imsi, "ok", "was=" + a));
}

TEST_F(FleetTest, AuditNamesActorAndTargetAndPages) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  TestSim one = RandomSim("001010000006008");
  TestSim two = RandomSim("001010000006009");
  broker->Import({one, two});
  ASSERT_EQ(broker->Bootstrap(WriteSoftSim(dir_, one), dir_ + "/one").exit_code,
            0);
  ASSERT_EQ(broker->Cli({"subscribers", "suspend", two.imsi}).exit_code, 0);

  auto all = Audit(*broker, {});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0]["actor"], "local");
  EXPECT_EQ(all[0]["action"], "import");
  EXPECT_EQ(all[0]["reason"], "2 subscribers");
  EXPECT_EQ(all[1]["actor"], one.imsi);  // device events: the IMSI acts
  EXPECT_EQ(all[1]["action"], "bootstrap");
  EXPECT_EQ(all[1]["target"], one.imsi);
  EXPECT_EQ(all[1]["result"], "ok");
  EXPECT_TRUE(absl::StrContains(
      all[1]["reason"].get<std::string>(),
      "serial=" + BootstrapJson(dir_ + "/one")["serial"].get<std::string>()));
  EXPECT_EQ(all[2]["actor"], "local");
  EXPECT_EQ(all[2]["action"], "suspend");
  EXPECT_EQ(all[2]["target"], two.imsi);
  for (const auto& e : all) EXPECT_TRUE(e.contains("time"));

  // --imsi matches actor or target.
  auto only_two = Audit(*broker, {"--imsi", two.imsi});
  ASSERT_EQ(only_two.size(), 1u);
  EXPECT_EQ(only_two[0]["action"], "suspend");
  // --since in the future: nothing; an hour ago: everything.
  EXPECT_TRUE(Audit(*broker, {"--since", "2999-01-01T00:00:00Z"}).empty());
  EXPECT_EQ(Audit(*broker, {"--since", "1h"}).size(), 3u);
  ProcessResult r = broker->Cli({"audit", "--since", "yesterday"});
  EXPECT_EQ(r.exit_code, kExitUsage);

  // Paging: a full page prints the cursor; --after continues.
  r = broker->Cli({"audit", "--json", "--limit", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2);
  const std::string cursor = std::to_string(all[1]["id"].get<int64_t>());
  EXPECT_EQ(r.err, "next page: --after " + cursor + "\n");
  auto rest = Audit(*broker, {"--after", cursor});
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0]["action"], "suspend");

  // Every list pages and speaks JSON.
  r = broker->Cli({"subscribers", "list", "--json", "--limit", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["imsi"], one.imsi);
  EXPECT_EQ(r.err, "next page: --after " + one.imsi + "\n");
  r = broker->Cli({"subscribers", "list", "--json", "--after", one.imsi});
  EXPECT_EQ(nlohmann::json::parse(r.out)["imsi"], two.imsi);
  r = broker->Cli({"devices", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto dev = nlohmann::json::parse(r.out);  // only the provisioned one
  EXPECT_EQ(dev["imsi"], one.imsi);
  EXPECT_EQ(dev["device_id"], one.imsi);
  EXPECT_NE(dev["last_seen"], "");
  r = broker->Cli({"devices", "list"});
  EXPECT_TRUE(absl::StartsWith(r.out, "IMSI ")) << r.out;
  r = broker->Cli({"devices", "show", "no-such-device"});
  EXPECT_EQ(r.exit_code, kExitUsage);
}

TEST_F(FleetTest, WithoutHttpListenerCertificatesCarryNoCrlUrlUnlessPublicUrl) {
  auto broker = StartBroker({});
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000006010");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(WriteSoftSim(dir_, sim), out).exit_code, 0);
  ProcessResult text = RunProcess(
      {kOpenssl, "x509", "-in", out + "/device.crt", "-noout", "-text"});
  EXPECT_FALSE(absl::StrContains(text.out, "CRL Distribution")) << text.out;
  broker->Stop();
  broker = StartBroker({"--public-url", "https://pki.example.com/simprov/"});
  ASSERT_NE(broker, nullptr);
  ASSERT_EQ(
      broker->Bootstrap(WriteSoftSim(dir_, sim), out, {"--force"}).exit_code,
      0);
  text = RunProcess(
      {kOpenssl, "x509", "-in", out + "/device.crt", "-noout", "-text"});
  EXPECT_TRUE(absl::StrContains(
      text.out, "URI:https://pki.example.com/simprov/crl/ca.crl"))
      << text.out;
}

}  // namespace
}  // namespace simprov
