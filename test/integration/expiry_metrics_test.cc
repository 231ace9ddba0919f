// What expires, and the fleet's counts, on the real broker's /metrics:
// every value checked exactly against the data dir's certificates, CRL and
// token keys, and against what the CLI and the agent did.
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <time.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/openssl_ptr.h"
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
using ::simprov::testing::WriteSoftSim;

std::string Metrics(const BrokerProcess& broker) {
  auto hp = ParseHostPort(absl::StripAsciiWhitespace(
      ReadFileOrEmpty(broker.data_dir() + "/http-address")));
  if (!hp.ok()) return "";
  httplib::Client client(hp->host, hp->port);
  auto r = client.Get("/metrics");
  return r && r->status == 200 ? r->body : "";
}

// Scrapes until every line is present (the counts are refreshed by the
// broker's sweeper, every 5 s) or 30 s have passed; returns the last
// scrape.
std::string MetricsWith(const BrokerProcess& broker,
                        const std::vector<std::string>& lines) {
  std::string m;
  for (int i = 0; i < 300; ++i) {
    m = Metrics(broker);
    bool all = true;
    for (const std::string& l : lines) all = all && absl::StrContains(m, l);
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return m;
}

// The samples of metric `name`: the text between the name and the value
// (labels, "" for none) -> the value as printed.
std::map<std::string, std::string> Samples(const std::string& m,
                                           const std::string& name) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(m, '\n')) {
    if (!absl::StartsWith(line, name)) continue;
    absl::string_view rest = line.substr(name.size());
    if (!rest.empty() && rest[0] != '{' && rest[0] != ' ') continue;
    size_t sp = rest.rfind(' ');
    out[std::string(rest.substr(0, sp))] = std::string(rest.substr(sp + 1));
  }
  return out;
}

CertInfo CertAt(const std::string& path) {
  auto cert = CertFromPem(ReadFileOrEmpty(path));
  EXPECT_TRUE(cert.ok()) << path;
  return cert.ok() ? DescribeCert(cert->get()) : CertInfo{};
}

std::string Seconds(absl::Time t) {
  return absl::StrCat(absl::ToUnixSeconds(t));
}

class ExpiryMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }
  std::string dir_;
};

TEST_F(ExpiryMetricsTest, CaCrlTokenKeysAndFleetCountsAreExact) {
  auto broker = BrokerProcess::Start(
      dir_ + "/broker", {"--http-listen", "127.0.0.1:0", "--metrics-refresh",
                         "1s", "--cert-ttl", "2d"});
  ASSERT_NE(broker, nullptr);
  const std::string dd = broker->data_dir();

  // Three SIMs, all bootstrapped; the first renews (its first certificate
  // is superseded), the second is revoked, the third suspended.
  std::vector<TestSim> sims;
  std::vector<std::string> paths;
  for (int i = 0; i < 3; ++i) {
    sims.push_back(RandomSim(absl::StrCat(1010000200000LL + i)));
    std::filesystem::create_directories(absl::StrCat(dir_, "/sim", i));
    paths.push_back(WriteSoftSim(absl::StrCat(dir_, "/sim", i), sims.back()));
  }
  broker->Import(sims);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(
        broker->Bootstrap(paths[i], absl::StrCat(dir_, "/dev", i)).exit_code,
        0);
  }
  ProcessResult renew =
      RunProcess({testing::kAgentBin, "renew", "--broker", broker->address(),
                  "--out", dir_ + "/dev0"});
  ASSERT_EQ(renew.exit_code, 0) << renew.err;
  ProcessResult r = broker->Cli({"devices", "revoke", sims[1].imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = broker->Cli({"subscribers", "suspend", sims[2].imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const std::string m =
      MetricsWith(*broker, {"simprov_certificates{status=\"valid\"} 2\n",
                            "simprov_certificates{status=\"revoked\"} 1\n",
                            "simprov_subscribers{status=\"suspended\"} 1\n"});
  // Certificates: sim0's renewal and sim2's are current (suspension does
  // not revoke), sim0's first is superseded, sim1's revoked; all expire in
  // two days: within 7d, not within 1d.
  EXPECT_EQ(
      Samples(m, "simprov_certificates"),
      (std::map<std::string, std::string>{{"{status=\"valid\"}", "2"},
                                          {"{status=\"superseded\"}", "1"},
                                          {"{status=\"revoked\"}", "1"},
                                          {"{status=\"expired\"}", "0"}}))
      << m;
  EXPECT_EQ(Samples(m, "simprov_certificates_expiring"),
            (std::map<std::string, std::string>{{"{within=\"1d\"}", "0"},
                                                {"{within=\"7d\"}", "2"},
                                                {"{within=\"30d\"}", "2"},
                                                {"{within=\"90d\"}", "2"}}));
  EXPECT_EQ(
      Samples(m, "simprov_subscribers"),
      (std::map<std::string, std::string>{{"{status=\"active\"}", "2"},
                                          {"{status=\"suspended\"}", "1"},
                                          {"{status=\"terminated\"}", "0"},
                                          {"{status=\"replaced\"}", "0"}}));

  // The development CA's root and issuing CA, as in the data dir.
  const CertInfo root = CertAt(dd + "/ca.pem");
  const CertInfo issuing = CertAt(dd + "/ca/issuing.pem");
  EXPECT_EQ(
      Samples(m, "simprov_ca_not_after_seconds"),
      (std::map<std::string, std::string>{
          {absl::StrCat("{ca=\"root\",serial=\"", root.serial_hex, "\"}"),
           Seconds(root.not_after)},
          {absl::StrCat("{ca=\"issuing\",serial=\"", issuing.serial_hex, "\"}"),
           Seconds(issuing.not_after)}}));
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_ca_activation_pending 0\n"));
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_ca_activation_time_seconds 0\n"));
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_ready 1\n"));

  // The CRL served (regenerated by the revocation) and its nextUpdate.
  const std::string crl_der = ReadFileOrEmpty(dd + "/ca.crl");
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(crl_der.data());
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(crl_der.size())));
  ASSERT_NE(crl, nullptr);
  struct tm tm = {};
  ASSERT_EQ(ASN1_TIME_to_tm(X509_CRL_get0_nextUpdate(crl.get()), &tm), 1);
  const int64_t next_update = timegm(&tm);
  EXPECT_EQ(
      Samples(m, "simprov_crl_next_update_seconds"),
      (std::map<std::string, std::string>{{"", absl::StrCat(next_update)}}));

  // Token keys: each key in the key file, by kid, when it stops signing.
  auto keys = nlohmann::json::parse(ReadFileOrEmpty(dd + "/tokens/keys.json"));
  std::map<std::string, std::string> want;
  for (const auto& k : keys["keys"]) {
    want[absl::StrCat("{kid=\"", k["kid"].get<std::string>(), "\"}")] =
        absl::StrCat(k["sign_until"].get<int64_t>());
  }
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(Samples(m, "simprov_token_key_not_after_seconds"), want);
}

}  // namespace
}  // namespace simprov
