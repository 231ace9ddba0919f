// KEK rotation: every sealed row ends up under the new KEK, the old KEK
// opens nothing, and a rotation interrupted at any point is finished at
// the next start.
#include "broker/keys/kek_rotation.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/atomic_file.h"
#include "common/sealed_box.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RemoveTree;

std::string Imsi(int n) { return std::to_string(1010000000000LL + n); }

Bytes PlainKeys(int n) {
  Bytes k(32);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<uint8_t>(0x80 + 3 * i + 17 * n);
  }
  return k;
}

class KekRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    kek_path_ = dir_ + "/kek";
    auto ring = LoadKekRing(kek_path_, Random::Real());
    ASSERT_TRUE(ring.ok()) << ring.status();
    ring_ = std::move(*ring);
    auto store = SqliteStore::Open(dir_ + "/simprov.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    RemoveTree(dir_);
  }

  void Import(int n, const Bytes& kek) {
    auto imp = store_->BeginImport();
    ASSERT_TRUE(imp.ok());
    for (int i = 0; i < n; ++i) {
      NewSubscriber s;
      s.imsi = Imsi(i);
      s.sealed_keys =
          SealBox(kek, PlainKeys(i), ToBytes(s.imsi), Random::Real());
      s.amf = {0x80, 0x00};
      ASSERT_TRUE((*imp)->Add(s).ok());
    }
    ASSERT_TRUE((*imp)->Commit().ok());
  }

  // How many rows open under `kek` (each with its own plaintext).
  int OpenUnder(const Bytes& kek, int n) {
    int opened = 0;
    for (int i = 0; i < n; ++i) {
      auto r = store_->GetSubscriber(Imsi(i));
      EXPECT_TRUE(r.ok());
      auto plain = OpenBox(kek, r->sealed_keys, ToBytes(Imsi(i)));
      if (plain.ok()) {
        EXPECT_EQ(*plain, PlainKeys(i));
        ++opened;
      }
    }
    return opened;
  }

  std::string dir_;
  std::string kek_path_;
  std::unique_ptr<KekRing> ring_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(KekRotationTest, RewrapsEveryRowAndReplacesTheKekFile) {
  const Bytes old_kek = *ring_->SealingKey();
  Import(2500, old_kek);
  KekRotator rotator(*store_, *ring_, kek_path_, Clock::Real(), Random::Real(),
                     /*batch_size=*/1000);
  auto r = rotator.Rotate("local");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows, 2500u);
  EXPECT_EQ(r->rewrapped, 2500u);
  EXPECT_FALSE(r->resumed);
  EXPECT_FALSE(ring_->rotating());
  EXPECT_FALSE(PathExists(NextKekPath(kek_path_)));
  auto on_disk = ReadKekFile(kek_path_);
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(*on_disk, *ring_->SealingKey());
  EXPECT_NE(*on_disk, old_kek);
  EXPECT_EQ(OpenUnder(*on_disk, 2500), 2500);
  EXPECT_EQ(OpenUnder(old_kek, 2500), 0);
  // The ring no longer opens boxes of the old KEK.
  const Bytes old_box =
      SealBox(old_kek, PlainKeys(1), ToBytes(Imsi(1)), Random::Real());
  EXPECT_FALSE(ring_->Open(old_box, ToBytes(Imsi(1))).ok());
  // The audit names the admin.
  auto audit = store_->AuditOf("kek");
  ASSERT_TRUE(audit.ok());
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().actor, "local");
  EXPECT_EQ(audit->back().action, "rotate-kek");
  EXPECT_EQ(audit->back().reason, "2500 of 2500 sealed rows re-wrapped");
}

TEST_F(KekRotationTest, AnInterruptedRotationIsFinishedAtTheNextStart) {
  const Bytes old_kek = *ring_->SealingKey();
  Import(300, old_kek);
  // The state a crash after step 3's first batches leaves: KEKFILE.next
  // durable, some rows already under it.
  const Bytes next = Random::Real().Generate(kKekSize);
  ASSERT_TRUE(
      WriteFileAtomic(NextKekPath(kek_path_), HexEncode(next) + "\n", 0600)
          .ok());
  auto partial = store_->RewrapSealedKeys(
      [&](const std::string& imsi,
          const Bytes& sealed) -> absl::StatusOr<std::optional<Bytes>> {
        if (imsi > Imsi(120)) return std::optional<Bytes>();
        auto plain = OpenBox(old_kek, sealed, ToBytes(imsi));
        if (!plain.ok()) return plain.status();
        return std::optional<Bytes>(
            SealBox(next, *plain, ToBytes(imsi), Random::Real()));
      },
      50);
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(OpenUnder(next, 300), 121);

  // "Restart": the ring loads both KEKs and opens every row.
  auto ring = LoadKekRing(kek_path_, Random::Real());
  ASSERT_TRUE(ring.ok());
  EXPECT_TRUE((*ring)->rotating());
  for (int i = 0; i < 300; ++i) {
    auto sub = store_->GetSubscriber(Imsi(i));
    EXPECT_TRUE((*ring)->Open(sub->sealed_keys, ToBytes(Imsi(i))).ok()) << i;
  }
  KekRotator rotator(*store_, **ring, kek_path_, Clock::Real(), Random::Real(),
                     64);
  auto r = rotator.ResumePending();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->resumed);
  EXPECT_EQ(r->rows, 300u);
  EXPECT_EQ(r->rewrapped, 179u);
  EXPECT_EQ(*ReadKekFile(kek_path_), next);
  EXPECT_FALSE(PathExists(NextKekPath(kek_path_)));
  EXPECT_EQ(OpenUnder(next, 300), 300);
  // Nothing pending: a no-op.
  auto again = rotator.ResumePending();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->rows, 0u);
}

TEST_F(KekRotationTest, ARowThatOpensUnderNeitherKekStopsTheRotation) {
  Import(10, *ring_->SealingKey());
  // Row 5 sealed under an unrelated KEK (corruption or a foreign row).
  auto imp = store_->BeginImport();
  ASSERT_TRUE(imp.ok());
  NewSubscriber s;
  s.imsi = "999990000000001";
  s.sealed_keys = SealBox(Random::Real().Generate(kKekSize), PlainKeys(1),
                          ToBytes(s.imsi), Random::Real());
  s.amf = {0x80, 0x00};
  ASSERT_TRUE((*imp)->Add(s).ok());
  ASSERT_TRUE((*imp)->Commit().ok());
  const std::string before = *ReadFileToString(kek_path_);
  KekRotator rotator(*store_, *ring_, kek_path_, Clock::Real(), Random::Real(),
                     4);
  auto r = rotator.Rotate("local");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(r.status().message(),
            "sealed keys of IMSI 999990000000001 open under neither the old "
            "nor the new KEK; rotation stopped");
  // The old KEK file stays; the rotation is still pending (KEKFILE.next).
  EXPECT_EQ(*ReadFileToString(kek_path_), before);
  EXPECT_TRUE(PathExists(NextKekPath(kek_path_)));
  EXPECT_TRUE(ring_->rotating());
  for (int i = 0; i < 10; ++i) {
    auto sub = store_->GetSubscriber(Imsi(i));
    EXPECT_TRUE(ring_->Open(sub->sealed_keys, ToBytes(Imsi(i))).ok());
  }
}

TEST(KekRingTest, MissingKekFileIsNotCreatedWhenAskedNotTo) {
  const std::string dir = MakeTempDir();
  auto r = LoadKekRing(dir + "/kek", Random::Real(), /*create=*/false);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(PathExists(dir + "/kek"));
  auto created = LoadKekRing(dir + "/kek", Random::Real());
  ASSERT_TRUE(created.ok());
  struct stat st;
  ASSERT_EQ(stat((dir + "/kek").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  RemoveTree(dir);
}

}  // namespace
}  // namespace simprov
