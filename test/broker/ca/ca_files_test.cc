// The CA's files in the data dir (ca_files.h): creation, loading and
// rollover, also through a signer factory other than the software one.
#include "broker/ca/ca_files.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "broker/ca/ca.h"
#include "broker/ca/ca_signer.h"
#include "broker/ca/leaf_builder.h"
#include "broker/ca/software_signer.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
#include "test/broker/ca/ca_test_support.h"

namespace simprov {
namespace ca_test {
namespace {

TEST_F(CaTest, FilesAndModes) {
  EXPECT_EQ(FileMode(dir_ + "/ca"), 0700u);
  EXPECT_EQ(FileMode(dir_ + "/ca/root.key"), 0600u);
  EXPECT_EQ(FileMode(dir_ + "/ca/issuing.key"), 0600u);
  EXPECT_EQ(FileMode(dir_ + "/ca.pem"), 0644u);
  EXPECT_EQ(ReadWholeFile(dir_ + "/ca.pem"), ca_->TrustAnchorsPem());
  EXPECT_EQ(ReadWholeFile(dir_ + "/ca/issuing.pem"), ca_->ChainPem());
  EXPECT_EQ(ReadWholeFile(dir_ + "/ca/chain.pem"), ca_->ChainPem());

  // No temporary files are left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/ca")) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos);
    ++entries;
  }
  EXPECT_EQ(entries, 4);

  // The key files hold the matching PKCS#8 private keys.
  absl::StatusOr<EvpPkeyPtr> issuing_key =
      PrivateKeyFromPem(ReadWholeFile(dir_ + "/ca/issuing.key"));
  ASSERT_TRUE(issuing_key.ok());
  EXPECT_TRUE(
      SamePublicKey(issuing_key->get(), X509_get0_pubkey(ca_->issuing_cert())));
  absl::StatusOr<EvpPkeyPtr> root_key =
      PrivateKeyFromPem(ReadWholeFile(dir_ + "/ca/root.key"));
  ASSERT_TRUE(root_key.ok());
  EXPECT_TRUE(
      SamePublicKey(root_key->get(), X509_get0_pubkey(ca_->root_cert())));
}

TEST_F(CaTest, CreateDevelopmentRefusesToOverwrite) {
  auto again = CertificateAuthority::CreateDevelopment(dir_, clock_, random_);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  // The existing CA is untouched.
  auto loaded = CertificateAuthority::Load(dir_, clock_, random_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(CertToDer((*loaded)->root_cert()), CertToDer(ca_->root_cert()));
}

TEST_F(CaTest, LoadIssuesCertificatesVerifyingToSameRoot) {
  clock_.Advance(absl::Hours(24 * 30));
  auto loaded = CertificateAuthority::Load(dir_, clock_, random_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  CertificateAuthority& ca = **loaded;
  EXPECT_EQ(CertToDer(ca.root_cert()), CertToDer(ca_->root_cert()));
  EXPECT_EQ(CertToDer(ca.issuing_cert()), CertToDer(ca_->issuing_cert()));
  EXPECT_EQ(ca.ChainPem(), ca_->ChainPem());
  EXPECT_EQ(ca.TrustAnchorsPem(), ca_->TrustAnchorsPem());

  DeviceCertRequest request =
      Request(device_key_.get(), kImsi, kDeviceUri, absl::Hours(24));
  absl::StatusOr<X509Ptr> cert = ca.IssueDeviceCertificate(request);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(DescribeCert(cert->get()).not_before,
            clock_.Now() - absl::Minutes(5));
  // Verify against the original CA's root, parsed from the PEM on disk.
  absl::StatusOr<X509Ptr> anchor = CertFromPem(ReadWholeFile(dir_ + "/ca.pem"));
  absl::StatusOr<std::vector<X509Ptr>> chain =
      CertsFromPem(ReadWholeFile(dir_ + "/ca/chain.pem"));
  ASSERT_TRUE(anchor.ok() && chain.ok());
  ASSERT_EQ(chain->size(), 1u);
  EXPECT_TRUE(VerifyChain(cert->get(), {(*chain)[0].get()}, {anchor->get()},
                          clock_.Now(), "sslclient")
                  .ok());
}

TEST_F(CaTest, LoadRejectsMismatchedKeyAndMissingFiles) {
  const std::string original_key = ReadWholeFile(dir_ + "/ca/issuing.key");
  // Replace the issuing key with an unrelated one.
  EvpPkeyPtr other = GenerateP256Key();
  {
    std::ofstream out(dir_ + "/ca/issuing.key", std::ios::trunc);
    out << *PrivateKeyToPkcs8Pem(other.get());
  }
  auto loaded = CertificateAuthority::Load(dir_, clock_, random_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition)
      << loaded.status();

  {
    std::ofstream out(dir_ + "/ca/issuing.key", std::ios::trunc);
    out << original_key;
  }
  ASSERT_TRUE(CertificateAuthority::Load(dir_, clock_, random_).ok());

  // An issuing certificate that does not chain to ca.pem is refused.
  std::string other_dir = root_dir_ + "/other";
  auto other_ca =
      CertificateAuthority::CreateDevelopment(other_dir, clock_, random_);
  ASSERT_TRUE(other_ca.ok());
  std::filesystem::copy_file(other_dir + "/ca.pem", dir_ + "/ca.pem",
                             std::filesystem::copy_options::overwrite_existing);
  loaded = CertificateAuthority::Load(dir_, clock_, random_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition)
      << loaded.status();

  EXPECT_EQ(CertificateAuthority::Load(root_dir_ + "/missing", clock_, random_)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

// A data dir with a development CA and, staged to sign from `activate_at`,
// another development CA handed over as operator material ("CN=next ...").
void MakeDirWithStagedCa(const std::string& dir, const std::string& other,
                         Clock& clock, Random& random, absl::Time activate_at) {
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
  auto old_ca = CertificateAuthority::CreateDevelopment(dir, clock, random);
  ASSERT_TRUE(old_ca.ok()) << old_ca.status();
  auto next =
      CertificateAuthority::CreateDevelopment(other, clock, random, "next");
  ASSERT_TRUE(next.ok());
  CaMaterial m;
  m.root = X509Ptr(X509_dup((*next)->root_cert()));
  m.issuing = X509Ptr(X509_dup((*next)->issuing_cert()));
  std::ifstream key_in(other + "/ca/issuing.key");
  std::stringstream key;
  key << key_in.rdbuf();
  m.key_pem = key.str();
  ASSERT_TRUE(
      CertificateAuthority::StageOperatorCa(dir, std::move(m), activate_at)
          .ok());
}

// Rollover in one process: staged = anchor only; activation moves signing
// and keeps the old generation verifying.
TEST(CaRolloverTest, StagedAnchorFirstThenSigningAndOldLeavesStillVerify) {
  const std::string dir =
      ::testing::TempDir() + "/ca-rollover-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(7);
  ASSERT_NO_FATAL_FAILURE(MakeDirWithStagedCa(dir, other, clock, random,
                                              clock.Now() + absl::Hours(1)));
  auto ca = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ((*ca)->TrustAnchorsDer().size(), 2u);
  EvpPkeyPtr key1 = GenerateP256Key();
  DeviceCertRequest req;
  req.public_key = key1.get();
  req.common_name = "001010000000001";
  req.ttl = absl::Hours(24);
  auto before = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(DescribeCert(before->get()).issuer,
            "CN=simprov development issuing CA");
  EXPECT_FALSE(*(*ca)->MaybeActivateStaged(false));  // not yet
  clock.Advance(absl::Hours(2));
  EXPECT_TRUE(*(*ca)->MaybeActivateStaged(false));
  auto after = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(DescribeCert(after->get()).issuer, "CN=next issuing CA");
  EXPECT_TRUE(
      (*ca)->VerifyIssued(before->get(), clock.Now(), "sslclient").ok());
  EXPECT_TRUE((*ca)->VerifyIssued(after->get(), clock.Now(), "sslclient").ok());
  EXPECT_EQ((*ca)->TrustAnchorsDer().size(), 2u);
  // Persisted: a reload has the same state.
  auto reloaded = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ((*reloaded)->State().retired, 1u);
  EXPECT_FALSE((*reloaded)->State().staged);
  EXPECT_TRUE(
      (*reloaded)->VerifyIssued(before->get(), clock.Now(), "sslclient").ok());
  EXPECT_FALSE((*reloaded)->MaybeActivateStaged(true).ok());
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
}

// A crash in the middle of an activation: the new issuing key is in place,
// its certificate not yet. Without the journal the data dir would not load;
// with it, the next Load finishes the switch.
TEST(CaRolloverTest, ActivationInterruptedByACrashIsFinishedAtTheNextLoad) {
  const std::string dir =
      ::testing::TempDir() + "/ca-crash-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(8);
  ASSERT_NO_FATAL_FAILURE(
      MakeDirWithStagedCa(dir, other, clock, random, clock.Now()));
  EvpPkeyPtr device_key = GenerateP256Key();
  DeviceCertRequest req;
  req.public_key = device_key.get();
  req.common_name = "001010000000002";
  req.ttl = absl::Hours(24);
  X509Ptr before;
  std::string old_issuing;
  {
    auto ca = CertificateAuthority::Load(dir, clock, random);
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto issued = (*ca)->IssueDeviceCertificate(req);
    ASSERT_TRUE(issued.ok());
    before = *std::move(issued);
    old_issuing =
        CertToPem((*ca)->issuing_cert()) + CertToPem((*ca)->root_cert());
  }
  const std::string next = dir + "/ca/next";
  std::filesystem::copy_file(next + "/issuing.key", dir + "/ca/issuing.key",
                             std::filesystem::copy_options::overwrite_existing);
  auto broken = CertificateAuthority::Load(dir, clock, random);
  ASSERT_FALSE(broken.ok());  // key and certificate disagree

  // The journal the activation writes first: retired.pem's new content.
  {
    std::ofstream journal(next + "/activating");
    journal << old_issuing;
  }
  auto ca = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_FALSE((*ca)->State().staged);
  EXPECT_EQ((*ca)->State().retired, 1u);
  EXPECT_FALSE(std::filesystem::exists(next));
  auto after = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(DescribeCert(after->get()).issuer, "CN=next issuing CA");
  EXPECT_TRUE((*ca)->VerifyIssued(before.get(), clock.Now(), "sslclient").ok());
  EXPECT_TRUE((*ca)->VerifyIssued(after->get(), clock.Now(), "sslclient").ok());
  struct stat st;
  ASSERT_EQ(stat((dir + "/ca/issuing.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
}

// A crash during the clean-up after the writes: next/ has lost root.pem
// but still holds the key and the journal. The next Load only cleans up.
TEST(CaRolloverTest, ActivationInterruptedDuringCleanUpIsFinishedToo) {
  const std::string dir =
      ::testing::TempDir() + "/ca-cleanup-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(9);
  ASSERT_NO_FATAL_FAILURE(
      MakeDirWithStagedCa(dir, other, clock, random, clock.Now()));
  const std::string next = dir + "/ca/next";
  const std::string saved = dir + "-saved-next";
  std::filesystem::remove_all(saved);
  std::filesystem::copy(next, saved);
  {
    auto ca = CertificateAuthority::Load(dir, clock, random);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ASSERT_TRUE(*(*ca)->MaybeActivateStaged(true));
  }
  ASSERT_FALSE(std::filesystem::exists(next));
  const std::string retired =
      ReadFileToString(dir + "/ca/retired.pem", 1 << 20).value_or("");
  ASSERT_FALSE(retired.empty());
  // Put back what a crash after unlinking root.pem would have left.
  std::filesystem::copy(saved, next);
  std::filesystem::remove(next + "/root.pem");
  {
    std::ofstream journal(next + "/activating");
    journal << "not read: every write was done";
  }
  auto ca = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_FALSE((*ca)->State().staged);
  EXPECT_EQ((*ca)->State().retired, 1u);
  EXPECT_EQ(DescribeCert((*ca)->issuing_cert()).subject, "CN=next issuing CA");
  EXPECT_FALSE(std::filesystem::exists(next));
  EXPECT_EQ(ReadFileToString(dir + "/ca/retired.pem", 1 << 20).value_or(""),
            retired);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
  std::filesystem::remove_all(saved);
}

// A signer over the software one that counts what it signs.
class CountingSigner final : public CaSigner {
 public:
  struct Counts {
    std::atomic<int> certificates{0};
    std::atomic<int> crls{0};
  };
  CountingSigner(std::unique_ptr<CaSigner> inner,
                 std::shared_ptr<Counts> counts)
      : inner_(std::move(inner)), counts_(std::move(counts)) {}
  EVP_PKEY* public_key() const override { return inner_->public_key(); }
  absl::Status SignCertificate(X509* cert) const override {
    ++counts_->certificates;
    return inner_->SignCertificate(cert);
  }
  absl::Status SignCrl(X509_CRL* crl) const override {
    ++counts_->crls;
    return inner_->SignCrl(crl);
  }

 private:
  const std::unique_ptr<CaSigner> inner_;
  const std::shared_ptr<Counts> counts_;
};

// A test-only CaSignerFactory: the software one behind CountingSigners. It
// records the key files it loads and the keys it generates, in order, and
// refuses key files under `refuse` (as an HSM without the key would).
class CountingSignerFactory final : public CaSignerFactory {
 public:
  using Counts = CountingSigner::Counts;
  explicit CountingSignerFactory(std::string refuse = "")
      : refuse_(std::move(refuse)) {}

  absl::StatusOr<std::unique_ptr<CaSigner>> Load(
      const std::string& key_path) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!refuse_.empty() && absl::StartsWith(key_path, refuse_)) {
      return absl::UnavailableError("no such key in the token");
    }
    auto signer = SoftwareCaSigners().Load(key_path);
    if (!signer.ok()) return signer.status();
    loaded_.push_back(key_path);
    load_counts_.push_back(std::make_shared<Counts>());
    return std::make_unique<CountingSigner>(*std::move(signer),
                                            load_counts_.back());
  }
  absl::StatusOr<GeneratedCaKey> Generate() const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = SoftwareCaSigners().Generate();
    if (!key.ok()) return key.status();
    generate_counts_.push_back(std::make_shared<Counts>());
    key->signer = std::make_unique<CountingSigner>(std::move(key->signer),
                                                   generate_counts_.back());
    return key;
  }

  std::vector<std::string> loaded() const {
    std::lock_guard<std::mutex> lock(mu_);
    return loaded_;
  }
  // What the signer of the i-th Load / Generate signed.
  const Counts& loaded_signer(size_t i) const {
    std::lock_guard<std::mutex> lock(mu_);
    return *load_counts_.at(i);
  }
  const Counts& generated_signer(size_t i) const {
    std::lock_guard<std::mutex> lock(mu_);
    return *generate_counts_.at(i);
  }
  size_t generated() const {
    std::lock_guard<std::mutex> lock(mu_);
    return generate_counts_.size();
  }

 private:
  const std::string refuse_;
  mutable std::mutex mu_;
  mutable std::vector<std::string> loaded_;
  mutable std::vector<std::shared_ptr<Counts>> load_counts_;
  mutable std::vector<std::shared_ptr<Counts>> generate_counts_;
};

// Whether the DER CRL names `issuer` as its issuer and its key verifies it.
bool CrlSignedBy(const Bytes& der, X509* issuer) {
  const unsigned char* p = der.data();
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  return crl != nullptr &&
         X509_NAME_cmp(X509_CRL_get_issuer(crl.get()),
                       X509_get_subject_name(issuer)) == 0 &&
         X509_CRL_verify(crl.get(), X509_get0_pubkey(issuer)) == 1;
}

// Rollover through a factory other than the software one: the staged
// generation's signer is the factory's (made when the data dir is loaded),
// signs nothing while staged and every certificate and CRL once activated;
// activation asks the factory for nothing more, and a reload asks it for
// the new active key only.
TEST(CaSignerFactoryTest, StagedSignerComesFromTheFactoryAndSignsOnceActive) {
  const std::string dir =
      ::testing::TempDir() + "/ca-factory-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(10);
  ASSERT_NO_FATAL_FAILURE(MakeDirWithStagedCa(dir, other, clock, random,
                                              clock.Now() + absl::Hours(1)));
  const absl::StatusOr<X509Ptr> next_issuing =
      CertFromPem(ReadWholeFile(dir + "/ca/next/issuing.pem"));
  const absl::StatusOr<X509Ptr> old_issuing =
      CertFromPem(ReadWholeFile(dir + "/ca/issuing.pem"));
  ASSERT_TRUE(next_issuing.ok() && old_issuing.ok());

  CountingSignerFactory factory;
  auto ca = CertificateAuthority::Load(dir, clock, random, factory);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(factory.loaded(),
            (std::vector<std::string>{dir + "/ca/issuing.key",
                                      dir + "/ca/next/issuing.key"}));
  const CountingSigner::Counts& active = factory.loaded_signer(0);
  const CountingSigner::Counts& staged = factory.loaded_signer(1);
  EvpPkeyPtr device_key = GenerateP256Key();
  DeviceCertRequest req =
      Request(device_key.get(), "001010000000003", "", absl::Hours(24));

  auto before = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(DescribeCert(before->get()).issuer,
            "CN=simprov development issuing CA");
  auto old_crl =
      (*ca)->IssueCrl({}, 1, clock.Now(), clock.Now() + absl::Hours(1));
  ASSERT_TRUE(old_crl.ok()) << old_crl.status();
  EXPECT_TRUE(CrlSignedBy(*old_crl, old_issuing->get()));
  EXPECT_EQ(active.certificates, 1);
  EXPECT_EQ(active.crls, 1);
  EXPECT_EQ(staged.certificates, 0);
  EXPECT_EQ(staged.crls, 0);

  clock.Advance(absl::Hours(2));
  auto activated = (*ca)->MaybeActivateStaged(false);
  ASSERT_TRUE(activated.ok()) << activated.status();
  EXPECT_TRUE(*activated);
  EXPECT_EQ(factory.loaded().size(), 2u);

  auto after = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(DescribeCert(after->get()).issuer, "CN=next issuing CA");
  EXPECT_EQ(X509_verify(after->get(), X509_get0_pubkey(next_issuing->get())),
            1);
  EXPECT_TRUE((*ca)->VerifyIssued(after->get(), clock.Now(), "sslclient").ok());
  auto crl = (*ca)->IssueCrl({}, 2, clock.Now(), clock.Now() + absl::Hours(1));
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_TRUE(CrlSignedBy(*crl, next_issuing->get()));
  EXPECT_FALSE(CrlSignedBy(*crl, old_issuing->get()));
  EXPECT_EQ(staged.certificates, 1);
  EXPECT_EQ(staged.crls, 1);
  EXPECT_EQ(active.certificates, 1);
  EXPECT_EQ(active.crls, 1);

  // After the switch on disk, the next start loads the new key as active,
  // and the retired CA's kept key (it signs that CA's CRL).
  CountingSignerFactory restart;
  auto reloaded = CertificateAuthority::Load(dir, clock, random, restart);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(restart.loaded(),
            (std::vector<std::string>{
                dir + "/ca/issuing.key",
                absl::StrCat(dir, "/ca/retired/",
                             HexEncode(SkiOf(old_issuing->get())), ".key")}));
  auto again = (*reloaded)->IssueDeviceCertificate(req);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(X509_verify(again->get(), X509_get0_pubkey(next_issuing->get())),
            1);
  EXPECT_EQ(restart.loaded_signer(0).certificates, 1);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
}

// `simprov ca activate` (a forced activation before activate-at) switches
// to the factory's staged signer too.
TEST(CaSignerFactoryTest, ForcedActivationSignsWithTheFactorysStagedSigner) {
  const std::string dir =
      ::testing::TempDir() + "/ca-factory-force-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(11);
  ASSERT_NO_FATAL_FAILURE(MakeDirWithStagedCa(dir, other, clock, random,
                                              clock.Now() + absl::Hours(24)));
  CountingSignerFactory factory;
  auto ca = CertificateAuthority::Load(dir, clock, random, factory);
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto activated = (*ca)->MaybeActivateStaged(true);
  ASSERT_TRUE(activated.ok()) << activated.status();
  EXPECT_TRUE(*activated);
  EvpPkeyPtr server_key = GenerateP256Key();
  auto server = (*ca)->IssueServerCertificate(
      server_key.get(), {"broker.example"}, {}, absl::Hours(1));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(DescribeCert(server->get()).issuer, "CN=next issuing CA");
  EXPECT_EQ(factory.loaded_signer(1).certificates, 1);
  EXPECT_EQ(factory.loaded_signer(0).certificates, 0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/ca/next"));
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
}

// A staged key the factory cannot make a signer of fails the start with
// the factory's error, as an unreadable staged key file does today.
TEST(CaSignerFactoryTest, StagedKeyTheFactoryRefusesFailsTheLoad) {
  const std::string dir =
      ::testing::TempDir() + "/ca-factory-refuse-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(12);
  ASSERT_NO_FATAL_FAILURE(
      MakeDirWithStagedCa(dir, other, clock, random, clock.Now()));
  CountingSignerFactory factory(dir + "/ca/next/");
  auto ca = CertificateAuthority::Load(dir, clock, random, factory);
  EXPECT_EQ(ca.status(), absl::UnavailableError("no such key in the token"));
  EXPECT_EQ(factory.loaded(),
            std::vector<std::string>{dir + "/ca/issuing.key"});
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
}

// A development CA's keys come from the factory: the root's (which signs
// the root and the issuing CA certificates, and is written to root.key)
// and the issuing CA's (which signs what the CA issues).
TEST(CaSignerFactoryTest, DevelopmentCaKeysComeFromTheFactory) {
  const std::string dir =
      ::testing::TempDir() + "/ca-factory-dev-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(13);
  CountingSignerFactory factory;
  auto ca = CertificateAuthority::CreateDevelopment(
      dir, clock, random, "simprov development", factory);
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_EQ(factory.generated(), 2u);
  EXPECT_TRUE(factory.loaded().empty());
  EXPECT_EQ(factory.generated_signer(0).certificates, 2);
  EXPECT_EQ(factory.generated_signer(1).certificates, 0);

  EvpPkeyPtr device_key = GenerateP256Key();
  auto leaf = (*ca)->IssueDeviceCertificate(
      Request(device_key.get(), "001010000000004", "", absl::Hours(1)));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(factory.generated_signer(1).certificates, 1);
  EXPECT_EQ(factory.generated_signer(0).certificates, 2);

  // The key files hold what the factory said: here the software PEM.
  auto root_key = PrivateKeyFromPem(ReadWholeFile(dir + "/ca/root.key"));
  ASSERT_TRUE(root_key.ok());
  EXPECT_TRUE(
      SamePublicKey(root_key->get(), X509_get0_pubkey((*ca)->root_cert())));
  auto issuing_key = PrivateKeyFromPem(ReadWholeFile(dir + "/ca/issuing.key"));
  ASSERT_TRUE(issuing_key.ok());
  EXPECT_TRUE(SamePublicKey(issuing_key->get(),
                            X509_get0_pubkey((*ca)->issuing_cert())));
  std::filesystem::remove_all(dir);
}

// ReadGeneration reads the certificates first and asks the factory last,
// for the key file beside them.
TEST(CaFilesTest, ReadGenerationAsksTheFactoryForItsKeyFile) {
  const std::string dir =
      ::testing::TempDir() + "/ca-read-gen-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(14);
  ASSERT_TRUE(CertificateAuthority::CreateDevelopment(dir, clock, random).ok());
  CountingSignerFactory factory;
  auto files = ReadGeneration(dir + "/ca.pem", dir + "/ca", factory);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(factory.loaded(),
            std::vector<std::string>{dir + "/ca/issuing.key"});
  EXPECT_TRUE(SamePublicKey(files->signer->public_key(),
                            X509_get0_pubkey(files->issuing.get())));
  EXPECT_TRUE(files->intermediates.empty());
  EXPECT_EQ(DescribeCert(files->root.get()).subject,
            "CN=simprov development root CA");

  // A missing certificate fails before the factory is asked.
  std::filesystem::remove(dir + "/ca/issuing.pem");
  CountingSignerFactory unused;
  EXPECT_EQ(
      ReadGeneration(dir + "/ca.pem", dir + "/ca", unused).status().code(),
      absl::StatusCode::kNotFound);
  EXPECT_TRUE(unused.loaded().empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ca_test
}  // namespace simprov
