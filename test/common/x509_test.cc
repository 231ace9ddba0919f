#include "common/x509.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1767225600);  // 2026-01-01Z

EvpPkeyPtr GenerateKey(const char* type, const char* group) {
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, type, group));
}
EvpPkeyPtr GenerateRsaKey(size_t bits) {
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
}

// A minimal certificate built directly with OpenSSL (independent of the CA
// code under test in ca_test), signed by `issuer_key`.
X509Ptr MakeCert(const std::string& cn, EVP_PKEY* key, X509* issuer,
                 EVP_PKEY* issuer_key, bool is_ca, absl::Time not_before,
                 absl::Time not_after, long serial) {
  X509Ptr cert(X509_new());
  EXPECT_EQ(X509_set_version(cert.get(), X509_VERSION_3), 1);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(
      cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(),
                 nullptr, nullptr, 0);
  const std::vector<std::pair<int, const char*>> exts = {
      {NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
      {NID_key_usage,
       is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
      {NID_subject_key_identifier, "hash"},
  };
  for (const auto& [nid, value] : exts) {
    X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
    EXPECT_NE(ext, nullptr);
    X509_add_ext(cert.get(), ext.get(), -1);
  }
  if (issuer != nullptr) {
    // AKI lets the verifier tell apart issuers with the same name.
    X509ExtensionPtr aki(X509V3_EXT_nconf_nid(
        nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
    EXPECT_NE(aki, nullptr);
    X509_add_ext(cert.get(), aki.get(), -1);
  }
  if (!is_ca) {
    X509ExtensionPtr eku(
        X509V3_EXT_nconf_nid(nullptr, &ctx, NID_ext_key_usage, "clientAuth"));
    X509_add_ext(cert.get(), eku.get(), -1);
    X509ExtensionPtr san(X509V3_EXT_nconf_nid(
        nullptr, &ctx, NID_subject_alt_name,
        "DNS:device.example,IP:10.0.0.1,IP:::1,URI:urn:simprov:test"));
    X509_add_ext(cert.get(), san.get(), -1);
  }
  EXPECT_GT(X509_sign(cert.get(), issuer_key, EVP_sha256()), 0);
  return cert;
}

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

TEST(CsrTest, CreateAndVerifyP256) {
  EvpPkeyPtr key = GenerateP256Key();
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "001010123456789");
  ASSERT_TRUE(csr.ok()) << csr.status();
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(*csr);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->key_type, "P-256");
  EXPECT_TRUE(SamePublicKey(info->public_key.get(), key.get()));

  // The DER is a v1 request with the expected subject and SHA-256 signature.
  const unsigned char* p = csr->data();
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(csr->size())));
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(X509_REQ_get_version(req.get()), 0);
  EXPECT_EQ(X509_REQ_get_signature_nid(req.get()), NID_ecdsa_with_SHA256);
  char cn[80] = {0};
  X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req.get()),
                            NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "001010123456789");
}

TEST(CsrTest, AcceptsP384Rsa2048AndEd25519) {
  struct Case {
    EvpPkeyPtr key;
    std::string type;
  };
  std::vector<Case> cases;
  cases.push_back({GenerateKey("EC", "P-384"), "P-384"});
  cases.push_back({GenerateRsaKey(2048), "RSA-2048"});
  cases.push_back({GenerateKey("ED25519", nullptr), "Ed25519"});
  for (const Case& c : cases) {
    ASSERT_NE(c.key, nullptr) << c.type;
    absl::StatusOr<Bytes> csr = CreateCsr(c.key.get(), "device");
    ASSERT_TRUE(csr.ok()) << c.type << ": " << csr.status();
    absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(*csr);
    ASSERT_TRUE(info.ok()) << c.type << ": " << info.status();
    EXPECT_EQ(info->key_type, c.type);
    EXPECT_TRUE(SamePublicKey(info->public_key.get(), c.key.get()));
  }
}

TEST(CsrTest, CorruptedSignatureRejected) {
  EvpPkeyPtr key = GenerateP256Key();
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "device");
  ASSERT_TRUE(csr.ok());
  Bytes bad = *csr;
  bad.back() ^= 0x01;  // Last byte of the ECDSA signature's s value.
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(bad);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("signature"), std::string::npos)
      << info.status();
}

TEST(CsrTest, CorruptedSubjectRejected) {
  EvpPkeyPtr key = GenerateP256Key();
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "device-AAAA");
  ASSERT_TRUE(csr.ok());
  std::string text = ToString(*csr);
  size_t pos = text.find("AAAA");
  ASSERT_NE(pos, std::string::npos);
  text[pos] = 'B';  // Same length, valid DER, signature no longer matches.
  EXPECT_EQ(ParseAndVerifyCsr(ToBytes(text)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CsrTest, RejectsP224WithTypeInMessage) {
  EvpPkeyPtr key = GenerateKey("EC", "P-224");
  ASSERT_NE(key, nullptr);
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "device");
  ASSERT_TRUE(csr.ok());
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(*csr);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("P-224"), std::string::npos)
      << info.status();
}

TEST(CsrTest, RejectsRsa1024WithTypeInMessage) {
  EvpPkeyPtr key = GenerateRsaKey(1024);
  ASSERT_NE(key, nullptr);
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "device");
  ASSERT_TRUE(csr.ok());
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(*csr);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("RSA-1024"), std::string::npos)
      << info.status();
}

TEST(CsrTest, RejectsEd448WithTypeInMessage) {
  EvpPkeyPtr key = GenerateKey("ED448", nullptr);
  ASSERT_NE(key, nullptr);
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "device");
  ASSERT_TRUE(csr.ok()) << csr.status();
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(*csr);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("ED448"), std::string::npos)
      << info.status();
}

TEST(CsrTest, RejectsSha1Signature) {
  EvpPkeyPtr key = GenerateP256Key();
  X509ReqPtr req(X509_REQ_new());
  X509_NAME_add_entry_by_txt(
      X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_UTF8,
      reinterpret_cast<const unsigned char*>("d"), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), key.get());
  ASSERT_GT(X509_REQ_sign(req.get(), key.get(), EVP_sha1()), 0);
  int len = i2d_X509_REQ(req.get(), nullptr);
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  i2d_X509_REQ(req.get(), &p);
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(der);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("SHA1"), std::string::npos)
      << info.status();
}

TEST(CsrTest, RejectsMalformedInput) {
  EXPECT_EQ(ParseAndVerifyCsr(Bytes()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAndVerifyCsr(ToBytes("hello, not DER")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAndVerifyCsr(Bytes(kMaxCsrDerSize + 1, 0x30)).status().code(),
            absl::StatusCode::kInvalidArgument);

  EvpPkeyPtr key = GenerateP256Key();
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "device");
  ASSERT_TRUE(csr.ok());
  Bytes trailing = *csr;
  trailing.push_back(0);
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(trailing);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("trailing"), std::string::npos);
  Bytes truncated(csr->begin(), csr->end() - 1);
  EXPECT_FALSE(ParseAndVerifyCsr(truncated).ok());
}

// ParseAndVerifyCsr walks the common P-256 shape itself; the general
// OpenSSL path must agree with it on every input: the same verdict and, when
// accepted, the same key.
TEST(CsrTest, FastPathAgreesWithGeneralPathOnMutatedInput) {
  EvpPkeyPtr key = GenerateP256Key();
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "001010123456789");
  ASSERT_TRUE(csr.ok());
  ASSERT_TRUE(ParseAndVerifyCsr(*csr).ok());
  ASSERT_TRUE(internal::ParseAndVerifyCsrGeneral(*csr).ok());

  std::mt19937 rng(20261128);
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    Bytes m = *csr;
    switch (i % 4) {
      case 0:  // flip one bit
        m[rng() % m.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:  // replace one byte
        m[rng() % m.size()] = static_cast<uint8_t>(rng());
        break;
      case 2:  // truncate
        m.resize(rng() % m.size());
        break;
      case 3:  // insert one byte
        m.insert(m.begin() + static_cast<long>(rng() % (m.size() + 1)),
                 static_cast<uint8_t>(rng()));
        break;
    }
    if (m == *csr) continue;  // a byte replaced by itself
    absl::StatusOr<CsrInfo> fast = ParseAndVerifyCsr(m);
    absl::StatusOr<CsrInfo> general = internal::ParseAndVerifyCsrGeneral(m);
    ASSERT_EQ(fast.ok(), general.ok())
        << "mutation " << i << ": fast=" << fast.status()
        << " general=" << general.status() << " csr=" << HexEncode(m);
    if (fast.ok()) {
      ++accepted;
      EXPECT_TRUE(
          SamePublicKey(fast->public_key.get(), general->public_key.get()));
      EXPECT_EQ(fast->key_type, general->key_type);
    }
  }
  // Mutations inside the subject can keep the signature valid only if they
  // do not change the signed bytes, i.e. never: nothing mutated verifies.
  EXPECT_EQ(accepted, 0);
}

TEST(CsrTest, FastPathRejectsWrongSignatureAndOffCurvePoint) {
  EvpPkeyPtr key = GenerateP256Key();
  EvpPkeyPtr other = GenerateP256Key();
  absl::StatusOr<Bytes> csr = CreateCsr(key.get(), "device");
  ASSERT_TRUE(csr.ok());
  // Swap in another key's point: well-formed, but the signature is not its.
  absl::StatusOr<Bytes> other_spki = PublicKeyToDer(other.get());
  absl::StatusOr<Bytes> spki = PublicKeyToDer(key.get());
  ASSERT_TRUE(other_spki.ok() && spki.ok());
  Bytes swapped = *csr;
  auto at =
      std::search(swapped.begin(), swapped.end(), spki->begin(), spki->end());
  ASSERT_NE(at, swapped.end());
  std::copy(other_spki->begin(), other_spki->end(), at);
  absl::StatusOr<CsrInfo> info = ParseAndVerifyCsr(swapped);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("does not verify"), std::string::npos);
  // A point off the curve (Y + 1).
  Bytes off = *csr;
  at = std::search(off.begin(), off.end(), spki->begin(), spki->end());
  off[static_cast<size_t>(at - off.begin()) + spki->size() - 1] ^= 1;
  info = ParseAndVerifyCsr(off);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("cannot be decoded"),
            std::string::npos);
}

TEST(CsrTest, CreateCsrValidatesInput) {
  EvpPkeyPtr key = GenerateP256Key();
  EXPECT_FALSE(CreateCsr(nullptr, "device").ok());
  EXPECT_FALSE(CreateCsr(key.get(), "").ok());
  EXPECT_FALSE(CreateCsr(key.get(), std::string(65, 'a')).ok());
  EXPECT_TRUE(CreateCsr(key.get(), std::string(64, 'a')).ok());
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

TEST_F(ChainTest, Digests) {
  EXPECT_EQ(HexEncode(Sha256(ToBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha256(Bytes())),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(CertSha256(leaf_.get()), Sha256(CertToDer(leaf_.get())));
  EXPECT_NE(CertSha256(leaf_.get()), CertSha256(root_.get()));
}

}  // namespace
}  // namespace simprov
