#include "common/transcript.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/kdf.h"

namespace simprov {
namespace {

Bytes Hex(const std::string& hex) {
  auto b = HexDecode(hex);
  EXPECT_TRUE(b.ok()) << hex;
  return b.ok() ? *b : Bytes();
}

SessionKeys TestKeys() {
  // KDF vector 1 of docs/kdf-vectors.md.
  return DeriveSessionKeys(Hex("b40ba9a3c58b2a05bbf0d987b21bf8cb"),
                           Hex("f769bcd751044604127672711c6d3441"),
                           Hex("23553cbe9637a89d218ae64dae47bf35"),
                           "001010000000001", "broker.example.net");
}

SessionKeys OtherKeys() {
  return DeriveSessionKeys(Hex("b40ba9a3c58b2a05bbf0d987b21bf8cb"),
                           Hex("f769bcd751044604127672711c6d3441"),
                           Hex("23553cbe9637a89d218ae64dae47bf36"),
                           "001010000000001", "broker.example.net");
}

EnrolTranscript SmallTranscript() {
  EnrolTranscript t;
  t.version = 1;
  t.broker_identity = "b";
  t.session_id = {0xaa, 0xbb};
  t.imsi = "12";
  t.rand = {0x01};
  t.autn = {0x02};
  t.res = {};
  t.nonce = {0x03, 0x04};
  t.csr_der = {0x30};
  t.imei = "9";
  t.iccid = "";
  return t;
}

EnrolTranscript FullTranscript() {
  EnrolTranscript t;
  t.broker_identity = "broker.example.net";
  t.session_id = Bytes(16, 0x11);
  t.imsi = "001010000000001";
  t.rand = Hex("23553cbe9637a89d218ae64dae47bf35");
  t.autn = Bytes(16, 0x22);
  t.res = Bytes(8, 0x33);
  t.nonce = Bytes(kNonceSize, 0x44);
  t.csr_der = Bytes(300, 0x55);
  t.imei = "490154203237518";
  t.iccid = "8944500102198304826";
  return t;
}

TEST(TranscriptTest, EncodingIsTheDocumentedLayout) {
  // "simprov-v1 enrol" || for each field: 4-byte BE length || bytes.
  const std::string expected =
      "73696d70726f762d763120656e726f6c"  // "simprov-v1 enrol"
      "00000004"
      "00000001"  // version 1, as 4 bytes BE
      "00000001"
      "62"  // broker identity "b"
      "00000002"
      "aabb"  // session id
      "00000002"
      "3132"  // IMSI "12"
      "00000001"
      "01"  // RAND
      "00000001"
      "02"        // AUTN
      "00000000"  // RES (empty)
      "00000002"
      "0304"  // device nonce
      "00000001"
      "30"  // CSR
      "00000001"
      "39"         // IMEI "9"
      "00000000";  // ICCID (empty)
  EXPECT_EQ(HexEncode(EncodeTranscript(SmallTranscript())), expected);
}

TEST(TranscriptTest, VersionIsFourBytesBigEndian) {
  EnrolTranscript t = SmallTranscript();
  t.version = 0x01020304;
  Bytes enc = EncodeTranscript(t);
  ASSERT_GE(enc.size(), 24u);
  EXPECT_EQ(HexEncode(Bytes(enc.begin() + 16, enc.begin() + 24)),
            "0000000401020304");
}

TEST(TranscriptTest, LongFieldLengthIsBigEndian) {
  EnrolTranscript t = SmallTranscript();
  t.csr_der = Bytes(0x0102, 0x30);
  Bytes enc = EncodeTranscript(t);
  // Label 16, version 8, broker 5, session 6, imsi 6, rand 5, autn 5, res 4,
  // nonce 6 = 61 bytes before the CSR's length.
  ASSERT_GE(enc.size(), 65u);
  EXPECT_EQ(HexEncode(Bytes(enc.begin() + 61, enc.begin() + 65)), "00000102");
  EXPECT_EQ(enc.size(), 75u - 1 + 0x0102);
}

// Expected values from Python:
//   enc = bytes.fromhex(<the layout above>)
//   hmac.new(bytes.fromhex("936bf7...4bcc"), enc, hashlib.sha256).hexdigest()
//   hashlib.sha256(enc).hexdigest()
TEST(TranscriptTest, MacAndHashMatchIndependentValues) {
  const SessionKeys keys = TestKeys();
  ASSERT_EQ(HexEncode(keys.req_mac),
            "936bf73d16a61a031b602e1ce1405f5d55556fbe1343b663a4d36c70e0fb4bcc");
  const Bytes enc = EncodeTranscript(SmallTranscript());
  EXPECT_EQ(HexEncode(TranscriptMac(keys, enc)),
            "16c89d38d6791262e02f0d260510ff827db7a990784705410cf66e428d88b033");
  EXPECT_EQ(HexEncode(Sha256(enc)),
            "1d5739e896767622f72eece9ece1cc0814ff0c90c0d93aab3ba598f397dddabe");
  EXPECT_EQ(TranscriptMac(keys, enc).size(), kMacSize);
}

TEST(TranscriptTest, MacUsesTheReqMacKeyOnly) {
  const SessionKeys keys = TestKeys();
  const Bytes enc = EncodeTranscript(FullTranscript());
  EXPECT_EQ(TranscriptMac(keys, enc), HmacSha256(keys.req_mac, enc));
  EXPECT_NE(TranscriptMac(keys, enc), HmacSha256(keys.resp_mac, enc));
  EXPECT_NE(TranscriptMac(OtherKeys(), enc), TranscriptMac(keys, enc));
}

TEST(TranscriptTest, ChangingAnyFieldChangesTheMac) {
  const SessionKeys keys = TestKeys();
  const Bytes base_enc = EncodeTranscript(FullTranscript());
  const Bytes base_mac = TranscriptMac(keys, base_enc);
  const std::vector<
      std::pair<std::string, std::function<void(EnrolTranscript&)>>>
      mutations = {
          {"version", [](EnrolTranscript& t) { t.version = 2; }},
          {"broker", [](EnrolTranscript& t) { t.broker_identity[0] ^= 1; }},
          {"session", [](EnrolTranscript& t) { t.session_id[15] ^= 1; }},
          {"imsi", [](EnrolTranscript& t) { t.imsi[14] = '2'; }},
          {"rand", [](EnrolTranscript& t) { t.rand[0] ^= 0x80; }},
          {"autn", [](EnrolTranscript& t) { t.autn[7] ^= 1; }},
          {"res", [](EnrolTranscript& t) { t.res[0] ^= 1; }},
          {"nonce", [](EnrolTranscript& t) { t.nonce[31] ^= 1; }},
          {"csr", [](EnrolTranscript& t) { t.csr_der[150] ^= 1; }},
          {"imei", [](EnrolTranscript& t) { t.imei[0] = '5'; }},
          {"iccid", [](EnrolTranscript& t) { t.iccid.back() = '5'; }},
          {"res shorter", [](EnrolTranscript& t) { t.res.pop_back(); }},
          {"iccid empty", [](EnrolTranscript& t) { t.iccid.clear(); }},
          {"csr longer", [](EnrolTranscript& t) { t.csr_der.push_back(0); }},
      };
  for (const auto& [name, mutate] : mutations) {
    SCOPED_TRACE(name);
    EnrolTranscript t = FullTranscript();
    mutate(t);
    const Bytes enc = EncodeTranscript(t);
    EXPECT_NE(enc, base_enc);
    EXPECT_NE(TranscriptMac(keys, enc), base_mac);
    EXPECT_NE(Sha256(enc), Sha256(base_enc));
  }
}

// The fields as byte strings, in encoding order, so that a test can move a
// byte across a boundary generically.
std::vector<Bytes> Fields(const EnrolTranscript& t) {
  return {ToBytes(t.broker_identity),
          t.session_id,
          ToBytes(t.imsi),
          t.rand,
          t.autn,
          t.res,
          t.nonce,
          t.csr_der,
          ToBytes(t.imei),
          ToBytes(t.iccid)};
}

EnrolTranscript FromFields(uint32_t version, const std::vector<Bytes>& f) {
  EnrolTranscript t;
  t.version = version;
  t.broker_identity = ToString(f[0]);
  t.session_id = f[1];
  t.imsi = ToString(f[2]);
  t.rand = f[3];
  t.autn = f[4];
  t.res = f[5];
  t.nonce = f[6];
  t.csr_der = f[7];
  t.imei = ToString(f[8]);
  t.iccid = ToString(f[9]);
  return t;
}

TEST(TranscriptTest, LengthPrefixesPreventAmbiguity) {
  const SessionKeys keys = TestKeys();
  const EnrolTranscript base = FullTranscript();
  ASSERT_EQ(EncodeTranscript(FromFields(base.version, Fields(base))),
            EncodeTranscript(base));
  const Bytes base_enc = EncodeTranscript(base);
  const Bytes base_mac = TranscriptMac(keys, base_enc);
  const std::vector<Bytes> fields = Fields(base);
  for (size_t i = 0; i + 1 < fields.size(); ++i) {
    SCOPED_TRACE(i);
    // Move the last byte of field i to the front of field i+1 (when field i
    // is empty, move the first byte of i+1 back instead). The concatenation
    // of all field bytes stays the same.
    std::vector<Bytes> moved = fields;
    if (!moved[i].empty()) {
      moved[i + 1].insert(moved[i + 1].begin(), moved[i].back());
      moved[i].pop_back();
    } else {
      ASSERT_FALSE(moved[i + 1].empty());
      moved[i].push_back(moved[i + 1].front());
      moved[i + 1].erase(moved[i + 1].begin());
    }
    const Bytes enc = EncodeTranscript(FromFields(base.version, moved));
    EXPECT_EQ(enc.size(), base_enc.size());
    EXPECT_NE(enc, base_enc);
    EXPECT_NE(TranscriptMac(keys, enc), base_mac);
  }
}

TEST(TranscriptTest, EmptyFieldIsNotSkipped) {
  // {"ab", ""} and {"a", "b"} style: an empty field still costs 4 bytes.
  EnrolTranscript a = SmallTranscript();
  a.imei = "9";
  a.iccid = "";
  EnrolTranscript b = SmallTranscript();
  b.imei = "";
  b.iccid = "9";
  EXPECT_NE(EncodeTranscript(a), EncodeTranscript(b));
}

// Reads the answer layout by hand: 0x01 || IV (16) || ct || tag (32).
TEST(AnswerTest, LayoutIsEncryptThenMac) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash = Sha256(EncodeTranscript(FullTranscript()));
  const Bytes plain = ToBytes("-----BEGIN CERTIFICATE-----\nMIIB...\n");
  DeterministicRandom random(1);
  const Bytes box = SealAnswer(keys, request_hash, plain, random);
  ASSERT_EQ(box.size(), 1 + 16 + plain.size() + 32);
  EXPECT_EQ(box[0], 1);
  DeterministicRandom same(1);
  const Bytes iv = same.Generate(16);
  EXPECT_EQ(Bytes(box.begin() + 1, box.begin() + 17), iv);

  // tag = HMAC-SHA-256(resp_mac, "simprov-v1 answer" || request_hash ||
  //                    0x01 || IV || ciphertext)
  Bytes mac_input = ToBytes("simprov-v1 answer");
  mac_input.insert(mac_input.end(), request_hash.begin(), request_hash.end());
  mac_input.insert(mac_input.end(), box.begin(), box.end() - 32);
  EXPECT_EQ(Bytes(box.end() - 32, box.end()),
            HmacSha256(keys.resp_mac, mac_input));

  // AES-256-CTR(resp_enc, IV) with plain OpenSSL recovers the plaintext.
  Bytes out(plain.size());
  int len = 0;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ASSERT_EQ(EVP_DecryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr,
                               keys.resp_enc.data(), iv.data()),
            1);
  ASSERT_EQ(EVP_DecryptUpdate(ctx, out.data(), &len, box.data() + 17,
                              static_cast<int>(plain.size())),
            1);
  EVP_CIPHER_CTX_free(ctx);
  EXPECT_EQ(out, plain);
  EXPECT_NE(Bytes(box.begin() + 17, box.end() - 32), plain);
}

TEST(AnswerTest, RoundTrip) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash = Sha256(EncodeTranscript(FullTranscript()));
  DeterministicRandom random(2);
  for (size_t len : {0u, 1u, 15u, 16u, 17u, 1000u}) {
    Bytes plain(len);
    for (size_t i = 0; i < len; ++i) plain[i] = static_cast<uint8_t>(i * 7);
    const Bytes box = SealAnswer(keys, request_hash, plain, random);
    EXPECT_EQ(box.size(), 1 + 16 + len + 32);
    auto opened = OpenAnswer(keys, request_hash, box);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plain);
  }
}

TEST(AnswerTest, TwoSealsDifferByIv) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash(32, 0x42);
  DeterministicRandom random(3);
  const Bytes plain = ToBytes("same plaintext");
  const Bytes a = SealAnswer(keys, request_hash, plain, random);
  const Bytes b = SealAnswer(keys, request_hash, plain, random);
  EXPECT_NE(a, b);
  EXPECT_EQ(*OpenAnswer(keys, request_hash, a), plain);
  EXPECT_EQ(*OpenAnswer(keys, request_hash, b), plain);
}

void ExpectUnauthenticated(const absl::StatusOr<Bytes>& r) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
      << r.status();
}

TEST(AnswerTest, FlippedByteAnywhereFails) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash = Sha256(EncodeTranscript(FullTranscript()));
  DeterministicRandom random(4);
  const Bytes box =
      SealAnswer(keys, request_hash, ToBytes("certificate chain"), random);
  for (size_t i = 0; i < box.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      SCOPED_TRACE(testing::Message() << "byte " << i << " mask " << +mask);
      Bytes bad = box;
      bad[i] ^= mask;
      ExpectUnauthenticated(OpenAnswer(keys, request_hash, bad));
    }
  }
}

TEST(AnswerTest, OtherRequestHashFails) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash = Sha256(EncodeTranscript(FullTranscript()));
  DeterministicRandom random(5);
  const Bytes box = SealAnswer(keys, request_hash, ToBytes("answer"), random);
  for (size_t i = 0; i < request_hash.size(); ++i) {
    Bytes other = request_hash;
    other[i] ^= 0x01;
    ExpectUnauthenticated(OpenAnswer(keys, other, box));
  }
  EnrolTranscript t = FullTranscript();
  t.nonce[0] ^= 1;
  ExpectUnauthenticated(OpenAnswer(keys, Sha256(EncodeTranscript(t)), box));
  ExpectUnauthenticated(OpenAnswer(keys, Bytes{}, box));
  Bytes shorter(request_hash.begin(), request_hash.end() - 1);
  ExpectUnauthenticated(OpenAnswer(keys, shorter, box));
}

TEST(AnswerTest, OtherKeysFail) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash(32, 0x42);
  DeterministicRandom random(6);
  const Bytes box = SealAnswer(keys, request_hash, ToBytes("answer"), random);
  ExpectUnauthenticated(OpenAnswer(OtherKeys(), request_hash, box));

  // Another resp_mac alone is enough to fail.
  SessionKeys wrong_mac;
  wrong_mac.req_mac = keys.req_mac;
  wrong_mac.resp_mac = keys.resp_mac;
  wrong_mac.resp_mac[0] ^= 1;
  wrong_mac.resp_enc = keys.resp_enc;
  ExpectUnauthenticated(OpenAnswer(wrong_mac, request_hash, box));

  // Keys with the roles swapped (the agent's req-mac key) fail too.
  SessionKeys swapped;
  swapped.req_mac = keys.resp_mac;
  swapped.resp_mac = keys.req_mac;
  swapped.resp_enc = keys.resp_enc;
  ExpectUnauthenticated(OpenAnswer(swapped, request_hash, box));
}

TEST(AnswerTest, TruncationFails) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash(32, 0x42);
  DeterministicRandom random(7);
  const Bytes box =
      SealAnswer(keys, request_hash, ToBytes("a longer answer body"), random);
  for (size_t len = 0; len < box.size(); ++len) {
    SCOPED_TRACE(len);
    ExpectUnauthenticated(
        OpenAnswer(keys, request_hash, Bytes(box.begin(), box.begin() + len)));
  }
  ExpectUnauthenticated(
      OpenAnswer(keys, request_hash, Bytes(box.begin() + 1, box.end())));
  Bytes longer = box;
  longer.push_back(0);
  ExpectUnauthenticated(OpenAnswer(keys, request_hash, longer));
}

TEST(AnswerTest, WrongVersionFails) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash(32, 0x42);
  DeterministicRandom random(8);
  const Bytes box = SealAnswer(keys, request_hash, ToBytes("answer"), random);
  for (int v : {0, 2, 0xff}) {
    Bytes bad = box;
    bad[0] = static_cast<uint8_t>(v);
    ExpectUnauthenticated(OpenAnswer(keys, request_hash, bad));
  }
}

TEST(AnswerTest, ErrorDoesNotExposePlaintext) {
  const SessionKeys keys = TestKeys();
  const Bytes request_hash(32, 0x42);
  DeterministicRandom random(9);
  const std::string secret = "PRIVATE-KEY-MATERIAL";
  const Bytes box = SealAnswer(keys, request_hash, ToBytes(secret), random);
  Bytes bad = box;
  bad[20] ^= 1;
  auto r = OpenAnswer(keys, request_hash, bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().ToString().find(secret), std::string::npos);
  EXPECT_EQ(r.status().ToString().find(HexEncode(ToBytes(secret))),
            std::string::npos);
}

}  // namespace
}  // namespace simprov
