#include "common/x509.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"
#include "test/common/cert_testing.h"

namespace simprov {
namespace {

using testing::GenerateKey;
using testing::kNow;
using testing::MakeCert;

TEST(KeyTest, Pkcs8PemRoundTrip) {
  EvpPkeyPtr key = GenerateP256Key();
  ASSERT_NE(key, nullptr);
  absl::StatusOr<std::string> pem = PrivateKeyToPkcs8Pem(key.get());
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_EQ(pem->rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  absl::StatusOr<EvpPkeyPtr> parsed = PrivateKeyFromPem(*pem);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(SamePublicKey(key.get(), parsed->get()));
  EXPECT_EQ(*PublicKeyToDer(key.get()), *PublicKeyToDer(parsed->get()));

  EvpPkeyPtr other = GenerateP256Key();
  EXPECT_FALSE(SamePublicKey(key.get(), other.get()));
  EXPECT_FALSE(SamePublicKey(key.get(), nullptr));
  EvpPkeyPtr ed = GenerateKey("ED25519", nullptr);
  EXPECT_FALSE(SamePublicKey(key.get(), ed.get()));
}

// The P-256 encoder writes exactly what OpenSSL's does; other keys still
// take OpenSSL's.
TEST(KeyTest, Pkcs8PemOfP256IsOpenSslsEncoding) {
  auto openssl_pem = [](EVP_PKEY* key) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    EXPECT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                            nullptr, nullptr),
              1);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(len));
  };
  for (int i = 0; i < 200; ++i) {  // private scalars with leading zeros too
    EvpPkeyPtr key = GenerateP256Key();
    absl::StatusOr<std::string> pem = PrivateKeyToPkcs8Pem(key.get());
    ASSERT_TRUE(pem.ok()) << pem.status();
    ASSERT_EQ(*pem, openssl_pem(key.get()));
  }
  for (const char* type : {"ED25519", "X25519"}) {
    EvpPkeyPtr key = GenerateKey(type, nullptr);
    absl::StatusOr<std::string> pem = PrivateKeyToPkcs8Pem(key.get());
    ASSERT_TRUE(pem.ok()) << type;
    EXPECT_EQ(*pem, openssl_pem(key.get())) << type;
  }
  EvpPkeyPtr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  absl::StatusOr<std::string> pem = PrivateKeyToPkcs8Pem(p384.get());
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(*pem, openssl_pem(p384.get()));
  absl::StatusOr<EvpPkeyPtr> back = PrivateKeyFromPem(*pem);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(SamePublicKey(p384.get(), back->get()));
}

TEST(KeyTest, PublicKeyDerIsSubjectPublicKeyInfo) {
  EvpPkeyPtr key = GenerateP256Key();
  absl::StatusOr<Bytes> der = PublicKeyToDer(key.get());
  ASSERT_TRUE(der.ok());
  EXPECT_EQ(der->size(), 91u);  // P-256 SPKI, uncompressed point.
  const unsigned char* p = der->data();
  EvpPkeyPtr pub(d2i_PUBKEY(nullptr, &p, static_cast<long>(der->size())));
  ASSERT_NE(pub, nullptr);
  EXPECT_TRUE(SamePublicKey(key.get(), pub.get()));
  // A public-only key cannot be exported as a private key.
  EXPECT_FALSE(PrivateKeyToPkcs8Pem(pub.get()).ok());
}

TEST(KeyTest, PrivateKeyFromPemRejectsGarbageAndEncryptedKeys) {
  EXPECT_EQ(PrivateKeyFromPem("not a key").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(PrivateKeyFromPem("").ok());

  // An encrypted key must fail without prompting for a passphrase.
  EvpPkeyPtr key = GenerateP256Key();
  BioPtr bio(BIO_new(BIO_s_mem()));
  static char kPass[] = "secret";
  ASSERT_EQ(
      PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), EVP_aes_256_cbc(),
                                    kPass, sizeof kPass - 1, nullptr, nullptr),
      1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  std::string encrypted(data, static_cast<size_t>(len));
  absl::StatusOr<EvpPkeyPtr> parsed = PrivateKeyFromPem(encrypted);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
}

class ChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_key_ = GenerateP256Key();
    leaf_key_ = GenerateP256Key();
    other_key_ = GenerateP256Key();
    root_ =
        MakeCert("test root", root_key_.get(), nullptr, root_key_.get(), true,
                 kNow - absl::Hours(24), kNow + absl::Hours(24 * 365), 1);
    leaf_ =
        MakeCert("test leaf", leaf_key_.get(), root_.get(), root_key_.get(),
                 false, kNow - absl::Hours(1), kNow + absl::Hours(24), 0x1234);
    other_root_ =
        MakeCert("test root", other_key_.get(), nullptr, other_key_.get(), true,
                 kNow - absl::Hours(24), kNow + absl::Hours(24 * 365), 1);
  }

  EvpPkeyPtr root_key_, leaf_key_, other_key_;
  X509Ptr root_, leaf_, other_root_;
};

TEST_F(ChainTest, VerifiesToItsRoot) {
  EXPECT_TRUE(VerifyChain(leaf_.get(), {}, {root_.get()}, kNow, "").ok());
  EXPECT_TRUE(
      VerifyChain(leaf_.get(), {}, {root_.get()}, kNow, "sslclient").ok());
  absl::Status server =
      VerifyChain(leaf_.get(), {}, {root_.get()}, kNow, "sslserver");
  EXPECT_EQ(server.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(server.message().find("unsuitable certificate purpose"),
            std::string::npos)
      << server;
  // Extra anchors are harmless.
  EXPECT_TRUE(VerifyChain(leaf_.get(), {}, {other_root_.get(), root_.get()},
                          kNow, "sslclient")
                  .ok());
}

TEST_F(ChainTest, FailsForUntrustedAnchor) {
  // Same subject name, different key: must not be confused with the issuer.
  absl::Status s =
      VerifyChain(leaf_.get(), {}, {other_root_.get()}, kNow, "sslclient");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(s.message().find("verification failed"), std::string::npos) << s;
  // Supplying the real root as an untrusted intermediate does not help.
  s = VerifyChain(leaf_.get(), {root_.get()}, {other_root_.get()}, kNow,
                  "sslclient");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ChainTest, FailsOutsideValidity) {
  absl::Status expired = VerifyChain(leaf_.get(), {}, {root_.get()},
                                     kNow + absl::Hours(25), "sslclient");
  EXPECT_EQ(expired.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(expired.message().find("certificate has expired"),
            std::string::npos)
      << expired;
  absl::Status early = VerifyChain(leaf_.get(), {}, {root_.get()},
                                   kNow - absl::Hours(2), "sslclient");
  EXPECT_EQ(early.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(early.message().find("not yet valid"), std::string::npos) << early;
}

TEST_F(ChainTest, RejectsBadArguments) {
  EXPECT_EQ(VerifyChain(nullptr, {}, {root_.get()}, kNow, "").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyChain(leaf_.get(), {}, {}, kNow, "").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      VerifyChain(leaf_.get(), {}, {root_.get()}, kNow, "nonsense").code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(ChainTest, PemAndDerRoundTrips) {
  std::string bundle = CertToPem(leaf_.get()) + CertToPem(root_.get());
  absl::StatusOr<std::vector<X509Ptr>> certs = CertsFromPem(bundle);
  ASSERT_TRUE(certs.ok()) << certs.status();
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ(CertToDer((*certs)[0].get()), CertToDer(leaf_.get()));
  EXPECT_EQ(CertToDer((*certs)[1].get()), CertToDer(root_.get()));

  // CertFromPem takes the first certificate.
  absl::StatusOr<X509Ptr> first = CertFromPem(bundle);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(CertToDer(first->get()), CertToDer(leaf_.get()));

  // Other PEM blocks are skipped.
  std::string key_pem = *PrivateKeyToPkcs8Pem(leaf_key_.get());
  certs = CertsFromPem(key_pem + bundle);
  ASSERT_TRUE(certs.ok()) << certs.status();
  EXPECT_EQ(certs->size(), 2u);

  EXPECT_EQ(CertsFromPem("").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CertsFromPem(key_pem).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CertFromPem("nothing").status().code(),
            absl::StatusCode::kNotFound);
  std::string corrupt = CertToPem(root_.get());
  corrupt[40] = '!';
  EXPECT_EQ(CertsFromPem(bundle + corrupt).status().code(),
            absl::StatusCode::kInvalidArgument);

  Bytes der = CertToDer(root_.get());
  absl::StatusOr<X509Ptr> from_der = CertFromDer(der);
  ASSERT_TRUE(from_der.ok());
  EXPECT_EQ(X509_cmp(from_der->get(), root_.get()), 0);
  der.push_back(0);
  EXPECT_FALSE(CertFromDer(der).ok());
  EXPECT_FALSE(CertFromDer(Bytes()).ok());
  EXPECT_FALSE(CertFromDer(ToBytes("junk")).ok());
}

TEST_F(ChainTest, DescribeCert) {
  CertInfo leaf = DescribeCert(leaf_.get());
  EXPECT_EQ(leaf.subject, "CN=test leaf");
  EXPECT_EQ(leaf.issuer, "CN=test root");
  EXPECT_EQ(leaf.serial_hex, "1234");
  EXPECT_EQ(leaf.not_before, kNow - absl::Hours(1));
  EXPECT_EQ(leaf.not_after, kNow + absl::Hours(24));
  EXPECT_EQ(leaf.dns_sans, std::vector<std::string>{"device.example"});
  EXPECT_EQ(leaf.ip_sans, (std::vector<std::string>{"10.0.0.1", "::1"}));
  EXPECT_EQ(leaf.uri_sans, std::vector<std::string>{"urn:simprov:test"});
  EXPECT_FALSE(leaf.is_ca);

  CertInfo root = DescribeCert(root_.get());
  EXPECT_TRUE(root.is_ca);
  EXPECT_EQ(root.serial_hex, "01");
  EXPECT_TRUE(root.dns_sans.empty());
}

}  // namespace
}  // namespace simprov
