// The broker's signing keys in a PKCS#11 token: a real module (SoftHSM2,
// in a temporary directory), keys made with pkcs11-tool (opensc), the
// certificates made with the openssl CLI, the real broker, agent and CLI,
// chains checked with `openssl verify` and tokens with npm jose.
#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
#include "test/testing/broker_fixture.h"
#include "test/testing/softhsm.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::SoftHsm;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

constexpr char kOpenssl[] = "/usr/bin/openssl";
constexpr char kExt[] =
    "[v3_ca]\nbasicConstraints=critical,CA:TRUE\n"
    "keyUsage=critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

class HsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = SoftHsm::Create("simprov", "4321");
    ASSERT_NE(hsm_, nullptr);
    dir_ = MakeTempDir();
    data_ = dir_ + "/broker";
  }
  void TearDown() override {
    broker_.reset();
    RemoveTree(dir_);
  }

  std::vector<std::string> Pkcs11Flags() const {
    return {"--pkcs11-module", hsm_->module(), "--pkcs11-pin-file",
            hsm_->pin_file()};
  }

  void Run(const std::vector<std::string>& argv) {
    ProcessResult r = RunProcess(argv);
    ASSERT_EQ(r.exit_code, 0) << argv[0] << " " << argv[1] << ": " << r.err;
  }

  // A root made with openssl (key in a file) as `name` Root.
  std::string MakeRoot(const std::string& name) {
    WriteFileOrDie(dir_ + "/ext.cnf", kExt);
    const std::string key = dir_ + "/" + name + "-root.key";
    const std::string pem = dir_ + "/" + name + "-root.pem";
    Run({kOpenssl,
         "req",
         "-x509",
         "-newkey",
         "ec",
         "-pkeyopt",
         "ec_paramgen_curve:P-256",
         "-nodes",
         "-keyout",
         key,
         "-out",
         pem,
         "-subj",
         "/CN=" + name + " Root",
         "-days",
         "3650",
         "-config",
         dir_ + "/ext.cnf",
         "-extensions",
         "v3_ca"});
    return pem;
  }

  // An issuing CA certificate for the token key `object` (made here with
  // pkcs11-tool), signed by `name`'s root: a request for the subject, the
  // token's public key put in by `openssl x509 -force_pubkey`.
  std::string MakeIssuing(const std::string& name, const std::string& object,
                          const std::string& id_hex) {
    const std::string pub = hsm_->GenerateEcKey(object, id_hex);
    EXPECT_FALSE(pub.empty());
    const std::string pub_path = dir_ + "/" + object + ".pub.pem";
    WriteFileOrDie(pub_path, pub);
    const std::string csr = dir_ + "/" + object + ".csr";
    Run({kOpenssl, "req", "-new", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         dir_ + "/throwaway.key", "-out", csr, "-subj",
         "/CN=" + name + " Issuing"});
    const std::string pem = dir_ + "/" + object + ".pem";
    Run({kOpenssl,
         "x509",
         "-req",
         "-in",
         csr,
         "-force_pubkey",
         pub_path,
         "-CA",
         dir_ + "/" + name + "-root.pem",
         "-CAkey",
         dir_ + "/" + name + "-root.key",
         "-set_serial",
         "7",
         "-days",
         "365",
         "-extfile",
         dir_ + "/ext.cnf",
         "-extensions",
         "v3_ca",
         "-out",
         pem});
    return pem;
  }

  std::unique_ptr<BrokerProcess> Start(std::vector<std::string> flags) {
    for (const std::string& f : Pkcs11Flags()) flags.push_back(f);
    flags.push_back("--http-listen");
    flags.push_back("127.0.0.1:0");
    return BrokerProcess::Start(data_, flags);
  }

  // A broker start expected to fail: its exit code and stderr.
  ProcessResult StartFails(std::vector<std::string> flags) {
    std::vector<std::string> argv = {testing::kBrokerBin, "--data-dir", data_,
                                     "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunProcess(argv, absl::Seconds(30));
  }

  std::string Readyz() {
    const std::string http = std::string(
        absl::StripAsciiWhitespace(ReadFileOrEmpty(data_ + "/http-address")));
    ProcessResult r =
        RunProcess({"/usr/bin/curl", "-s", "http://" + http + "/readyz"});
    return r.out;
  }

  // Bootstraps a new device; its credential directory.
  ProcessResult Bootstrap(const std::string& imsi, std::string* out) {
    TestSim sim = RandomSim(imsi);
    broker_->Import({sim});
    *out = dir_ + "/device-" + imsi;
    return broker_->Bootstrap(WriteSoftSim(dir_, sim), *out);
  }

  // `openssl verify` of the device's certificate against `root` alone.
  ProcessResult OpensslVerify(const std::string& out, const std::string& root) {
    return RunProcess({kOpenssl, "verify", "-CAfile", root, "-untrusted",
                       out + "/chain.pem", out + "/device.crt"});
  }

  std::unique_ptr<SoftHsm> hsm_;
  std::string dir_, data_;
  std::unique_ptr<BrokerProcess> broker_;
};

// Every PEM private key in `text` whose public key is `pub`.
int MatchingPrivateKeys(const std::string& text, EVP_PKEY* pub) {
  int n = 0;
  size_t at = 0;
  while ((at = text.find("-----BEGIN", at)) != std::string::npos) {
    BioPtr bio(
        BIO_new_mem_buf(text.data() + at, static_cast<int>(text.size() - at)));
    EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    if (k != nullptr) {
      if (SamePublicKey(k, pub)) ++n;
      EVP_PKEY_free(k);
    }
    ++at;
  }
  return n;
}

// Copies of the private key of `pub` anywhere under `dir` (every file,
// tar archives and the SQLite database included: PEM is searched in the
// raw bytes).
int KeyCopiesUnder(const std::string& dir, EVP_PKEY* pub) {
  int n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    n += MatchingPrivateKeys(ReadFileOrEmpty(e.path().string()), pub);
  }
  return n;
}

TEST_F(HsmTest, OperatorCaKeyInTheTokenIssuesChainsThatVerify) {
  const std::string root = MakeRoot("Acme");
  const std::string issuing = MakeIssuing("Acme", "issuing-ca", "01");
  const std::string uri = hsm_->KeyUri("issuing-ca");
  broker_ = Start({"--ca-cert", issuing, "--ca-chain", root, "--ca-key", uri});
  ASSERT_NE(broker_, nullptr);
  // The key file is the key's URI, nothing else.
  EXPECT_EQ(ReadFileOrEmpty(data_ + "/ca/issuing.key"), uri + "\n");

  std::string out;
  ProcessResult r = Bootstrap("001010000009001", &out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = OpensslVerify(out, root);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "device.crt: OK")) << r.out;
  // The broker's TLS certificate and its CRL are signed by the token key.
  r = RunProcess({kOpenssl, "verify", "-CAfile", root, "-untrusted",
                  data_ + "/tls/server.pem", data_ + "/tls/server.pem"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = RunProcess({kOpenssl, "crl", "-inform", "DER", "-in", data_ + "/ca.crl",
                  "-CAfile", issuing, "-noout"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err + r.out, "verify OK")) << r.err << r.out;
  EXPECT_EQ(Readyz(), "ready\n");

  // The module says the key never leaves the token.
  r = hsm_->Tool(
      {"--list-objects", "--type", "privkey", "--label", "issuing-ca"});
  EXPECT_TRUE(absl::StrContains(r.out, "never extractable")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "sensitive")) << r.out;

  // No copy in the data dir, the database, a backup or the output.
  const std::string backup = dir_ + "/backup.tar";
  r = broker_->Cli({"backup", backup});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(broker_->Stop(), 0);
  auto cert = CertFromPem(ReadFileOrEmpty(issuing));
  ASSERT_TRUE(cert.ok());
  EVP_PKEY* pub = X509_get0_pubkey(cert->get());
  EXPECT_EQ(KeyCopiesUnder(data_, pub), 0);
  EXPECT_EQ(MatchingPrivateKeys(ReadFileOrEmpty(backup), pub), 0);
  EXPECT_FALSE(absl::StrContains(broker_->log(), "PRIVATE KEY"));
  EXPECT_FALSE(absl::StrContains(broker_->log(), "4321"));  // the PIN
  // The check itself finds a key where there is one.
  EXPECT_EQ(MatchingPrivateKeys(
                ReadFileOrEmpty(dir_ + "/Acme-root.key"),
                X509_get0_pubkey(CertFromPem(ReadFileOrEmpty(root))->get())),
            1);

  // A restart without the flags (but with the module and PIN) signs again.
  broker_ = Start({});
  ASSERT_NE(broker_, nullptr);
  r = Bootstrap("001010000009002", &out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(OpensslVerify(out, root).exit_code, 0);
}

TEST_F(HsmTest, WrongPinWrongObjectAndMismatchedKeyAreRefusedWithOneLine) {
  const std::string root = MakeRoot("Acme");
  const std::string issuing = MakeIssuing("Acme", "issuing-ca", "01");
  ASSERT_FALSE(hsm_->GenerateEcKey("other", "02").empty());
  const std::string wrong_pin = dir_ + "/wrong.pin";
  WriteFileOrDie(wrong_pin, "0000\n");
  chmod(wrong_pin.c_str(), 0600);
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  } cases[] = {
      {{"--ca-cert", issuing, "--ca-chain", root, "--ca-key",
        hsm_->KeyUri("issuing-ca"), "--pkcs11-module", hsm_->module(),
        "--pkcs11-pin-file", wrong_pin},
       absl::StrCat("simprov-broker: --ca-key ", hsm_->KeyUri("issuing-ca"),
                    ": wrong PIN for PKCS#11 token simprov\n")},
      {{"--ca-cert", issuing, "--ca-chain", root, "--ca-key",
        hsm_->KeyUri("nope"), "--pkcs11-module", hsm_->module(),
        "--pkcs11-pin-file", hsm_->pin_file()},
       absl::StrCat("simprov-broker: --ca-key ", hsm_->KeyUri("nope"),
                    ": no private key nope in token simprov\n")},
      {{"--ca-cert", issuing, "--ca-chain", root, "--ca-key",
        hsm_->KeyUri("other"), "--pkcs11-module", hsm_->module(),
        "--pkcs11-pin-file", hsm_->pin_file()},
       absl::StrCat("simprov-broker: --ca-key ", hsm_->KeyUri("other"),
                    " does not match --ca-cert ", issuing, "\n")},
      {{"--ca-cert", issuing, "--ca-chain", root, "--ca-key",
        hsm_->KeyUri("issuing-ca") + "?pin-value=4321", "--pkcs11-module",
        hsm_->module()},
       "pin-value is refused"},
  };
  for (const Case& c : cases) {
    ProcessResult r = StartFails(c.flags);
    EXPECT_NE(r.exit_code, 0);
    if (absl::EndsWith(c.error, "\n")) {
      EXPECT_EQ(r.err, c.error);
    } else {
      EXPECT_TRUE(absl::StrContains(r.err, c.error)) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_FALSE(absl::StrContains(r.err, "4321"));
    }
    // Refused before the data dir is made.
    EXPECT_FALSE(std::filesystem::exists(data_)) << r.err;
  }
}

TEST_F(HsmTest, DevelopmentCaGeneratedInTheTokenAndTokenKeysThere) {
  broker_ =
      Start({"--ca-key", "pkcs11:token=simprov;object=dev", "--token-keys",
             "pkcs11:token=simprov", "--token-audiences", "billing"});
  ASSERT_NE(broker_, nullptr);
  // Root and issuing keys were made in the token; the files only name them.
  std::vector<std::string> labels = hsm_->PrivateKeyLabels();
  for (const char* f : {"/ca/root.key", "/ca/issuing.key"}) {
    const std::string ref = ReadFileOrEmpty(data_ + f);
    EXPECT_TRUE(absl::StartsWith(ref, "pkcs11:token=simprov;object=dev-"))
        << ref;
    const std::string label(absl::StripSuffix(
        absl::StripSuffix(
            absl::StripPrefix(ref, "pkcs11:token=simprov;object="), "\n"),
        ";type=private"));
    EXPECT_NE(std::find(labels.begin(), labels.end(), label), labels.end())
        << label;
    ProcessResult r =
        hsm_->Tool({"--list-objects", "--type", "privkey", "--label", label});
    EXPECT_TRUE(absl::StrContains(r.out, "never extractable")) << r.out;
  }
  std::string out;
  ProcessResult r = Bootstrap("001010000009011", &out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(OpensslVerify(out, data_ + "/ca.pem").exit_code, 0);

  // The token key: in the token under its kid, not in the key file.
  const std::string keys = ReadFileOrEmpty(data_ + "/tokens/keys.json");
  EXPECT_FALSE(absl::StrContains(keys, "private_pem")) << keys;
  const size_t kid_at = keys.find("\"kid\": \"");
  ASSERT_NE(kid_at, std::string::npos);
  const std::string kid = keys.substr(kid_at + 8, 43);
  labels = hsm_->PrivateKeyLabels();
  EXPECT_NE(std::find(labels.begin(), labels.end(), kid), labels.end()) << kid;

  // A token, verified by npm jose against the served JWKS.
  r = RunProcess({testing::kAgentBin, "token", "--broker", broker_->address(),
                  "--out", out, "--audience", "billing"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string token(absl::StripAsciiWhitespace(r.out));
  const std::string http = std::string(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(data_ + "/http-address")));
  const std::string jose_dir =
      std::string(SIMPROV_SOURCE_DIR) + "/test/integration/jose";
  ASSERT_TRUE(std::filesystem::exists(jose_dir + "/node_modules/jose"))
      << "run scripts/deps";
  r = RunProcess({"/usr/bin/node", jose_dir + "/verify.mjs",
                  "http://" + http + "/.well-known/jwks.json", "http://" + http,
                  "billing", token});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, kid)) << r.out;
  EXPECT_EQ(Readyz(), "ready\n");
}

TEST_F(HsmTest, RolloverFromAFileCaToATokenCa) {
  broker_ = Start({});  // a development CA with its keys in files
  ASSERT_NE(broker_, nullptr);
  std::string out;
  ProcessResult r = Bootstrap("001010000009021", &out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(broker_->Stop(), 0);

  const std::string root = MakeRoot("NewCo");
  const std::string issuing = MakeIssuing("NewCo", "next-ca", "05");
  const std::string uri = hsm_->KeyUri("next-ca");
  broker_ = Start({"--ca-cert", issuing, "--ca-chain", root, "--ca-key", uri});
  ASSERT_NE(broker_, nullptr);
  EXPECT_EQ(ReadFileOrEmpty(data_ + "/ca/next/issuing.key"), uri + "\n");
  r = broker_->Cli({"ca", "activate"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "active:  CN=NewCo Issuing")) << r.out;
  r = RunProcess({testing::kAgentBin, "renew", "--broker", broker_->address(),
                  "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(OpensslVerify(out, root).exit_code, 0);
  EXPECT_EQ(ReadFileOrEmpty(data_ + "/ca/issuing.key"), uri + "\n");
  // After a restart the token CA signs new devices and the broker's TLS.
  ASSERT_EQ(broker_->Stop(), 0);
  broker_ = Start({});
  ASSERT_NE(broker_, nullptr);
  r = Bootstrap("001010000009022", &out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(OpensslVerify(out, root).exit_code, 0);
}

TEST_F(HsmTest, TokenGoneMidRunIsUnavailableThenRecovers) {
  const std::string root = MakeRoot("Acme");
  const std::string issuing = MakeIssuing("Acme", "issuing-ca", "01");
  broker_ = Start({"--ca-cert", issuing, "--ca-chain", root, "--ca-key",
                   hsm_->KeyUri("issuing-ca"), "--token-keys",
                   "pkcs11:token=simprov", "--token-audiences", "billing"});
  ASSERT_NE(broker_, nullptr);
  std::string out;
  ASSERT_EQ(Bootstrap("001010000009031", &out).exit_code, 0);
  auto token = [&] {
    return RunProcess({testing::kAgentBin, "token", "--broker",
                       broker_->address(), "--out", out, "--audience",
                       "billing"});
  };
  ASSERT_EQ(token().exit_code, 0);

  hsm_->SetTokenPresent(false);
  ProcessResult t = token();
  EXPECT_NE(t.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(t.err, "token signing unavailable")) << t.err;
  std::string ready = Readyz();
  EXPECT_TRUE(absl::StartsWith(ready, "HSM unavailable: ")) << ready;
  TestSim sim = RandomSim("001010000009032");
  broker_->Import({sim});
  const std::string out2 = dir_ + "/device-gone";
  ProcessResult r = broker_->Bootstrap(WriteSoftSim(dir_, sim), out2);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "certificate signing unavailable"))
      << r.err;
  EXPECT_TRUE(broker_->Running());

  hsm_->SetTokenPresent(true);
  for (int i = 0; i < 50 && Readyz() != "ready\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(Readyz(), "ready\n");
  r = broker_->Bootstrap(WriteSoftSim(dir_, sim), out2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(OpensslVerify(out2, root).exit_code, 0);
  t = token();
  EXPECT_EQ(t.exit_code, 0) << t.err;
}

}  // namespace
}  // namespace simprov
