// AKA: authentication vectors, the USIM's AUTHENTICATE, SQN freshness
// (TS 33.102 Annex C) and resynchronisation, cross-checked against Debian's
// osmo-auc-gen (libosmocore-utils), an independent implementation.
#include "common/aka.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/milenage.h"
#include "common/sqn.h"

namespace simprov {
namespace {

using Kind = UsimResult::Kind;

Bytes Hex(const std::string& s) {
  absl::StatusOr<Bytes> b = HexDecode(s);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *b : Bytes();
}

// TS 35.208 test set 1.
const char kK1[] = "465b5ce8b199b49faa5f0a2ee238a6bc";
const char kOpc1[] = "cd63cb71954a9f4e48a5994e37a02baf";
const char kRand1[] = "23553cbe9637a89d218ae64dae47bf35";

Milenage MakeMilenage(const std::string& k_hex, const std::string& opc_hex) {
  absl::StatusOr<Milenage> m = Milenage::Create(Hex(k_hex), Hex(opc_hex));
  if (!m.ok()) {
    ADD_FAILURE() << m.status();
    return *Milenage::Create(Bytes(16, 0), Bytes(16, 0));
  }
  return *std::move(m);
}

std::array<uint64_t, kIndSlots> AllSlots(uint64_t seq) {
  std::array<uint64_t, kIndSlots> a;
  a.fill(seq);
  return a;
}

class AkaTest : public ::testing::Test {
 protected:
  Milenage m_ = MakeMilenage(kK1, kOpc1);
  DeterministicRandom random_{42};
  const Bytes amf_ = Hex("8000");
};

TEST(SqnTest, SeqAndIndRoundTrip) {
  EXPECT_EQ(MakeSqn(0, 0), 0u);
  EXPECT_EQ(MakeSqn(1, 0), 32u);
  EXPECT_EQ(MakeSqn(1, 3), 35u);
  EXPECT_EQ(MakeSqn(5, 33), MakeSqn(5, 1));  // only 5 bits of IND
  const uint64_t sqn = MakeSqn(0x123456789ull, 17);
  EXPECT_EQ(SeqOf(sqn), 0x123456789ull);
  EXPECT_EQ(IndOf(sqn), 17u);
  EXPECT_EQ(MakeSqn((1ull << 43) - 1, 31), kSqnMask);
  EXPECT_EQ(MakeSqn(1ull << 43, 0), 0u);  // SEQ is 43 bits
}

TEST(SqnTest, NextSqnCyclesIndAndIncrementsSeq) {
  HeSqnState he;
  for (uint64_t i = 0; i < 3 * kIndSlots; ++i) {
    const uint64_t sqn = NextSqn(he);
    EXPECT_EQ(SeqOf(sqn), i + 1) << i;
    EXPECT_EQ(IndOf(sqn), i % kIndSlots) << i;
    EXPECT_EQ(he.seq_he, i + 1);
    EXPECT_EQ(he.next_ind, (i + 1) % kIndSlots);
  }
}

TEST(SqnTest, FreshWindowAcceptsFirstSqnAndRejectsZero) {
  UsimSqnWindow w;
  EXPECT_EQ(w.HighestSqn(), 0u);
  EXPECT_FALSE(w.Accept(MakeSqn(0, 4)));
  EXPECT_TRUE(w.Accept(MakeSqn(1, 4)));
  EXPECT_EQ(w.seq_ms()[4], 1u);
  EXPECT_EQ(w.HighestSqn(), MakeSqn(1, 4));
}

TEST(SqnTest, OutOfOrderOnOtherSlotsButNeverTwice) {
  UsimSqnWindow w;
  EXPECT_TRUE(w.Accept(MakeSqn(10, 1)));
  EXPECT_TRUE(w.Accept(MakeSqn(3, 2)));   // older SEQ, fresh slot
  EXPECT_FALSE(w.Accept(MakeSqn(3, 2)));  // replay
  EXPECT_FALSE(w.Accept(MakeSqn(9, 1)));  // older than slot 1
  EXPECT_TRUE(w.Accept(MakeSqn(11, 1)));
  EXPECT_EQ(w.HighestSqn(), MakeSqn(11, 1));
}

TEST(SqnTest, DeltaLimitsTheJumpAboveTheHighest) {
  UsimSqnWindow w(AllSlots(100));
  const auto before = w.seq_ms();
  EXPECT_FALSE(w.Accept(MakeSqn(100 + UsimSqnWindow::kDelta + 1, 0)));
  EXPECT_EQ(w.seq_ms(), before);  // unchanged on rejection
  EXPECT_TRUE(w.Accept(MakeSqn(100 + UsimSqnWindow::kDelta, 0)));
}

TEST(SqnTest, HighestSqnPicksTheLowestSlotOnTies) {
  std::array<uint64_t, kIndSlots> a{};
  a[7] = 50;
  a[3] = 50;
  a[9] = 20;
  EXPECT_EQ(UsimSqnWindow(a).HighestSqn(), MakeSqn(50, 3));
}

TEST(SqnTest, ResyncHeMovesSeqToTheUsims) {
  HeSqnState he{.seq_he = 7, .next_ind = 12};
  ResyncHe(he, MakeSqn(1000, 5));
  EXPECT_EQ(he.seq_he, 1000u);
  EXPECT_EQ(he.next_ind, 12u);
  EXPECT_EQ(NextSqn(he), MakeSqn(1001, 12));
}

TEST_F(AkaTest, VectorMatchesTs35208Set1) {
  // AUTN = (SQN xor AK) || AMF || MAC-A with SQN, AMF, AK, f1 of set 1.
  AuthVector v =
      GenerateVector(m_, Hex(kRand1), 0xff9bb4d0b607ull, Hex("b9b9"));
  EXPECT_EQ(HexEncode(v.rand), kRand1);
  EXPECT_EQ(HexEncode(v.autn), "55f328b43577b9b94a9ffac354dfafb3");
  EXPECT_EQ(HexEncode(v.xres), "a54211d5e3ba50bf");
  EXPECT_EQ(HexEncode(v.ck), "b40ba9a3c58b2a05bbf0d987b21bf8cb");
  EXPECT_EQ(HexEncode(v.ik), "f769bcd751044604127672711c6d3441");
}

TEST_F(AkaTest, UsimAcceptsAFreshVectorAndAgreesOnKeys) {
  HeSqnState he;
  UsimSqnWindow usim;
  for (int i = 0; i < 40; ++i) {
    const uint64_t sqn = NextSqn(he);
    AuthVector v = GenerateVector(m_, random_.Generate(16), sqn, amf_);
    ASSERT_EQ(v.autn.size(), 16u);
    EXPECT_EQ(Bytes(v.autn.begin() + 6, v.autn.begin() + 8), amf_);
    UsimResult r = UsimAuthenticate(m_, v.rand, v.autn, usim);
    ASSERT_EQ(r.kind, Kind::kSuccess) << i;
    EXPECT_EQ(r.res, v.xres);
    EXPECT_EQ(r.ck, v.ck);
    EXPECT_EQ(r.ik, v.ik);
    EXPECT_TRUE(r.auts.empty());
    EXPECT_EQ(usim.HighestSqn(), sqn);
  }
}

TEST_F(AkaTest, WrongKeyIsAMacFailure) {
  Milenage other = MakeMilenage("00112233445566778899aabbccddeeff", kOpc1);
  UsimSqnWindow usim;
  AuthVector v =
      GenerateVector(other, random_.Generate(16), MakeSqn(1, 0), amf_);
  UsimResult r = UsimAuthenticate(m_, v.rand, v.autn, usim);
  EXPECT_EQ(r.kind, Kind::kMacFailure);
  EXPECT_TRUE(r.res.empty());
  EXPECT_TRUE(r.ck.empty());
  EXPECT_TRUE(r.ik.empty());
  EXPECT_TRUE(r.auts.empty());
  EXPECT_EQ(usim.HighestSqn(), 0u);
}

TEST_F(AkaTest, TamperedAutnIsAMacFailure) {
  UsimSqnWindow usim;
  AuthVector v = GenerateVector(m_, random_.Generate(16), MakeSqn(1, 0), amf_);
  for (size_t i : {0u, 6u, 15u}) {  // concealed SQN, AMF, MAC-A
    Bytes autn = v.autn;
    autn[i] ^= 0x01;
    EXPECT_EQ(UsimAuthenticate(m_, v.rand, autn, usim).kind, Kind::kMacFailure)
        << "byte " << i;
  }
  Bytes rand = v.rand;
  rand[3] ^= 0x80;
  EXPECT_EQ(UsimAuthenticate(m_, rand, v.autn, usim).kind, Kind::kMacFailure);
}

TEST_F(AkaTest, MalformedLengthsAreAMacFailure) {
  UsimSqnWindow usim;
  AuthVector v = GenerateVector(m_, random_.Generate(16), MakeSqn(1, 0), amf_);
  Bytes short_autn(v.autn.begin(), v.autn.end() - 1);
  EXPECT_EQ(UsimAuthenticate(m_, v.rand, short_autn, usim).kind,
            Kind::kMacFailure);
  Bytes long_rand = v.rand;
  long_rand.push_back(0);
  EXPECT_EQ(UsimAuthenticate(m_, long_rand, v.autn, usim).kind,
            Kind::kMacFailure);
  EXPECT_EQ(UsimAuthenticate(m_, Bytes(), Bytes(), usim).kind,
            Kind::kMacFailure);
  EXPECT_EQ(usim.HighestSqn(), 0u);
}

TEST_F(AkaTest, ReplayedAutnIsASyncFailureWithAuts) {
  UsimSqnWindow usim;
  const uint64_t sqn = MakeSqn(5, 2);
  AuthVector v = GenerateVector(m_, random_.Generate(16), sqn, amf_);
  ASSERT_EQ(UsimAuthenticate(m_, v.rand, v.autn, usim).kind, Kind::kSuccess);
  UsimResult r = UsimAuthenticate(m_, v.rand, v.autn, usim);
  EXPECT_EQ(r.kind, Kind::kSyncFailure);
  EXPECT_TRUE(r.res.empty());
  EXPECT_TRUE(r.ck.empty());
  EXPECT_TRUE(r.ik.empty());
  ASSERT_EQ(r.auts.size(), 14u);
  absl::StatusOr<uint64_t> sqn_ms = RecoverSqnMs(m_, v.rand, r.auts);
  ASSERT_TRUE(sqn_ms.ok()) << sqn_ms.status();
  EXPECT_EQ(*sqn_ms, sqn);
}

TEST_F(AkaTest, SqnOnAFreshIndSlotIsAccepted) {
  UsimSqnWindow usim;
  AuthVector late =
      GenerateVector(m_, random_.Generate(16), MakeSqn(3, 3), amf_);
  AuthVector early =
      GenerateVector(m_, random_.Generate(16), MakeSqn(9, 9), amf_);
  ASSERT_EQ(UsimAuthenticate(m_, early.rand, early.autn, usim).kind,
            Kind::kSuccess);
  // Vectors may arrive out of order: SEQ 3 < 9 but slot 3 is unused.
  EXPECT_EQ(UsimAuthenticate(m_, late.rand, late.autn, usim).kind,
            Kind::kSuccess);
  EXPECT_EQ(UsimAuthenticate(m_, late.rand, late.autn, usim).kind,
            Kind::kSyncFailure);
}

TEST_F(AkaTest, DeltaExceededIsASyncFailure) {
  UsimSqnWindow usim(AllSlots(1000));
  const uint64_t too_far = MakeSqn(1000 + UsimSqnWindow::kDelta + 1, 0);
  AuthVector v = GenerateVector(m_, random_.Generate(16), too_far, amf_);
  UsimResult r = UsimAuthenticate(m_, v.rand, v.autn, usim);
  ASSERT_EQ(r.kind, Kind::kSyncFailure);
  absl::StatusOr<uint64_t> sqn_ms = RecoverSqnMs(m_, v.rand, r.auts);
  ASSERT_TRUE(sqn_ms.ok()) << sqn_ms.status();
  EXPECT_EQ(*sqn_ms, MakeSqn(1000, 0));
  EXPECT_EQ(usim.seq_ms(), AllSlots(1000));
}

TEST_F(AkaTest, AutsFromTheUsimRecoversExactlySqnMs) {
  for (uint64_t sqn_ms : {uint64_t{0}, MakeSqn(1, 0), MakeSqn(123456, 17),
                          kSqnMask, uint64_t{0xff9bb4d0b607}}) {
    const Bytes rand = random_.Generate(16);
    const Bytes auts = BuildAuts(m_, rand, sqn_ms);
    ASSERT_EQ(auts.size(), 14u);
    absl::StatusOr<uint64_t> got = RecoverSqnMs(m_, rand, auts);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, sqn_ms);
  }
}

TEST_F(AkaTest, TamperedAutsIsRejected) {
  const Bytes rand = random_.Generate(16);
  const Bytes auts = BuildAuts(m_, rand, MakeSqn(77, 7));
  for (size_t i = 0; i < auts.size(); ++i) {
    Bytes bad = auts;
    bad[i] ^= 0x10;
    absl::StatusOr<uint64_t> got = RecoverSqnMs(m_, rand, bad);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kUnauthenticated)
        << "byte " << i;
  }
  Milenage other = MakeMilenage("00112233445566778899aabbccddeeff", kOpc1);
  EXPECT_EQ(RecoverSqnMs(other, rand, auts).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AkaTest, RecoverSqnMsRejectsWrongLengths) {
  const Bytes rand = random_.Generate(16);
  Bytes auts = BuildAuts(m_, rand, MakeSqn(77, 7));
  auts.pop_back();
  EXPECT_EQ(RecoverSqnMs(m_, rand, auts).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      RecoverSqnMs(m_, Bytes(15, 0), BuildAuts(m_, rand, 1)).status().code(),
      absl::StatusCode::kInvalidArgument);
}

// USIM ahead on every IND slot (e.g. it was used with another HE), broker
// behind: the first challenge fails with AUTS, the broker verifies it and
// resynchronises, the next vector is accepted.
TEST_F(AkaTest, FullResynchronisation) {
  UsimSqnWindow usim(AllSlots(5000));
  HeSqnState he{.seq_he = 10, .next_ind = 4};

  AuthVector v1 = GenerateVector(m_, random_.Generate(16), NextSqn(he), amf_);
  UsimResult r1 = UsimAuthenticate(m_, v1.rand, v1.autn, usim);
  ASSERT_EQ(r1.kind, Kind::kSyncFailure);

  absl::StatusOr<uint64_t> sqn_ms = RecoverSqnMs(m_, v1.rand, r1.auts);
  ASSERT_TRUE(sqn_ms.ok()) << sqn_ms.status();
  EXPECT_EQ(SeqOf(*sqn_ms), 5000u);
  ResyncHe(he, *sqn_ms);

  const uint64_t sqn2 = NextSqn(he);
  EXPECT_EQ(SeqOf(sqn2), 5001u);
  AuthVector v2 = GenerateVector(m_, random_.Generate(16), sqn2, amf_);
  UsimResult r2 = UsimAuthenticate(m_, v2.rand, v2.autn, usim);
  ASSERT_EQ(r2.kind, Kind::kSuccess);
  EXPECT_TRUE(ConstantTimeEqual(r2.res, v2.xres));

  // And the vectors after it keep working on every slot.
  for (uint32_t i = 0; i < kIndSlots; ++i) {
    AuthVector v = GenerateVector(m_, random_.Generate(16), NextSqn(he), amf_);
    EXPECT_EQ(UsimAuthenticate(m_, v.rand, v.autn, usim).kind, Kind::kSuccess)
        << i;
  }
}

// The AUTS sample of libosmocore's own osmo-auc-gen test (SQN.MS = 23): an
// AUTS produced by a different implementation.
TEST(AkaInteropTest, RecoversSqnMsFromLibosmocoreSample) {
  Milenage m = MakeMilenage("eb215756028d60e3275e613320aec880",
                            "fb2a3d1b360f599abab99db8669f8308");
  absl::StatusOr<uint64_t> sqn_ms =
      RecoverSqnMs(m, Hex("39fa2f4e3d523d8619a73b4f65c3e14d"),
                   Hex("979498b1f72d3e28c59fa2e72f9c"));
  ASSERT_TRUE(sqn_ms.ok()) << sqn_ms.status();
  EXPECT_EQ(*sqn_ms, 23u);
}

// --- Cross-checks against osmo-auc-gen -------------------------------------

constexpr char kOsmoAucGen[] = "/usr/bin/osmo-auc-gen";

struct ToolRun {
  int exit_code = -1;
  // "AUTN" -> "55f3...", from lines "NAME:\tVALUE".
  std::map<std::string, std::string> fields;
};

// Runs osmo-auc-gen with args (hex and decimal only, no shell metacharacters)
// and parses its "NAME:\tVALUE" lines.
ToolRun RunOsmoAucGen(const std::string& args) {
  ToolRun run;
  const std::string cmd = std::string(kOsmoAucGen) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return run;
  std::string output;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    if (start == std::string::npos) continue;
    const size_t end = line.find_last_not_of(" \t\r");
    run.fields[line.substr(0, colon)] = line.substr(start, end - start + 1);
  }
  return run;
}

class OsmoAucGenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kOsmoAucGen, X_OK) != 0) {
      GTEST_SKIP() << kOsmoAucGen
                   << " not found (apt-get install libosmocore-utils)";
    }
  }
  DeterministicRandom random_{7};
};

TEST_F(OsmoAucGenTest, VectorsMatch) {
  struct Case {
    std::string k, opc, amf;
    uint64_t sqn;
  };
  const std::vector<Case> cases = {
      {kK1, kOpc1, "b9b9", 0xff9bb4d0b607ull},
      {kK1, kOpc1, "8000", MakeSqn(1, 0)},
      {"0396eb317b6d1c36f19c1c84cd6ffd16", "53c15671c60a4b731c55b4a441c0bde2",
       "af17", MakeSqn(987654, 31)},
      {HexEncode(random_.Generate(16)), HexEncode(random_.Generate(16)), "0000",
       kSqnMask},
  };
  for (const Case& c : cases) {
    const Bytes rand = random_.Generate(16);
    SCOPED_TRACE("sqn " + std::to_string(c.sqn) + " amf " + c.amf);
    Milenage m = MakeMilenage(c.k, c.opc);
    AuthVector v = GenerateVector(m, rand, c.sqn, Hex(c.amf));
    ToolRun run = RunOsmoAucGen(
        "-3 -a milenage -k " + c.k + " -o " + c.opc + " -f " + c.amf + " -s " +
        std::to_string(c.sqn) + " -r " + HexEncode(rand));
    ASSERT_EQ(run.exit_code, 0);
    EXPECT_EQ(run.fields["RAND"], HexEncode(rand));
    EXPECT_EQ(run.fields["AUTN"], HexEncode(v.autn));
    EXPECT_EQ(run.fields["RES"], HexEncode(v.xres));
    EXPECT_EQ(run.fields["CK"], HexEncode(v.ck));
    EXPECT_EQ(run.fields["IK"], HexEncode(v.ik));
    EXPECT_EQ(run.fields["SQN"], std::to_string(c.sqn));
    EXPECT_EQ(run.fields["IND"], std::to_string(IndOf(c.sqn)));
  }
}

// Our USIM's AUTS is accepted by osmo-auc-gen, which reports the same SQN_MS
// and then resynchronises exactly as ResyncHe + NextSqn do.
TEST_F(OsmoAucGenTest, AutsAndResynchronisationMatch) {
  Milenage m = MakeMilenage(kK1, kOpc1);
  for (uint32_t ind : {0u, 9u}) {
    UsimSqnWindow usim(AllSlots(4242));
    HeSqnState he{.seq_he = 3, .next_ind = ind};
    AuthVector stale =
        GenerateVector(m, random_.Generate(16), NextSqn(he), Hex("8000"));
    UsimResult r = UsimAuthenticate(m, stale.rand, stale.autn, usim);
    ASSERT_EQ(r.kind, Kind::kSyncFailure);
    const uint64_t sqn_ms = usim.HighestSqn();
    he.next_ind = ind;

    ToolRun run =
        RunOsmoAucGen(std::string("-3 -a milenage -k ") + kK1 + " -o " + kOpc1 +
                      " -f 8000 -i " + std::to_string(ind) + " -A " +
                      HexEncode(r.auts) + " -r " + HexEncode(stale.rand));
    ASSERT_EQ(run.exit_code, 0);
    EXPECT_EQ(run.fields["SQN.MS"], std::to_string(sqn_ms));

    absl::StatusOr<uint64_t> ours = RecoverSqnMs(m, stale.rand, r.auts);
    ASSERT_TRUE(ours.ok()) << ours.status();
    EXPECT_EQ(*ours, sqn_ms);
    ResyncHe(he, *ours);
    const uint64_t next = NextSqn(he);
    EXPECT_EQ(run.fields["SQN"], std::to_string(next));
    AuthVector fresh = GenerateVector(m, stale.rand, next, Hex("8000"));
    EXPECT_EQ(run.fields["AUTN"], HexEncode(fresh.autn));
    EXPECT_EQ(UsimAuthenticate(m, fresh.rand, fresh.autn, usim).kind,
              Kind::kSuccess);
  }
}

TEST_F(OsmoAucGenTest, RejectsTamperedAuts) {
  Milenage m = MakeMilenage(kK1, kOpc1);
  const Bytes rand = random_.Generate(16);
  Bytes auts = BuildAuts(m, rand, MakeSqn(100, 1));
  auts[13] ^= 0x01;
  ToolRun run =
      RunOsmoAucGen(std::string("-3 -a milenage -k ") + kK1 + " -o " + kOpc1 +
                    " -A " + HexEncode(auts) + " -r " + HexEncode(rand));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_EQ(run.fields.count("SQN.MS"), 0u);
}

}  // namespace
}  // namespace simprov
