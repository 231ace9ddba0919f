// Kdf33220 / DeriveSessionKeys against values computed independently with
// Python's hmac/hashlib, following the byte layout documented in kdf.h:
//   S = 0x7E || P0 || L0 || P1 || L1 || P2 || L2 || P3 || L3
//   (P0 = label, P1 = RAND, P2 = IMSI, P3 = broker identity; Li 2-byte BE)
//   Kx = HMAC-SHA-256(CK || IK, S)
//
// The expected values were produced once, by hand, with this one-liner
// (wrapped here; docs/kdf-vectors.md has it on one line), run once per vector
// with the arguments CK IK RAND IMSI BROKER:
//
//   python3 -c 'import hmac,hashlib,sys;P=lambda b:b+len(b).to_bytes(2,"big");
//     ck,ik,r=(bytes.fromhex(x) for x in sys.argv[1:4]);[print(l,hmac.new(
//     ck+ik,b"\x7e"+P(l.encode())+P(r)+P(sys.argv[4].encode())+
//     P(sys.argv[5].encode()),hashlib.sha256).hexdigest()) for l in
//     ("simprov-v1 req-mac","simprov-v1 resp-mac","simprov-v1 resp-enc")]'
//     b40ba9a3c58b2a05bbf0d987b21bf8cb f769bcd751044604127672711c6d3441
//     23553cbe9637a89d218ae64dae47bf35 001010000000001 broker.example.net
//
// The same vectors, with the byte string S, are in docs/kdf-vectors.md.
#include "common/kdf.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/bytes.h"

namespace simprov {
namespace {

Bytes Hex(const std::string& hex) {
  auto b = HexDecode(hex);
  EXPECT_TRUE(b.ok()) << hex;
  return b.ok() ? *b : Bytes();
}

struct KdfVector {
  std::string ck, ik, rand, imsi, broker;
  std::string req_mac, resp_mac, resp_enc;
};

const KdfVector kVectors[] = {
    {"b40ba9a3c58b2a05bbf0d987b21bf8cb", "f769bcd751044604127672711c6d3441",
     "23553cbe9637a89d218ae64dae47bf35", "001010000000001",
     "broker.example.net",
     "936bf73d16a61a031b602e1ce1405f5d55556fbe1343b663a4d36c70e0fb4bcc",
     "f9cb1fcf939a3116d155067adad9e52144042e5d899f412b36c77710a8bb4e21",
     "d1f93f1cd1e81236c1d509d91d61ff1ef1f9ea125c25afe3493b80583fd676af"},
    {"00000000000000000000000000000000", "00000000000000000000000000000000",
     "00000000000000000000000000000000", "0", "b",
     "56da5727ec700ea91b5a81f59e09b3505cda93c1766a8286c9cbc81320d2ca38",
     "c93c27cf29a6e34570e233aa710263060ae6452992f8eec2fec291113f0f3fc8",
     "3587a137cbbcfbf0b2f5c4babbeaa242e9bbdd7e424c61d5abda4dbf3f3fabbc"},
    {"000102030405060708090a0b0c0d0e0f", "101112131415161718191a1b1c1d1e1f",
     "ffffffffffffffffffffffffffffffff", "310260123456789",
     "bootstrap.simprov.example",
     "563e69870af49f2520c5354c457dd5199c0140533aaaf94fc22427ee97c9270a",
     "d88d8ee9180c7c42a47d5d25b0f1d8a55dd3ebd56106d3e119d439a615a5ee27",
     "3656d88deae5a7d5474a07850e706b8173250dd78fff015663133bdafd075cf9"},
};

TEST(KdfTest, LabelsAndFcAreAsDocumented) {
  EXPECT_EQ(kKdfFc, 0x7E);
  EXPECT_EQ(kLabelReqMac, "simprov-v1 req-mac");
  EXPECT_EQ(kLabelRespMac, "simprov-v1 resp-mac");
  EXPECT_EQ(kLabelRespEnc, "simprov-v1 resp-enc");
}

TEST(KdfTest, DeriveSessionKeysMatchesIndependentVectors) {
  for (const KdfVector& v : kVectors) {
    SCOPED_TRACE(v.ck + " " + v.imsi + " " + v.broker);
    SessionKeys keys =
        DeriveSessionKeys(Hex(v.ck), Hex(v.ik), Hex(v.rand), v.imsi, v.broker);
    EXPECT_EQ(HexEncode(keys.req_mac), v.req_mac);
    EXPECT_EQ(HexEncode(keys.resp_mac), v.resp_mac);
    EXPECT_EQ(HexEncode(keys.resp_enc), v.resp_enc);
  }
}

TEST(KdfTest, Kdf33220MatchesIndependentVectors) {
  for (const KdfVector& v : kVectors) {
    SCOPED_TRACE(v.ck + " " + v.imsi + " " + v.broker);
    Bytes key = Hex(v.ck);
    Bytes ik = Hex(v.ik);
    key.insert(key.end(), ik.begin(), ik.end());
    const Bytes rand = Hex(v.rand);
    auto kdf = [&](std::string_view label) {
      return HexEncode(
          Kdf33220(key, 0x7E,
                   {ToBytes(label), rand, ToBytes(v.imsi), ToBytes(v.broker)}));
    };
    EXPECT_EQ(kdf("simprov-v1 req-mac"), v.req_mac);
    EXPECT_EQ(kdf("simprov-v1 resp-mac"), v.resp_mac);
    EXPECT_EQ(kdf("simprov-v1 resp-enc"), v.resp_enc);
  }
}

// Other FC values and empty parameters, also from Python:
//   hmac.new(bytes(range(32)), bytes.fromhex("10"+"0000"+"01"+"0001"),
//            hashlib.sha256).hexdigest()
//   hmac.new(bytes(range(32)), bytes.fromhex("10"), hashlib.sha256)...
TEST(KdfTest, Kdf33220GenericFcAndEmptyParameters) {
  Bytes key;
  for (int i = 0; i < 32; ++i) key.push_back(static_cast<uint8_t>(i));
  EXPECT_EQ(HexEncode(Kdf33220(key, 0x10, {Bytes{}, Bytes{0x01}})),
            "0b63bc5581548f9a8b0b4f7c078e4750a865c012ae9b7e75fcf64290085e1a56");
  EXPECT_EQ(HexEncode(Kdf33220(key, 0x10, {})),
            "4c87116c5cd071df1f2c36f25a09654e3c8ec633d1eb7a5cb669d9dfd7e929e7");
  // The length suffix separates parameters: {"", "\x01"} != {"\x01", ""}.
  EXPECT_NE(Kdf33220(key, 0x10, {Bytes{}, Bytes{0x01}}),
            Kdf33220(key, 0x10, {Bytes{0x01}, Bytes{}}));
  // FC is part of S.
  EXPECT_NE(Kdf33220(key, 0x10, {}), Kdf33220(key, 0x11, {}));
}

struct Inputs {
  Bytes ck, ik, rand;
  std::string imsi, broker;
};

Inputs BaseInputs() {
  const KdfVector& v = kVectors[0];
  return {Hex(v.ck), Hex(v.ik), Hex(v.rand), v.imsi, v.broker};
}

SessionKeys Derive(const Inputs& in) {
  return DeriveSessionKeys(in.ck, in.ik, in.rand, in.imsi, in.broker);
}

void ExpectAllKeysDiffer(const SessionKeys& a, const SessionKeys& b) {
  EXPECT_NE(a.req_mac, b.req_mac);
  EXPECT_NE(a.resp_mac, b.resp_mac);
  EXPECT_NE(a.resp_enc, b.resp_enc);
}

TEST(KdfTest, SessionKeysAreDistinctAnd32Bytes) {
  for (const KdfVector& v : kVectors) {
    SessionKeys keys =
        DeriveSessionKeys(Hex(v.ck), Hex(v.ik), Hex(v.rand), v.imsi, v.broker);
    EXPECT_EQ(keys.req_mac.size(), 32u);
    EXPECT_EQ(keys.resp_mac.size(), 32u);
    EXPECT_EQ(keys.resp_enc.size(), 32u);
    EXPECT_NE(keys.req_mac, keys.resp_mac);
    EXPECT_NE(keys.req_mac, keys.resp_enc);
    EXPECT_NE(keys.resp_mac, keys.resp_enc);
  }
}

TEST(KdfTest, DerivationIsDeterministic) {
  SessionKeys a = Derive(BaseInputs());
  SessionKeys b = Derive(BaseInputs());
  EXPECT_EQ(a.req_mac, b.req_mac);
  EXPECT_EQ(a.resp_mac, b.resp_mac);
  EXPECT_EQ(a.resp_enc, b.resp_enc);
}

TEST(KdfTest, EveryBitOfRandChangesAllKeys) {
  const SessionKeys base = Derive(BaseInputs());
  for (size_t bit = 0; bit < 128; ++bit) {
    SCOPED_TRACE(bit);
    Inputs in = BaseInputs();
    in.rand[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    ExpectAllKeysDiffer(base, Derive(in));
  }
}

TEST(KdfTest, EveryBitOfCkAndIkChangesAllKeys) {
  const SessionKeys base = Derive(BaseInputs());
  for (size_t bit = 0; bit < 128; ++bit) {
    SCOPED_TRACE(bit);
    Inputs ck = BaseInputs();
    ck.ck[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    ExpectAllKeysDiffer(base, Derive(ck));
    Inputs ik = BaseInputs();
    ik.ik[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    ExpectAllKeysDiffer(base, Derive(ik));
  }
}

TEST(KdfTest, OneBitOfImsiChangesAllKeys) {
  const SessionKeys base = Derive(BaseInputs());
  Inputs in = BaseInputs();
  for (size_t i = 0; i < in.imsi.size(); ++i) {
    SCOPED_TRACE(i);
    Inputs changed = BaseInputs();
    changed.imsi[i] ^= 0x01;  // '0' <-> '1': still digits
    ExpectAllKeysDiffer(base, Derive(changed));
  }
}

TEST(KdfTest, OneBitOfBrokerIdentityChangesAllKeys) {
  const SessionKeys base = Derive(BaseInputs());
  Inputs in = BaseInputs();
  for (size_t i = 0; i < in.broker.size(); ++i) {
    SCOPED_TRACE(i);
    Inputs changed = BaseInputs();
    changed.broker[i] ^= 0x20;
    ExpectAllKeysDiffer(base, Derive(changed));
  }
}

TEST(KdfTest, MovingBytesBetweenImsiAndBrokerChangesAllKeys) {
  // Without the length fields these two would hash the same bytes.
  Inputs a = BaseInputs();
  a.imsi = "0010100000000011";
  a.broker = "23";
  Inputs b = BaseInputs();
  b.imsi = "00101000000000112";
  b.broker = "3";
  ExpectAllKeysDiffer(Derive(a), Derive(b));
}

}  // namespace
}  // namespace simprov
