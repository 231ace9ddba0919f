// The software CA signer and its factory (software_signer.h).
#include "broker/ca/software_signer.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "broker/ca/crl.h"
#include "broker/ca/leaf_builder.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace simprov {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1767225600);  // 2026-01-01Z

// An unsigned self-signed CA certificate for `key`.
X509Ptr UnsignedCaCert(EVP_PKEY* key) {
  CertSpec spec;
  spec.public_key = key;
  spec.common_name = "signer test CA";
  spec.serial = Bytes(16, 0x42);
  spec.not_before = absl::ToUnixSeconds(kStart);
  spec.not_after = absl::ToUnixSeconds(kStart + absl::Hours(1));
  spec.basic_constraints = "critical,CA:TRUE";
  spec.key_usage = "critical,keyCertSign,cRLSign";
  absl::StatusOr<X509Ptr> cert = BuildCertificate(spec);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return cert.ok() ? *std::move(cert) : nullptr;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/simprov_signer_test.XXXXXX";
    EXPECT_NE(mkdtemp(tmpl), nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& data) const {
    const std::string path = path_ + "/" + name;
    std::ofstream(path) << data;
    return path;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(SoftwareCaSignerTest, SignsCertificatesWithTheKeysDigest) {
  struct Case {
    EVP_PKEY* key;
    int signature_nid;
  };
  for (const Case& c :
       {Case{EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"),
             NID_ecdsa_with_SHA256},
        Case{EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA",
                               static_cast<size_t>(2048)),
             NID_sha256WithRSAEncryption},
        Case{EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), NID_ED25519}}) {
    ASSERT_NE(c.key, nullptr);
    SoftwareCaSigner signer{EvpPkeyPtr(c.key)};
    EXPECT_EQ(signer.public_key(), c.key);
    X509Ptr cert = UnsignedCaCert(c.key);
    ASSERT_NE(cert, nullptr);
    ASSERT_TRUE(signer.SignCertificate(cert.get()).ok());
    EXPECT_EQ(X509_get_signature_nid(cert.get()), c.signature_nid);
    EXPECT_EQ(X509_verify(cert.get(), c.key), 1);
  }
}

TEST(SoftwareCaSignerTest, SignsCrls) {
  EvpPkeyPtr key = GenerateP256Key();
  X509Ptr issuer = UnsignedCaCert(key.get());
  ASSERT_NE(issuer, nullptr);
  absl::StatusOr<X509CrlPtr> crl =
      BuildCrl(X509_get_subject_name(issuer.get()), Bytes(20, 0x01),
               {{"4a01", kStart, 1}}, 7, kStart, kStart + absl::Hours(1));
  ASSERT_TRUE(crl.ok()) << crl.status();
  SoftwareCaSigner signer(std::move(key));
  ASSERT_TRUE(signer.SignCrl(crl->get()).ok());
  EXPECT_EQ(X509_CRL_get_signature_nid(crl->get()), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_CRL_verify(crl->get(), signer.public_key()), 1);
  absl::StatusOr<Bytes> der = CrlToDer(crl->get());
  ASSERT_TRUE(der.ok());
  EXPECT_FALSE(der->empty());
}

TEST(SoftwareCaSignerTest, RefusesNull) {
  SoftwareCaSigner signer(GenerateP256Key());
  EXPECT_EQ(signer.SignCertificate(nullptr),
            absl::InvalidArgumentError("null certificate"));
  EXPECT_EQ(signer.SignCrl(nullptr), absl::InvalidArgumentError("null CRL"));
}

TEST(SoftwareCaSignerFactoryTest, LoadsPemKeyFiles) {
  TempDir dir;
  EvpPkeyPtr key = GenerateP256Key();
  const std::string pkcs8 =
      dir.Write("pkcs8.key", *PrivateKeyToPkcs8Pem(key.get()));
  absl::StatusOr<std::unique_ptr<CaSigner>> signer =
      SoftwareCaSigners().Load(pkcs8);
  ASSERT_TRUE(signer.ok()) << signer.status();
  EXPECT_TRUE(SamePublicKey((*signer)->public_key(), key.get()));
  X509Ptr cert = UnsignedCaCert(key.get());
  ASSERT_TRUE((*signer)->SignCertificate(cert.get()).ok());
  EXPECT_EQ(X509_verify(cert.get(), key.get()), 1);

  EXPECT_EQ(
      SoftwareCaSigners().Load(dir.path() + "/missing.key").status().code(),
      absl::StatusCode::kNotFound);
  const std::string garbage = dir.Write("garbage.key", "not a key\n");
  absl::Status bad = SoftwareCaSigners().Load(garbage).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StartsWith(bad.message(), garbage + ": ")) << bad;
  // A certificate is not a key.
  const std::string cert_file = dir.Write("cert.key", CertToPem(cert.get()));
  EXPECT_EQ(SoftwareCaSigners().Load(cert_file).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SoftwareCaSignerFactoryTest, GeneratesP256KeysWrittenAsPkcs8) {
  absl::StatusOr<GeneratedCaKey> a = SoftwareCaSigners().Generate();
  absl::StatusOr<GeneratedCaKey> b = SoftwareCaSigners().Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  EVP_PKEY* key = a->signer->public_key();
  EXPECT_EQ(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(key), 256);
  EXPECT_TRUE(absl::StartsWith(a->key_file, "-----BEGIN PRIVATE KEY-----\n"));
  absl::StatusOr<EvpPkeyPtr> parsed = PrivateKeyFromPem(a->key_file);
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(SamePublicKey(parsed->get(), key));
  EXPECT_FALSE(SamePublicKey(key, b->signer->public_key()));
}

TEST(SoftwareCaSignerFactoryTest, OneSharedInstance) {
  EXPECT_EQ(&SoftwareCaSigners(), &SoftwareCaSigners());
  EXPECT_NE(dynamic_cast<const SoftwareCaSignerFactory*>(&SoftwareCaSigners()),
            nullptr);
}

}  // namespace
}  // namespace simprov
