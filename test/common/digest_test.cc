#include "common/digest.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <string>

#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
#include "test/common/cert_testing.h"

namespace simprov {
namespace {

using testing::GenerateKey;
using testing::kNow;
using testing::MakeCert;

// FIPS 180-2 test vectors; both overloads give the same digest.
TEST(DigestTest, Sha256KnownAnswers) {
  EXPECT_EQ(HexEncode(Sha256(ToBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha256(Bytes())),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256(std::string("abc")), Sha256(ToBytes("abc")));
  EXPECT_EQ(Sha256(""), Sha256(Bytes()));
}

// RFC 4231 test cases 1 and 2.
TEST(DigestTest, HmacSha256KnownAnswers) {
  EXPECT_EQ(HexEncode(HmacSha256(Bytes(20, 0x0b), ToBytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HexEncode(HmacSha256(ToBytes("Jefe"),
                                 ToBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(DigestTest, CertSha256IsSha256OfDer) {
  EvpPkeyPtr root_key = GenerateP256Key();
  EvpPkeyPtr leaf_key = GenerateP256Key();
  X509Ptr root =
      MakeCert("test root", root_key.get(), nullptr, root_key.get(), true,
               kNow - absl::Hours(24), kNow + absl::Hours(24 * 365), 1);
  X509Ptr leaf =
      MakeCert("test leaf", leaf_key.get(), root.get(), root_key.get(), false,
               kNow - absl::Hours(1), kNow + absl::Hours(24), 0x1234);
  EXPECT_EQ(CertSha256(leaf.get()), Sha256(CertToDer(leaf.get())));
  EXPECT_NE(CertSha256(leaf.get()), CertSha256(root.get()));
  EXPECT_EQ(CertSha256(nullptr), Bytes());
}

TEST(DigestTest, SigningDigestForKeyType) {
  EvpPkeyPtr p256 = GenerateP256Key();
  EvpPkeyPtr ed25519 = GenerateKey("ED25519", nullptr);
  EvpPkeyPtr ed448 = GenerateKey("ED448", nullptr);
  EXPECT_EQ(SigningDigestFor(p256.get()), EVP_sha256());
  EXPECT_EQ(SigningDigestFor(ed25519.get()), nullptr);
  EXPECT_EQ(SigningDigestFor(ed448.get()), nullptr);
}

// FIPS 180-2 "abc" split across updates, and a long input in uneven pieces,
// give the one-shot digest.
TEST(DigestTest, HasherOverPiecesEqualsOneShot) {
  Sha256Hasher abc;
  abc.Update("a");
  abc.Update("");
  abc.Update("bc");
  EXPECT_EQ(HexEncode(abc.Final()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 7));
  Sha256Hasher pieces;
  for (size_t at = 0, n = 1; at < data.size(); at += n, n = n * 3 + 1) {
    pieces.Update(absl::string_view(data).substr(at, n));
  }
  EXPECT_EQ(pieces.Final(), Sha256(data));
}

}  // namespace
}  // namespace simprov
