#include "common/csr.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
#include "test/common/cert_testing.h"

namespace simprov {
namespace {

using testing::GenerateKey;
using testing::GenerateRsaKey;

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

}  // namespace
}  // namespace simprov
