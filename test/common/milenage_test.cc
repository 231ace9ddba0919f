// Milenage against the 20 conformance test sets of 3GPP TS 35.208 (4.3).
#include "common/milenage.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/bytes.h"

namespace simprov {
namespace {

std::string SharedDir() {
  if (const char* env = std::getenv("SIMPROV_SHARED_DIR");
      env != nullptr && *env != '\0') {
    return env;
  }
#ifdef SIMPROV_SHARED_DIR
  return SIMPROV_SHARED_DIR;
#else
  return "";
#endif
}

struct TestSet {
  int number = 0;
  Bytes k, rand, sqn, amf, op, opc, f1, f1star, f2, f3, f4, f5, f5star;
};

Bytes Hex(const std::string& s) {
  absl::StatusOr<Bytes> b = HexDecode(s);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *b : Bytes();
}

// One set per line: set k rand sqn amf op opc f1 f1star f2 f3 f4 f5 f5star.
// Lines starting with '#' and blank lines are skipped.
std::vector<TestSet> LoadSets(const std::string& path) {
  std::vector<TestSet> sets;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path
                         << " (set SIMPROV_SHARED_DIR)";
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    TestSet t;
    std::string k, rand, sqn, amf, op, opc, f1, f1star, f2, f3, f4, f5, f5star;
    fields >> t.number >> k >> rand >> sqn >> amf >> op >> opc >> f1 >>
        f1star >> f2 >> f3 >> f4 >> f5 >> f5star;
    EXPECT_FALSE(fields.fail()) << "malformed line: " << line;
    if (fields.fail()) continue;
    t.k = Hex(k);
    t.rand = Hex(rand);
    t.sqn = Hex(sqn);
    t.amf = Hex(amf);
    t.op = Hex(op);
    t.opc = Hex(opc);
    t.f1 = Hex(f1);
    t.f1star = Hex(f1star);
    t.f2 = Hex(f2);
    t.f3 = Hex(f3);
    t.f4 = Hex(f4);
    t.f5 = Hex(f5);
    t.f5star = Hex(f5star);
    sets.push_back(std::move(t));
  }
  return sets;
}

// Checks every output of one set, starting from OP (so OPc is derived too).
void CheckSet(const TestSet& t) {
  absl::StatusOr<Bytes> opc = Milenage::ComputeOpc(t.k, t.op);
  ASSERT_TRUE(opc.ok()) << opc.status();
  EXPECT_EQ(HexEncode(*opc), HexEncode(t.opc)) << "OPc";

  absl::StatusOr<Milenage> m = Milenage::Create(t.k, *opc);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(HexEncode(m->F1(t.rand, t.sqn, t.amf)), HexEncode(t.f1)) << "f1";
  EXPECT_EQ(HexEncode(m->F1Star(t.rand, t.sqn, t.amf)), HexEncode(t.f1star))
      << "f1*";
  Milenage::Outputs out = m->F2345(t.rand);
  EXPECT_EQ(HexEncode(out.res), HexEncode(t.f2)) << "f2";
  EXPECT_EQ(HexEncode(out.ck), HexEncode(t.f3)) << "f3";
  EXPECT_EQ(HexEncode(out.ik), HexEncode(t.f4)) << "f4";
  EXPECT_EQ(HexEncode(out.ak), HexEncode(t.f5)) << "f5";
  EXPECT_EQ(HexEncode(m->F5Star(t.rand)), HexEncode(t.f5star)) << "f5*";
}

TEST(MilenageTest, MatchesAllTs35208ConformanceSets) {
  const std::string dir = SharedDir();
  ASSERT_FALSE(dir.empty()) << "SIMPROV_SHARED_DIR is not set";
  const std::vector<TestSet> sets =
      LoadSets(dir + "/vectors/milenage-ts35208.txt");
  ASSERT_EQ(sets.size(), 20u);
  for (size_t i = 0; i < sets.size(); ++i) {
    SCOPED_TRACE("TS 35.208 test set " + std::to_string(sets[i].number));
    EXPECT_EQ(sets[i].number, static_cast<int>(i + 1));
    CheckSet(sets[i]);
  }
}

TEST(MilenageTest, OutputLengths) {
  absl::StatusOr<Milenage> m =
      Milenage::Create(Bytes(16, 0x11), Bytes(16, 0x22));
  ASSERT_TRUE(m.ok()) << m.status();
  const Bytes rand(16, 0x33), sqn(6, 0x44), amf(2, 0x55);
  EXPECT_EQ(m->F1(rand, sqn, amf).size(), 8u);
  EXPECT_EQ(m->F1Star(rand, sqn, amf).size(), 8u);
  Milenage::Outputs out = m->F2345(rand);
  EXPECT_EQ(out.res.size(), 8u);
  EXPECT_EQ(out.ck.size(), 16u);
  EXPECT_EQ(out.ik.size(), 16u);
  EXPECT_EQ(out.ak.size(), 6u);
  EXPECT_EQ(m->F5Star(rand).size(), 6u);
}

TEST(MilenageTest, CreateRejectsA15ByteKWithoutEchoingIt) {
  const Bytes k15 = *HexDecode("465b5ce8b199b49faa5f0a2ee238a6");
  const Bytes opc = *HexDecode("cd63cb71954a9f4e48a5994e37a02baf");
  absl::StatusOr<Milenage> m = Milenage::Create(k15, opc);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(m.status().message());
  EXPECT_EQ(msg.find("465b5ce8"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("cd63cb71"), std::string::npos) << msg;
}

TEST(MilenageTest, CreateRejectsWrongOpcLength) {
  absl::StatusOr<Milenage> m = Milenage::Create(Bytes(16, 1), Bytes(17, 2));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  m = Milenage::Create(Bytes(16, 1), Bytes());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MilenageTest, ComputeOpcRejectsWrongLengths) {
  EXPECT_EQ(Milenage::ComputeOpc(Bytes(15, 1), Bytes(16, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Milenage::ComputeOpc(Bytes(16, 1), Bytes(32, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// TS 35.208 test set 2 typed in from the specification, independently of the
// vectors file.
TEST(MilenageTest, MatchesTs35208Set2) {
  TestSet t;
  t.k = Hex("0396eb317b6d1c36f19c1c84cd6ffd16");
  t.rand = Hex("c00d603103dcee52c4478119494202e8");
  t.sqn = Hex("fd8eef40df7d");
  t.amf = Hex("af17");
  t.op = Hex("ff53bade17df5d4e793073ce9d7579fa");
  t.opc = Hex("53c15671c60a4b731c55b4a441c0bde2");
  t.f1 = Hex("5df5b31807e258b0");
  t.f1star = Hex("a8c016e51ef4a343");
  t.f2 = Hex("d3a628ed988620f0");
  t.f3 = Hex("58c433ff7a7082acd424220f2b67c556");
  t.f4 = Hex("21a8c1f929702adb3e738488b9f5c5da");
  t.f5 = Hex("c47783995f72");
  t.f5star = Hex("30f1197061c1");
  CheckSet(t);
}

TEST(MilenageTest, MovedObjectKeepsWorking) {
  const Bytes k = Hex("465b5ce8b199b49faa5f0a2ee238a6bc");
  const Bytes opc = Hex("cd63cb71954a9f4e48a5994e37a02baf");
  const Bytes rand = Hex("23553cbe9637a89d218ae64dae47bf35");
  absl::StatusOr<Milenage> m = Milenage::Create(k, opc);
  ASSERT_TRUE(m.ok());
  Milenage moved = *std::move(m);
  EXPECT_EQ(HexEncode(moved.F5Star(rand)), "451e8beca43b");
  absl::StatusOr<Milenage> other = Milenage::Create(Bytes(16, 0), opc);
  ASSERT_TRUE(other.ok());
  moved = *std::move(other);
  EXPECT_NE(HexEncode(moved.F5Star(rand)), "451e8beca43b");
}

TEST(MilenageTest, ConcurrentCallsOnOneObjectAgree) {
  const Bytes k = Hex("465b5ce8b199b49faa5f0a2ee238a6bc");
  const Bytes opc = Hex("cd63cb71954a9f4e48a5994e37a02baf");
  const Bytes rand = Hex("23553cbe9637a89d218ae64dae47bf35");
  const Bytes sqn = Hex("ff9bb4d0b607");
  const Bytes amf = Hex("b9b9");
  absl::StatusOr<Milenage> m = Milenage::Create(k, opc);
  ASSERT_TRUE(m.ok());
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        if (HexEncode(m->F1(rand, sqn, amf)) != "4a9ffac354dfafb3" ||
            HexEncode(m->F2345(rand).res) != "a54211d5e3ba50bf") {
          ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int n : mismatches) EXPECT_EQ(n, 0);
}

TEST(MilenageDeathTest, WrongSqnLengthAborts) {
  absl::StatusOr<Milenage> m = Milenage::Create(Bytes(16, 1), Bytes(16, 2));
  ASSERT_TRUE(m.ok());
  EXPECT_DEATH(m->F1(Bytes(16, 0), Bytes(5, 0), Bytes(2, 0)),
               "SQN must be 6 bytes");
  EXPECT_DEATH(m->F5Star(Bytes(15, 0)), "RAND must be 16 bytes");
}

}  // namespace
}  // namespace simprov
