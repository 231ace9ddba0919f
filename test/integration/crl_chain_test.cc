// CRLs for the whole chain, checked the way relying parties check them:
// `openssl verify -crl_check_all` (what nginx's ssl_crl does: every
// certificate of the chain needs its issuer's CRL) with the CRLs fetched
// over HTTP from the URLs the certificates name, for the development CA
// and across an operator CA rollover (`simprov ca activate`).
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
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

constexpr char kOpenssl[] = "/usr/bin/openssl";

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

// The URI of a certificate's CRL Distribution Points ("" if none).
std::string CdpOf(const std::string& cert_path) {
  ProcessResult r = RunProcess({kOpenssl, "x509", "-noout", "-ext",
                                "crlDistributionPoints", "-in", cert_path});
  const size_t at = r.out.find("URI:");
  if (at == std::string::npos) return "";
  const size_t start = at + 4;
  size_t end = start;
  while (end < r.out.size() && !absl::ascii_isspace(r.out[end])) ++end;
  return r.out.substr(start, end - start);
}

// GET of an http://HOST:PORT/PATH URL; the body, "" unless 200.
std::string Fetch(const std::string& url) {
  constexpr absl::string_view kScheme = "http://";
  if (!absl::StartsWith(url, kScheme)) return "";
  const std::string rest = url.substr(kScheme.size());
  const size_t colon = rest.find(':');
  const size_t slash = rest.find('/');
  if (colon == std::string::npos || slash == std::string::npos || colon == 0 ||
      slash < colon) {
    return "";
  }
  int port = 0;
  if (!absl::SimpleAtoi(rest.substr(colon + 1, slash - colon - 1), &port)) {
    return "";
  }
  httplib::Client client(rest.substr(0, colon), port);
  auto r = client.Get(rest.substr(slash));
  return r && r->status == 200 ? r->body : "";
}

// Fetches the DER CRL at `url` into `pem_path` (PEM, for -CRLfile).
void FetchCrl(const std::string& url, const std::string& pem_path) {
  const std::string der = Fetch(url);
  ASSERT_FALSE(der.empty()) << url;
  WriteFileOrDie(pem_path + ".der", der);
  RunOk({kOpenssl, "crl", "-inform", "DER", "-in", pem_path + ".der", "-out",
         pem_path});
}

// openssl verify -crl_check_all of `cert` against the root `anchor`, with
// `untrusted` intermediates and the CRL files.
ProcessResult Verify(const std::string& anchor, const std::string& untrusted,
                     const std::vector<std::string>& crls,
                     const std::string& cert) {
  std::vector<std::string> argv = {kOpenssl,  "verify",   "-crl_check_all",
                                   "-CAfile", anchor,     "-untrusted",
                                   untrusted, "-purpose", "sslclient"};
  for (const std::string& c : crls) {
    argv.push_back("-CRLfile");
    argv.push_back(c);
  }
  argv.push_back(cert);
  return RunProcess(argv);
}

bool Ok(const ProcessResult& r) {
  return r.exit_code == 0 && absl::StrContains(r.out, ": OK");
}
bool Revoked(const ProcessResult& r) {
  return r.exit_code != 0 &&
         absl::StrContains(r.out + r.err, "certificate revoked");
}

std::vector<TestSim> ImportAndBootstrap(const BrokerProcess& broker,
                                        const std::string& dir, int n,
                                        int first) {
  std::vector<TestSim> sims;
  for (int i = 0; i < n; ++i) {
    sims.push_back(RandomSim(absl::StrCat(1010000300000LL + first + i)));
  }
  broker.Import(sims);
  for (int i = 0; i < n; ++i) {
    const std::string d = absl::StrCat(dir, "/sim", first + i);
    std::filesystem::create_directories(d);
    EXPECT_EQ(broker
                  .Bootstrap(WriteSoftSim(d, sims[i]),
                             absl::StrCat(dir, "/dev", first + i))
                  .exit_code,
              0);
  }
  return sims;
}

TEST_F(OpsAdminTest, DevelopmentChainVerifiesWithCrlCheckAll) {
  const int port = FreePort();
  ASSERT_NE(port, 0);
  auto broker = BrokerProcess::Start(
      dir_ + "/broker", {"--http-listen", absl::StrCat("127.0.0.1:", port)});
  ASSERT_NE(broker, nullptr);
  const std::string dd = broker->data_dir();
  std::vector<TestSim> sims = ImportAndBootstrap(*broker, dir_, 2, 0);
  ProcessResult r = broker->Cli({"devices", "revoke", sims[1].imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The issuing CA names the root's CRL, the devices the issuing CA's.
  const std::string base = absl::StrCat("http://127.0.0.1:", port);
  EXPECT_EQ(CdpOf(dd + "/ca/issuing.pem"), base + "/crl/root.crl");
  EXPECT_EQ(CdpOf(dir_ + "/dev0/device.crt"), base + "/crl/ca.crl");
  FetchCrl(CdpOf(dd + "/ca/issuing.pem"), dir_ + "/root.crl");
  FetchCrl(CdpOf(dir_ + "/dev0/device.crt"), dir_ + "/ca.crl");
  const std::string chain = dd + "/ca/chain.pem";
  const std::vector<std::string> crls = {dir_ + "/root.crl", dir_ + "/ca.crl"};

  r = Verify(dd + "/ca.pem", chain, crls, dir_ + "/dev0/device.crt");
  EXPECT_TRUE(Ok(r)) << r.out << r.err;
  r = Verify(dd + "/ca.pem", chain, crls, dir_ + "/dev1/device.crt");
  EXPECT_TRUE(Revoked(r)) << r.out << r.err;
  // Without the root's CRL the whole-chain check cannot pass.
  r = Verify(dd + "/ca.pem", chain, {dir_ + "/ca.crl"},
             dir_ + "/dev0/device.crt");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.out + r.err, "unable to get certificate CRL"))
      << r.out << r.err;

  // /crl/chain.pem (and DIR/crl-chain.pem): one file for ssl_crl.
  WriteFileOrDie(dir_ + "/chain-crl.pem", Fetch(base + "/crl/chain.pem"));
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/chain-crl.pem"),
            ReadFileOrEmpty(dd + "/crl-chain.pem"));
  r = Verify(dd + "/ca.pem", chain, {dir_ + "/chain-crl.pem"},
             dir_ + "/dev0/device.crt");
  EXPECT_TRUE(Ok(r)) << r.out << r.err;
  r = Verify(dd + "/ca.pem", chain, {dir_ + "/chain-crl.pem"},
             dir_ + "/dev1/device.crt");
  EXPECT_TRUE(Revoked(r)) << r.out << r.err;
  // The issuing CA's CRL by its key id is the one served as ca.crl.
  auto issuing = CertFromPem(ReadFileOrEmpty(dd + "/ca/issuing.pem"));
  ASSERT_TRUE(issuing.ok());
  EXPECT_EQ(Fetch(absl::StrCat(
                base, "/crl/issuing-",
                HexEncode(X509_get0_subject_key_id(issuing->get())->data,
                          X509_get0_subject_key_id(issuing->get())->length),
                ".crl")),
            Fetch(base + "/crl/ca.crl"));
  EXPECT_EQ(Fetch(base + "/crl/issuing-00ff00ff.crl"), "");
}

// The operator's root and intermediate CRLs, made with `openssl ca`.
std::string OperatorCrls(const OperatorPki& pki) {
  const std::string conf = pki.dir + "/crl.cnf";
  WriteFileOrDie(pki.dir + "/index.txt", "");
  WriteFileOrDie(conf,
                 absl::StrCat("[ca]\ndefault_ca = d\n[d]\ndatabase = ", pki.dir,
                              "/index.txt\ndefault_md = sha256\n"));
  std::string pem;
  for (const char* ca : {"root", "int"}) {
    const std::string out = absl::StrCat(pki.dir, "/", ca, ".crl");
    RunOk({kOpenssl, "ca", "-gencrl", "-config", conf, "-keyfile",
           absl::StrCat(pki.dir, "/", ca, ".key"), "-cert",
           absl::StrCat(pki.dir, "/", ca, ".pem"), "-crldays", "30", "-out",
           out});
    pem += ReadFileOrEmpty(out);
  }
  return pem;
}

TEST_F(OpsAdminTest, EveryIssuingCaKeepsItsCrlAcrossARollover) {
  OperatorPki old_pki = MakePki(dir_ + "/old", "OldCo");
  OperatorPki new_pki = MakePki(dir_ + "/new", "NewCo");
  // The operator's CRLs above the issuing CAs: OldCo's first, both once
  // NewCo is staged (a CRL of a CA the broker does not have is refused).
  const std::string old_crls = dir_ + "/old-crls.pem";
  WriteFileOrDie(old_crls, OperatorCrls(old_pki));
  const std::string root_crls = dir_ + "/root-crls.pem";
  WriteFileOrDie(root_crls, ReadFileOrEmpty(old_crls) + OperatorCrls(new_pki));
  const std::string data = dir_ + "/broker";
  std::vector<std::string> flags = {"--http-listen", "127.0.0.1:0",
                                    "--ca-root-crl", old_crls,
                                    "--ca-cert",     old_pki.issuing_pem,
                                    "--ca-key",      old_pki.issuing_key,
                                    "--ca-chain",    old_pki.chain_pem};
  auto broker = BrokerProcess::Start(data, flags);
  ASSERT_NE(broker, nullptr);
  std::vector<TestSim> sims = ImportAndBootstrap(*broker, dir_, 2, 0);
  // dev0's OldCo certificate, kept: it stays valid (superseded) after dev0
  // renews under NewCo.
  const std::string old_cert = dir_ + "/dev0-oldco.crt";
  WriteFileOrDie(old_cert, ReadFileOrEmpty(dir_ + "/dev0/device.crt"));
  ASSERT_EQ(broker->Stop(), 0);

  flags = {"--http-listen",   "127.0.0.1:0",         "--ca-root-crl",
           root_crls,         "--ca-cert",           new_pki.issuing_pem,
           "--ca-key",        new_pki.issuing_key,   "--ca-chain",
           new_pki.chain_pem, "--ca-activate-after", "1h"};
  broker = BrokerProcess::Start(data, flags);
  ASSERT_NE(broker, nullptr);
  ProcessResult r = broker->Cli({"ca", "activate"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunProcess({testing::kAgentBin, "renew", "--broker", broker->address(),
                  "--out", dir_ + "/dev0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // dev1 (an OldCo certificate) is revoked after the rollover.
  r = broker->Cli({"devices", "revoke", sims[1].imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto old_issuing = CertFromPem(ReadFileOrEmpty(old_pki.issuing_pem));
  ASSERT_TRUE(old_issuing.ok());
  // Both operators' issuing CAs have serial 3: CRLs and kept keys go by
  // key id.
  const std::string old_key_id =
      HexEncode(X509_get0_subject_key_id(old_issuing->get())->data,
                X509_get0_subject_key_id(old_issuing->get())->length);
  auto check = [&](const BrokerProcess& b) {
    const std::string base =
        "http://" + std::string(absl::StripAsciiWhitespace(
                        ReadFileOrEmpty(b.data_dir() + "/http-address")));
    // The old issuing CA's CRL, signed by it, by its key id.
    FetchCrl(absl::StrCat(base, "/crl/issuing-", old_key_id, ".crl"),
             dir_ + "/old-issuing.crl");
    const std::string der = ReadFileOrEmpty(dir_ + "/old-issuing.crl.der");
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
    ASSERT_NE(crl, nullptr);
    EXPECT_EQ(X509_CRL_verify(crl.get(), X509_get0_pubkey(old_issuing->get())),
              1)
        << RunProcess({kOpenssl, "crl", "-noout", "-text", "-in",
                       dir_ + "/old-issuing.crl"})
               .out
        << RunProcess({kOpenssl, "x509", "-noout", "-text", "-in",
                       old_pki.issuing_pem})
               .out;
    WriteFileOrDie(dir_ + "/chain-crl.pem", Fetch(base + "/crl/chain.pem"));
    const std::vector<std::string> crls = {dir_ + "/chain-crl.pem"};
    const std::string old_chain = dir_ + "/old-untrusted.pem";
    WriteFileOrDie(old_chain, ReadFileOrEmpty(old_pki.issuing_pem) +
                                  ReadFileOrEmpty(old_pki.dir + "/int.pem"));
    const std::string new_chain = dir_ + "/new-untrusted.pem";
    WriteFileOrDie(new_chain, ReadFileOrEmpty(new_pki.issuing_pem) +
                                  ReadFileOrEmpty(new_pki.dir + "/int.pem"));
    ProcessResult ok_new =
        Verify(new_pki.root_pem, new_chain, crls, dir_ + "/dev0/device.crt");
    EXPECT_TRUE(Ok(ok_new)) << ok_new.out << ok_new.err;
    ProcessResult ok_old = Verify(old_pki.root_pem, old_chain, crls, old_cert);
    EXPECT_TRUE(Ok(ok_old)) << ok_old.out << ok_old.err;
    ProcessResult revoked =
        Verify(old_pki.root_pem, old_chain, crls, dir_ + "/dev1/device.crt");
    EXPECT_TRUE(Revoked(revoked)) << revoked.out << revoked.err;
  };
  check(*broker);
  // After a restart the retired CA's kept key still signs its CRL.
  ASSERT_EQ(broker->Stop(), 0);
  broker = BrokerProcess::Start(
      data, {"--http-listen", "127.0.0.1:0", "--ca-root-crl", root_crls});
  ASSERT_NE(broker, nullptr);
  check(*broker);

  // A root CRL file signed by no CA of the broker is refused at start.
  OperatorPki stranger = MakePki(dir_ + "/stranger", "Stranger");
  WriteFileOrDie(dir_ + "/stranger.pem", OperatorCrls(stranger));
  ASSERT_EQ(broker->Stop(), 0);
  ProcessResult bad = RunProcess({testing::kBrokerBin, "--data-dir", data,
                                  "--ca-root-crl", dir_ + "/stranger.pem"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(
      bad.err, "is not signed by a root or an intermediate of the CA"))
      << bad.err;
}

}  // namespace
}  // namespace simprov
