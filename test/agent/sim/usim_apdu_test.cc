// Unit tests of agent/usim_apdu: encodings, answer parsing, malformed
// answers and the T=0 transport rules, against scripted answers and the
// virtual USIM.
#include "agent/sim/usim_apdu.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/aka.h"
#include "test/testing/virtual_usim.h"

namespace simprov::usim {
namespace {

using ::simprov::testing::TestSim;
using ::simprov::testing::VirtualUsim;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Bytes Hex(std::string hex) {
  hex.erase(std::remove(hex.begin(), hex.end(), ' '), hex.end());
  auto b = HexDecode(hex);
  EXPECT_TRUE(b.ok()) << hex;
  return b.ok() ? *b : Bytes();
}

Bytes Fill(size_t n, uint8_t v) { return Bytes(n, v); }

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// --- TBCD ---------------------------------------------------------------

TEST(UsimApduTest, DecodesImsiWithOddDigitCount) {
  auto imsi = DecodeImsi(Hex("080910101032547698"));
  ASSERT_TRUE(imsi.ok()) << imsi.status();
  EXPECT_EQ(*imsi, "001010123456789");
}

TEST(UsimApduTest, DecodesImsiWithEvenDigitCountAndPadding) {
  auto imsi = DecodeImsi(Hex("0801101010325476F8"));
  ASSERT_TRUE(imsi.ok()) << imsi.status();
  EXPECT_EQ(*imsi, "00101012345678");
  // Unused bytes after the length are ignored.
  imsi = DecodeImsi(Hex("0609101010325476FFFF"));
  ASSERT_TRUE(imsi.ok()) << imsi.status();
  EXPECT_EQ(*imsi, "00101012345");
}

TEST(UsimApduTest, ImsiRoundTripsThroughTheVirtualUsimEncoding) {
  for (const std::string imsi :
       {"001010", "0010100", "00101000000001", "001010000000001",
        "310150123456789", "26201987654321"}) {
    auto d = DecodeImsi(VirtualUsim::EncodeImsi(imsi));
    ASSERT_TRUE(d.ok()) << imsi << ": " << d.status();
    EXPECT_EQ(*d, imsi);
  }
}

TEST(UsimApduTest, RejectsMalformedImsi) {
  struct Case {
    const char* hex;
    const char* why;
  } cases[] = {
      {"", "shorter"},
      {"08", "shorter"},
      {"FFFFFFFFFFFFFFFFFF", "empty"},
      {"000000", "empty"},
      {"0909101010325476989999", "exceeds"},
      {"08091010", "exceeds"},
      {"080A10101032547698", "identity type"},  // type 010
      {"0809101010325A7698", "non-digit"},
      {"080910F01032547698", "after its padding"},
      {"0309F1FF", "digits"},  // 1 digit
  };
  for (const Case& c : cases) {
    auto imsi = DecodeImsi(Hex(c.hex));
    ASSERT_FALSE(imsi.ok()) << c.hex;
    EXPECT_EQ(imsi.status().code(), absl::StatusCode::kDataLoss) << c.hex;
    EXPECT_THAT(imsi.status().message(), HasSubstr(c.why)) << c.hex;
  }
}

TEST(UsimApduTest, DecodesIccid) {
  auto iccid = DecodeIccid(Hex("988812010000000000F1"));
  ASSERT_TRUE(iccid.ok()) << iccid.status();
  EXPECT_EQ(*iccid, "8988211000000000001");
  EXPECT_EQ(*DecodeIccid(VirtualUsim::EncodeIccid("89882110000000000012")),
            "89882110000000000012");
  EXPECT_FALSE(DecodeIccid(Hex("98A8")).ok());
  EXPECT_FALSE(DecodeIccid(Hex("F198")).ok());  // digit after padding
  EXPECT_FALSE(DecodeIccid(Hex("FFFF")).ok());
}

// --- AUTHENTICATE -------------------------------------------------------

TEST(UsimApduTest, BuildsAuthenticateIn3gContext) {
  const Bytes rand = Fill(16, 0x11), autn = Fill(16, 0x22);
  auto apdu = BuildAuthenticate(rand, autn, /*with_le=*/false);
  ASSERT_TRUE(apdu.ok());
  EXPECT_EQ(HexEncode(*apdu),
            "0088008122"
            "10" +
                HexEncode(rand) + "10" + HexEncode(autn));
  apdu = BuildAuthenticate(rand, autn, /*with_le=*/true);
  ASSERT_TRUE(apdu.ok());
  EXPECT_EQ(apdu->size(), 5u + 0x22 + 1);
  EXPECT_EQ(apdu->back(), 0x00);
  EXPECT_FALSE(BuildAuthenticate(Fill(15, 0), autn, false).ok());
  EXPECT_FALSE(BuildAuthenticate(rand, Fill(17, 0), false).ok());
}

TEST(UsimApduTest, ParsesSuccessWithAndWithoutKc) {
  const Bytes res = Hex("0102030405060708");
  const Bytes ck = Fill(16, 0xC1), ik = Fill(16, 0x1C);
  const Bytes body = Concat({{0xDB, 0x08}, res, {0x10}, ck, {0x10}, ik});
  for (const Bytes& data : {body, Concat({body, {0x08}, Fill(8, 0x5A)})}) {
    auto r = ParseAuthenticateResponse({data, kSwOk});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->kind, SimAuthResult::Kind::kSuccess);
    EXPECT_EQ(r->res, res);
    EXPECT_EQ(r->ck, ck);
    EXPECT_EQ(r->ik, ik);
    EXPECT_TRUE(r->auts.empty());
  }
  // RES may be 4 to 16 bytes (TS 33.102); Milenage's is 8.
  auto r = ParseAuthenticateResponse(
      {Concat({{0xDB, 0x04}, Fill(4, 1), {0x10}, ck, {0x10}, ik}), kSwOk});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->res.size(), 4u);
}

TEST(UsimApduTest, ParsesSyncFailureAndMacFailure) {
  const Bytes auts = Hex("0102030405060708090a0b0c0d0e");
  auto r = ParseAuthenticateResponse({Concat({{0xDC, 0x0E}, auts}), kSwOk});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, SimAuthResult::Kind::kSyncFailure);
  EXPECT_EQ(r->auts, auts);
  EXPECT_TRUE(r->res.empty());

  r = ParseAuthenticateResponse({{}, 0x9862});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, SimAuthResult::Kind::kMacFailure);
  EXPECT_TRUE(r->res.empty() && r->ck.empty() && r->auts.empty());
}

TEST(UsimApduTest, RefusalsAreErrorsWithTheStatusWord) {
  auto r = ParseAuthenticateResponse({{}, 0x6982});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("6982"));
  EXPECT_THAT(r.status().message(), HasSubstr("PIN"));
  r = ParseAuthenticateResponse({{}, 0x6985});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("no USIM application selected"));
  r = ParseAuthenticateResponse({{}, 0x6F00});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("6F00 (technical problem)"));
}

TEST(UsimApduTest, RejectsMalformedAuthenticateAnswers) {
  const Bytes res = Hex("a1a2a3a4a5a6a7a8");
  const Bytes ck = Fill(16, 0xC1), ik = Fill(16, 0x1C);
  const Bytes good = Concat({{0xDB, 0x08}, res, {0x10}, ck, {0x10}, ik});
  std::vector<std::pair<Bytes, const char*>> cases = {
      {{}, "without data"},
      {Bytes(good.begin(), good.end() - 1), "truncated"},
      {Bytes(good.begin(), good.begin() + 10), "truncated"},
      {Concat({good, {0x01}}), "Kc"},
      {Concat({good, {0x08}, Fill(8, 0), {0x00}}), "trailing"},
      {Concat({good, {0x04}, Fill(4, 0)}), "Kc"},
      {Concat({{0xDB, 0x08}, res, {0x08}, Fill(8, 1), {0x10}, ik}), "CK/IK"},
      {Concat({{0xDB, 0x02}, Fill(2, 1), {0x10}, ck, {0x10}, ik}), "RES of 2"},
      {Concat({{0xDB, 0x11}, Fill(17, 1), {0x10}, ck, {0x10}, ik}),
       "RES of 17"},
      {Concat({{0xDC, 0x0D}, Fill(13, 1)}), "AUTS"},
      {Concat({{0xDC, 0x0E}, Fill(13, 1)}), "AUTS"},
      {Concat({{0xDC, 0x0E}, Fill(15, 1)}), "AUTS"},
      {{0xDC}, "AUTS"},
      {{0x9F, 0x00}, "tag 9F"},
  };
  for (const auto& [data, why] : cases) {
    auto r = ParseAuthenticateResponse({data, kSwOk});
    ASSERT_FALSE(r.ok()) << HexEncode(data);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(r.status().message(), HasSubstr(why)) << HexEncode(data);
    // Key material never appears in errors.
    EXPECT_FALSE(absl::StrContains(absl::AsciiStrToLower(r.status().message()),
                                   "a1a2a3"));
  }
}

// --- Framing --------------------------------------------------------------

TEST(UsimApduTest, SplitsResponses) {
  auto r = SplitResponse(Hex("01029000"));
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->data, ElementsAre(1, 2));
  EXPECT_EQ(r->sw, 0x9000);
  r = SplitResponse(Hex("6A82"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->data.empty());
  EXPECT_EQ(r->sw1(), 0x6A);
  EXPECT_EQ(r->sw2(), 0x82);
  EXPECT_EQ(SplitResponse(Hex("90")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(SplitResponse({}).status().code(), absl::StatusCode::kDataLoss);
}

TEST(UsimApduTest, SetsLeInEveryShortCase) {
  EXPECT_EQ(HexEncode(*WithLe(Hex("00A40000"), 0x10)), "00a4000010");
  EXPECT_EQ(HexEncode(*WithLe(Hex("00B0000000"), 0x09)), "00b0000009");
  EXPECT_EQ(HexEncode(*WithLe(Hex("00A40004023F00"), 0x20)),
            "00a40004023f0020");
  EXPECT_EQ(HexEncode(*WithLe(Hex("00A40004023F0000"), 0x20)),
            "00a40004023f0020");
  EXPECT_FALSE(WithLe(Hex("00A400"), 1).ok());
  EXPECT_FALSE(WithLe(Hex("00A40004053F00"), 1).ok());  // Lc 5, 2 bytes
  EXPECT_FALSE(WithLe(Hex("00A40004003F00"), 1).ok());  // extended length
}

TEST(UsimApduTest, DescribesStatusWords) {
  EXPECT_EQ(DescribeSw(0x9000), "9000");
  EXPECT_EQ(DescribeSw(0x6A82), "6A82 (file or application not found)");
  EXPECT_EQ(DescribeSw(0x6C10), "6C10 (wrong Le)");
  EXPECT_EQ(DescribeSw(0x1234), "1234");
}

// A card that answers from a script and records what it was sent.
class ScriptedCard {
 public:
  explicit ScriptedCard(std::vector<std::string> answers) {
    for (const std::string& a : answers) answers_.push_back(Hex(a));
  }
  TransmitFn fn() {
    return [this](const Bytes& apdu) -> absl::StatusOr<Bytes> {
      sent_.push_back(HexEncode(apdu));
      if (answers_.empty()) return absl::InternalError("script exhausted");
      Bytes a = answers_.front();
      answers_.pop_front();
      return a;
    };
  }
  std::vector<std::string> sent_;

 private:
  std::deque<Bytes> answers_;
};

TEST(UsimApduTest, FetchesT0AnswersWithGetResponse) {
  ScriptedCard card({"6104", "010203049000"});
  auto r = Transmit(card.fn(), Hex("00A40004023F0000"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->data, ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(r->sw, kSwOk);
  EXPECT_THAT(card.sent_, ElementsAre("00a40004023f0000", "00c0000004"));
}

TEST(UsimApduTest, CollectsAnswersInSeveralParts) {
  ScriptedCard card({"6104", "01026102", "03049000"});
  auto r = Transmit(card.fn(), Hex("00A40004023F0000"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->data, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(card.sent_,
              ElementsAre("00a40004023f0000", "00c0000004", "00c0000002"));
}

TEST(UsimApduTest, ResendsWithTheLeThatA6CxxNames) {
  ScriptedCard card({"6C09", "0809101010325476989000"});
  auto r = Transmit(card.fn(), BuildReadBinary(0));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data.size(), 9u);
  EXPECT_THAT(card.sent_, ElementsAre("00b0000000", "00b0000009"));
  // A GET RESPONSE with the wrong Le is fixed the same way.
  ScriptedCard card2({"6110", "6C04", "010203049000"});
  r = Transmit(card2.fn(), Hex("00A40004023F0000"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(card2.sent_,
              ElementsAre("00a40004023f0000", "00c0000010", "00c0000004"));
}

TEST(UsimApduTest, GivesUpOnMisbehavingCards) {
  ScriptedCard twice({"6C09", "6C08"});
  auto r = Transmit(twice.fn(), BuildReadBinary(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("6Cxx again"));

  std::vector<std::string> endless(100, "00016101");
  ScriptedCard loop(endless);
  r = Transmit(loop.fn(), Hex("00A40004023F0000"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("GET RESPONSE"));
  EXPECT_LE(loop.sent_.size(), 40u);

  ScriptedCard short_answer({"90"});
  EXPECT_EQ(Transmit(short_answer.fn(), BuildReadBinary(0)).status().code(),
            absl::StatusCode::kDataLoss);

  ScriptedCard dead(std::vector<std::string>{});
  r = Transmit(dead.fn(), BuildReadBinary(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);  // propagated
}

// --- File system --------------------------------------------------------

TEST(UsimApduTest, FindsTheAidInEfDirRecords) {
  auto aid =
      AidFromDirRecord(Hex("61184F10A0000000871002FF49FF0589000000005004555349"
                           "4DFFFFFF"));
  ASSERT_TRUE(aid.ok()) << aid.status();
  EXPECT_EQ(HexEncode(*aid), "a0000000871002ff49ff058900000000");
  EXPECT_TRUE(IsUsimAid(*aid));
  EXPECT_FALSE(IsUsimAid(Hex("A0000000871004FF49FF0589")));  // ISIM
  EXPECT_TRUE(AidFromDirRecord(Fill(32, 0xFF))->empty());    // erased
  EXPECT_FALSE(AidFromDirRecord(Hex("62024F00")).ok());
  EXPECT_FALSE(AidFromDirRecord(Hex("61204F10A000")).ok());  // overrun
  EXPECT_FALSE(AidFromDirRecord(Hex("61064F10A0000000")).ok());
  EXPECT_FALSE(AidFromDirRecord(Hex("61044F02A000")).ok());  // AID too short
}

TEST(UsimApduTest, ParsesFcp) {
  FileInfo dir = ParseFcp(Hex("620F820542210020038302 2F008002 0060"));
  EXPECT_EQ(dir.record_length, 0x20);
  EXPECT_EQ(dir.record_count, 3);
  EXPECT_EQ(dir.size, 0x60);
  FileInfo none = ParseFcp(Hex("6F00"));
  EXPECT_EQ(none.record_length, 0);
  FileInfo truncated = ParseFcp(Hex("621082054221"));
  EXPECT_EQ(truncated.record_count, 0);
}

// Bytes whose storage goes on well past their size, filled with 0xAB: a
// parser that trusts a length over its template reads that filler instead of
// stopping (deterministically, without relying on a crash).
Bytes InRoomyBuffer(const std::string& hex) {
  Bytes b(70000, 0xAB);
  const Bytes v = Hex(hex);
  std::copy(v.begin(), v.end(), b.begin());
  b.resize(v.size());
  return b;
}

TEST(UsimApduTest, FcpLengthsStayInsideTheirTemplate) {
  // A file size tag whose long-form length (FFFF) runs 64 KiB past a 6-byte
  // answer.
  FileInfo huge = ParseFcp(InRoomyBuffer("62028082FFFF"));
  EXPECT_EQ(huge.size, 0);
  EXPECT_EQ(huge.record_length, 0);
  // The same, with 81: one length byte past the template.
  EXPECT_EQ(ParseFcp(InRoomyBuffer("6202808110")).size, 0);
  // Length bytes that start inside the template but end outside it.
  EXPECT_EQ(ParseFcp(InRoomyBuffer("620280820010")).size, 0);
  // A descriptor (82) longer than the template that holds it, though the
  // buffer holds enough bytes.
  FileInfo nested = ParseFcp(InRoomyBuffer("62048205422100200103"));
  EXPECT_EQ(nested.record_length, 0);
  EXPECT_EQ(nested.record_count, 0);
  // A nested template (A5) longer than its parent, then a size tag.
  EXPECT_EQ(ParseFcp(InRoomyBuffer("6204A5058002001080020010")).size, 0);
  // The outer template longer than the answer, in short and long form.
  EXPECT_EQ(ParseFcp(InRoomyBuffer("6206800200")).size, 0);
  EXPECT_EQ(ParseFcp(InRoomyBuffer("628200068002")).size, 0);
  EXPECT_EQ(ParseFcp(InRoomyBuffer("62830000048002")).size, 0);  // 3 bytes
  EXPECT_EQ(ParseFcp(InRoomyBuffer("6281")).size, 0);  // no length byte
  EXPECT_EQ(ParseFcp(InRoomyBuffer("62")).size, 0);
  // Well-formed long-form lengths are still read.
  FileInfo ok = ParseFcp(Hex("628106 8081020060 00"));
  EXPECT_EQ(ok.size, 0x60);
  ok = ParseFcp(Hex("62820009 82820005 4221002003"));
  EXPECT_EQ(ok.record_length, 0x20);
  EXPECT_EQ(ok.record_count, 3);
}

TEST(UsimApduTest, DirRecordLengthsStayInsideTheirTemplate) {
  // An AID tag of 16 bytes inside a template of 1: the record's remaining
  // bytes (or what lies after them) must not be returned as an AID.
  auto aid = AidFromDirRecord(InRoomyBuffer("61014F10A0"));
  EXPECT_EQ(aid.status().code(), absl::StatusCode::kDataLoss);
  // Same with the AID bytes present in the record but outside the template.
  aid = AidFromDirRecord(
      InRoomyBuffer("61014F10A0000000871002FF49FF058900000000"));
  EXPECT_EQ(aid.status().code(), absl::StatusCode::kDataLoss);
  // Long-form lengths running past the template or the record.
  EXPECT_FALSE(AidFromDirRecord(InRoomyBuffer("61024F81")).ok());
  EXPECT_FALSE(AidFromDirRecord(InRoomyBuffer("61034F8210")).ok());
  EXPECT_FALSE(AidFromDirRecord(InRoomyBuffer("6104 4F820010 A0")).ok());
  EXPECT_FALSE(AidFromDirRecord(InRoomyBuffer("6182FFFF4F05")).ok());
  EXPECT_FALSE(AidFromDirRecord(InRoomyBuffer("6181")).ok());
  EXPECT_FALSE(AidFromDirRecord(InRoomyBuffer("61")).ok());
  // The AID itself longer than its template, with the record holding more.
  EXPECT_FALSE(
      AidFromDirRecord(InRoomyBuffer("6105 4F07A000000087 1002FF")).ok());
  // A label (50) running past the template before the AID.
  EXPECT_FALSE(
      AidFromDirRecord(InRoomyBuffer("6109 5008555349 4F05A000000087")).ok());
  // A well-formed long-form length is still read.
  aid = AidFromDirRecord(Hex("618108 4F8105A000000087"));
  ASSERT_TRUE(aid.ok()) << aid.status();
  EXPECT_EQ(HexEncode(*aid), "a000000087");
}

// --- Against the virtual USIM -------------------------------------------

class VirtualUsimTest : public ::testing::TestWithParam<bool> {
 protected:
  VirtualUsimTest()
      : sim_{"001010000000042", "000102030405060708090a0b0c0d0e0f",
             "0f0e0d0c0b0a09080706050403020100"},
        usim_(sim_, {.t0 = GetParam()}),
        transmit_([this](const Bytes& a) -> absl::StatusOr<Bytes> {
          // A T=0 transport drops the Le of a case 4 command.
          if (GetParam() && a.size() > 5 && a.size() == 6u + a[4]) {
            return usim_.Process(Bytes(a.begin(), a.end() - 1));
          }
          return usim_.Process(a);
        }) {}

  AuthVector Vector(uint64_t sqn) {
    auto m = Milenage::Create(*HexDecode(sim_.k), *HexDecode(sim_.opc));
    return GenerateVector(*m, Fill(16, 0x42), sqn, {0x80, 0x00});
  }

  TestSim sim_;
  VirtualUsim usim_;
  TransmitFn transmit_;
};

TEST_P(VirtualUsimTest, FindsTheUsimReadsImsiAndAuthenticates) {
  auto r = Transmit(transmit_, BuildSelectFid(kFidMf));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sw, kSwOk);
  r = Transmit(transmit_, BuildSelectFid(kFidEfDir));
  ASSERT_TRUE(r.ok());
  FileInfo info = ParseFcp(r->data);
  ASSERT_GT(info.record_count, 1);
  Bytes usim_aid;
  for (uint8_t i = 1; i <= info.record_count && usim_aid.empty(); ++i) {
    r = Transmit(transmit_, BuildReadRecord(i, 0));  // 6Cxx in T=0
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->sw, kSwOk);
    auto aid = AidFromDirRecord(r->data);
    ASSERT_TRUE(aid.ok()) << aid.status();
    if (IsUsimAid(*aid)) usim_aid = *aid;
  }
  EXPECT_EQ(usim_aid, VirtualUsim::Aid());

  // In T=0 a case 4 command with Le is a transport error.
  if (GetParam()) {
    EXPECT_EQ(HexEncode(usim_.Process(BuildSelectFid(kFidMf))), "6700");
  }

  // AUTHENTICATE before the application is selected: refused, as a card.
  const AuthVector v = Vector(MakeSqn(1, 0));
  auto auth_apdu = BuildAuthenticate(v.rand, v.autn, /*with_le=*/true);
  r = Transmit(transmit_, *auth_apdu);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sw, 0x6985);

  r = Transmit(transmit_, BuildSelectAid(usim_aid));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sw, kSwOk);
  r = Transmit(transmit_, BuildSelectFid(kFidEfImsi));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->sw, kSwOk);
  r = Transmit(transmit_, BuildReadBinary(0));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*DecodeImsi(r->data), sim_.imsi);

  r = Transmit(transmit_, *auth_apdu);
  ASSERT_TRUE(r.ok());
  auto auth = ParseAuthenticateResponse(*r);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->kind, SimAuthResult::Kind::kSuccess);
  EXPECT_EQ(auth->res, v.xres);
  EXPECT_EQ(auth->ck, v.ck);
  EXPECT_EQ(auth->ik, v.ik);

  // Replay: sync failure with AUTS; a wrong MAC: 98 62.
  r = Transmit(transmit_, *auth_apdu);
  auth = ParseAuthenticateResponse(*r);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->kind, SimAuthResult::Kind::kSyncFailure);
  auto m = Milenage::Create(*HexDecode(sim_.k), *HexDecode(sim_.opc));
  auto sqn_ms = RecoverSqnMs(*m, v.rand, auth->auts);
  ASSERT_TRUE(sqn_ms.ok());
  EXPECT_EQ(*sqn_ms, MakeSqn(1, 0));

  AuthVector bad = Vector(MakeSqn(2, 1));
  bad.autn.back() ^= 1;
  r = Transmit(transmit_, *BuildAuthenticate(bad.rand, bad.autn, false));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sw, kSwAuthMacFailure);
  EXPECT_EQ(ParseAuthenticateResponse(*r)->kind,
            SimAuthResult::Kind::kMacFailure);
  EXPECT_EQ(usim_.authenticate_count(), 3);
}

INSTANTIATE_TEST_SUITE_P(T0AndT1, VirtualUsimTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "T0" : "T1";
                         });

}  // namespace
}  // namespace simprov::usim
