#include "common/sealed_box.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {
namespace {

Bytes Kek(uint8_t base) {
  Bytes k(kKekSize);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(base + i);
  return k;
}

// K || OPc of a subscriber: 32 recognisable bytes.
Bytes SubscriberKeys() {
  return *HexDecode(
      "465b5ce8b199b49faa5f0a2ee238a6bc"
      "cd63cb71954a9f4e48a5994e37a02baf");
}

const Bytes kImsi = ToBytes("001010000000001");

// Decrypts a box with raw OpenSSL, reading the documented layout
// 0x01 || nonce (12) || ciphertext || tag (16); nullopt if it does not open.
std::optional<Bytes> OpenWithRawOpenSsl(const Bytes& kek, const Bytes& box,
                                        const Bytes& aad) {
  if (box.size() < 1 + 12 + 16) return std::nullopt;
  const uint8_t* nonce = box.data() + 1;
  const uint8_t* ct = nonce + 12;
  const size_t ct_len = box.size() - 1 - 12 - 16;
  Bytes tag(ct + ct_len, ct + ct_len + 16);
  Bytes out(ct_len + 16);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0;
  bool ok =
      EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) ==
          1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
      EVP_DecryptInit_ex(ctx, nullptr, nullptr, kek.data(), nonce) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(),
                        static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx, out.data(), &len, ct, static_cast<int>(ct_len)) ==
          1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag.data()) == 1 &&
      EVP_DecryptFinal_ex(ctx, out.data() + len, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return std::nullopt;
  out.resize(len + fin);
  return out;
}

TEST(SealedBoxTest, RoundTrip) {
  DeterministicRandom random(1);
  const Bytes plain = SubscriberKeys();
  const Bytes box = SealBox(Kek(1), plain, kImsi, random);
  auto opened = OpenBox(Kek(1), box, kImsi);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plain);
}

TEST(SealedBoxTest, RoundTripEmptyPlaintextAndEmptyAad) {
  DeterministicRandom random(2);
  const Bytes box = SealBox(Kek(1), Bytes{}, Bytes{}, random);
  EXPECT_EQ(box.size(), 1u + 12 + 16);
  auto opened = OpenBox(Kek(1), box, Bytes{});
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->empty());
  // Empty and non-empty associated data are different owners.
  EXPECT_FALSE(OpenBox(Kek(1), box, kImsi).ok());
}

TEST(SealedBoxTest, RoundTripWithRealRandom) {
  const Bytes plain = ToBytes("some secret of 23 bytes");
  const Bytes box = SealBox(Kek(9), plain, kImsi, Random::Real());
  auto opened = OpenBox(Kek(9), box, kImsi);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plain);
}

TEST(SealedBoxTest, LayoutIsVersionNonceCiphertextTag) {
  const Bytes plain = SubscriberKeys();
  DeterministicRandom random(3);
  const Bytes box = SealBox(Kek(1), plain, kImsi, random);
  ASSERT_EQ(box.size(), 1 + 12 + plain.size() + 16);
  EXPECT_EQ(box[0], 1);
  EXPECT_EQ(box[0], kSealedBoxVersion);
  // The nonce is the next 12 bytes of the random source.
  DeterministicRandom same(3);
  const Bytes nonce = same.Generate(12);
  EXPECT_EQ(Bytes(box.begin() + 1, box.begin() + 13), nonce);
  // The ciphertext is not the plaintext.
  EXPECT_NE(Bytes(box.begin() + 13, box.begin() + 13 + plain.size()), plain);
  // Standard AES-256-GCM opens it, with the IMSI as associated data.
  auto raw = OpenWithRawOpenSsl(Kek(1), box, kImsi);
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(*raw, plain);
  EXPECT_FALSE(OpenWithRawOpenSsl(Kek(1), box, ToBytes("x")).has_value());
}

TEST(SealedBoxTest, SizeForSeveralLengths) {
  DeterministicRandom random(4);
  for (size_t len : {0u, 1u, 15u, 16u, 17u, 32u, 100u, 1000u}) {
    Bytes plain(len, 0xa5);
    Bytes box = SealBox(Kek(1), plain, kImsi, random);
    EXPECT_EQ(box.size(), 1 + 12 + len + 16) << len;
    EXPECT_EQ(box[0], 1) << len;
    auto opened = OpenBox(Kek(1), box, kImsi);
    ASSERT_TRUE(opened.ok()) << len;
    EXPECT_EQ(*opened, plain);
  }
}

TEST(SealedBoxTest, WrongKekFails) {
  DeterministicRandom random(5);
  const Bytes box = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  auto opened = OpenBox(Kek(2), box, kImsi);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  // One bit of the KEK is enough.
  Bytes kek = Kek(1);
  kek[31] ^= 0x01;
  EXPECT_FALSE(OpenBox(kek, box, kImsi).ok());
}

TEST(SealedBoxTest, KekOfWrongSizeIsRejected) {
  DeterministicRandom random(6);
  const Bytes box = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  Bytes short_kek = Kek(1);
  short_kek.pop_back();
  auto opened = OpenBox(short_kek, box, kImsi);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  Bytes long_kek = Kek(1);
  long_kek.push_back(0);
  EXPECT_EQ(OpenBox(long_kek, box, kImsi).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SealedBoxDeathTest, SealWithKekOfWrongSizeAborts) {
  DeterministicRandom random(7);
  Bytes short_kek(31, 1);
  EXPECT_DEATH(SealBox(short_kek, SubscriberKeys(), kImsi, random), "");
}

// Required by the spec: a box moved to another subscriber's row must not open.
TEST(SealedBoxTest, WrongImsiAsAssociatedDataFails) {
  DeterministicRandom random(8);
  const Bytes box = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  for (const char* other : {"001010000000002", "00101000000000",
                            "0010100000000010", "", "001010000000001 "}) {
    SCOPED_TRACE(other);
    auto opened = OpenBox(Kek(1), box, ToBytes(other));
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  }
  // The right owner still opens it.
  EXPECT_TRUE(OpenBox(Kek(1), box, kImsi).ok());
}

TEST(SealedBoxTest, EverySingleByteFlipFails) {
  DeterministicRandom random(9);
  const Bytes box = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  for (size_t i = 0; i < box.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      Bytes bad = box;
      bad[i] ^= mask;
      auto opened = OpenBox(Kek(1), bad, kImsi);
      EXPECT_FALSE(opened.ok()) << "byte " << i << " mask " << int{mask};
      if (!opened.ok()) {
        EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
      }
    }
  }
}

TEST(SealedBoxTest, TruncatedBoxesFail) {
  DeterministicRandom random(10);
  const Bytes box = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  for (size_t len = 0; len < box.size(); ++len) {
    Bytes cut(box.begin(), box.begin() + len);
    auto opened = OpenBox(Kek(1), cut, kImsi);
    EXPECT_FALSE(opened.ok()) << "length " << len;
  }
  // Dropping bytes at the front fails too.
  Bytes front(box.begin() + 1, box.end());
  EXPECT_FALSE(OpenBox(Kek(1), front, kImsi).ok());
  // And so does appending a byte.
  Bytes longer = box;
  longer.push_back(0);
  EXPECT_FALSE(OpenBox(Kek(1), longer, kImsi).ok());
}

TEST(SealedBoxTest, VersionOtherThanOneFails) {
  DeterministicRandom random(11);
  const Bytes box = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  for (int v : {0, 2, 0x7f, 0x81, 0xff}) {
    Bytes bad = box;
    bad[0] = static_cast<uint8_t>(v);
    auto opened = OpenBox(Kek(1), bad, kImsi);
    ASSERT_FALSE(opened.ok()) << v;
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss) << v;
  }
}

TEST(SealedBoxTest, TwoSealsOfTheSamePlaintextDiffer) {
  DeterministicRandom random(12);
  const Bytes a = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  const Bytes b = SealBox(Kek(1), SubscriberKeys(), kImsi, random);
  EXPECT_NE(a, b);
  EXPECT_NE(Bytes(a.begin() + 1, a.begin() + 13),
            Bytes(b.begin() + 1, b.begin() + 13));
  const Bytes c = SealBox(Kek(1), SubscriberKeys(), kImsi, Random::Real());
  const Bytes d = SealBox(Kek(1), SubscriberKeys(), kImsi, Random::Real());
  EXPECT_NE(c, d);
  for (const Bytes* box : {&a, &b, &c, &d}) {
    auto opened = OpenBox(Kek(1), *box, kImsi);
    ASSERT_TRUE(opened.ok());
    EXPECT_EQ(*opened, SubscriberKeys());
  }
}

TEST(SealedBoxTest, SameRandomSeedGivesSameBox) {
  DeterministicRandom r1(13), r2(13);
  EXPECT_EQ(SealBox(Kek(1), SubscriberKeys(), kImsi, r1),
            SealBox(Kek(1), SubscriberKeys(), kImsi, r2));
}

TEST(SealedBoxTest, ErrorsNeverContainThePlaintext) {
  DeterministicRandom random(14);
  const Bytes plain = SubscriberKeys();
  const std::string hex = HexEncode(plain);
  const std::string upper = absl::AsciiStrToUpper(hex);
  const Bytes box = SealBox(Kek(1), plain, kImsi, random);

  std::vector<absl::Status> errors;
  errors.push_back(OpenBox(Kek(2), box, kImsi).status());
  errors.push_back(OpenBox(Kek(1), box, ToBytes("001010000000002")).status());
  errors.push_back(OpenBox(Bytes(16, 0), box, kImsi).status());
  Bytes flipped = box;
  flipped[20] ^= 1;
  errors.push_back(OpenBox(Kek(1), flipped, kImsi).status());
  Bytes version = box;
  version[0] = 2;
  errors.push_back(OpenBox(Kek(1), version, kImsi).status());
  errors.push_back(
      OpenBox(Kek(1), Bytes(box.begin(), box.begin() + 20), kImsi).status());

  for (const absl::Status& s : errors) {
    ASSERT_FALSE(s.ok());
    const std::string msg(s.message());
    const std::string all = s.ToString();
    EXPECT_FALSE(msg.empty());
    // Neither the whole plaintext nor any 8-byte piece of it, in hex of
    // either case or raw.
    for (size_t i = 0; i + 16 <= hex.size(); i += 2) {
      EXPECT_EQ(all.find(hex.substr(i, 16)), std::string::npos) << all;
      EXPECT_EQ(all.find(upper.substr(i, 16)), std::string::npos) << all;
    }
    EXPECT_EQ(all.find(ToString(plain)), std::string::npos);
    // Nor the box itself (it would hand the ciphertext to a log).
    EXPECT_EQ(all.find(HexEncode(box).substr(26, 32)), std::string::npos);
  }
}

}  // namespace
}  // namespace simprov
