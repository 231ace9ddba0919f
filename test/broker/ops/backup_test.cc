// The broker's side of a backup: StreamBackup hands over the archive in
// bounded pieces with its SHA-256 and leaves no temporary behind (done,
// cancelled or failed); RestoreBackup reads the extracted store through the
// Store interface (the opener it is given) to check the KEK.
#include "broker/ops/backup.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "common/sealed_box.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::WriteFileOrDie;

StoreOpener SqliteOpener() {
  return [](const std::string& path) -> absl::StatusOr<std::unique_ptr<Store>> {
    return SqliteStore::Open(path);
  };
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    data_ = dir_ + "/data";
    scratch_ = dir_ + "/tmp";
    std::filesystem::create_directories(data_ + "/ca");
    std::filesystem::create_directories(scratch_);
    const char* old = std::getenv("TMPDIR");
    if (old != nullptr) old_tmpdir_ = old;
    setenv("TMPDIR", scratch_.c_str(), 1);

    kek_ = Random::Real().Generate(kKekSize);
    WriteFileOrDie(data_ + "/kek", HexEncode(kek_) + "\n");
    WriteFileOrDie(data_ + "/ca.pem", "a certificate\n");
    WriteFileOrDie(data_ + "/ca/issuing.key", std::string(3000, 'k'));
    WriteFileOrDie(data_ + "/listen-address", "127.0.0.1:7443\n");
    auto store = SqliteStore::Open(data_ + "/simprov.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok()) << import.status();
    for (int i = 0; i < 3; ++i) {
      NewSubscriber s;
      s.imsi = absl::StrCat("00101000000000", i);
      s.sealed_keys = SealBox(kek_, Bytes(32, static_cast<uint8_t>(i)),
                              ToBytes(s.imsi), Random::Real());
      s.amf = {0x80, 0x00};
      ASSERT_TRUE((*import)->Add(s).ok());
    }
    ASSERT_TRUE((*import)->Commit().ok());
  }
  void TearDown() override {
    store_.reset();
    if (old_tmpdir_) {
      setenv("TMPDIR", old_tmpdir_->c_str(), 1);
    } else {
      unsetenv("TMPDIR");
    }
    RemoveTree(dir_);
  }
  bool ScratchEmpty() { return std::filesystem::is_empty(scratch_); }

  std::string dir_, data_, scratch_;
  Bytes kek_;
  std::unique_ptr<SqliteStore> store_;
  std::optional<std::string> old_tmpdir_;
};

TEST_F(BackupTest, StreamsBoundedPiecesWithTheirChecksumAndRestores) {
  std::string archive;
  size_t pieces = 0, largest = 0;
  auto r = StreamBackup(*store_, data_, Clock::Real(), 4096,
                        [&](absl::string_view piece) {
                          // The temporary exists only while it streams.
                          EXPECT_FALSE(ScratchEmpty());
                          ++pieces;
                          largest = std::max(largest, piece.size());
                          archive.append(piece.data(), piece.size());
                          return true;
                        });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(ScratchEmpty());
  EXPECT_EQ(largest, 4096u);
  EXPECT_EQ(pieces, (archive.size() + 4095) / 4096);
  EXPECT_EQ(r->archive_size, archive.size());
  EXPECT_EQ(r->sha256, HexEncode(Sha256(archive)));
  EXPECT_EQ(archive.size() % 512, 0u);
  // simprov.db, kek, ca.pem, ca/issuing.key; not listen-address.
  EXPECT_EQ(r->summary.entries, 4u);
  EXPECT_TRUE(r->summary.kek_included);
  EXPECT_EQ(archive.substr(0, 11), std::string("simprov.db\0", 11));
  EXPECT_FALSE(absl::StrContains(archive, "listen-address"));

  const std::string file = dir_ + "/backup.tar";
  WriteFileOrDie(file, archive);
  auto restored = RestoreBackup(file, dir_ + "/restored", "", SqliteOpener());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->entries, 4u);
  EXPECT_EQ(restored->bytes, r->summary.bytes);
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/restored/ca/issuing.key"),
            std::string(3000, 'k'));
  // Opening the store to check the KEK left none of its side files.
  EXPECT_FALSE(PathExists(dir_ + "/restored/simprov.db-wal"));
  EXPECT_FALSE(PathExists(dir_ + "/restored/simprov.db-shm"));
  auto again = SqliteStore::Open(dir_ + "/restored/simprov.db");
  ASSERT_TRUE(again.ok()) << again.status();
  auto sub = (*again)->GetSubscriber("001010000000002");
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_TRUE(OpenBox(kek_, sub->sealed_keys, ToBytes(sub->imsi)).ok());
}

TEST_F(BackupTest, AReceiverThatGoesAwayCancelsAndLeavesNoTemporary) {
  int calls = 0;
  auto r = StreamBackup(*store_, data_, Clock::Real(), 1024,
                        [&](absl::string_view) { return ++calls < 2; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(ScratchEmpty());
}

TEST_F(BackupTest, AFailedBackupSendsNothingAndLeavesNoTemporary) {
  bool called = false;
  auto r = StreamBackup(*store_, dir_ + "/no-such-dir", Clock::Real(), 1024,
                        [&](absl::string_view) { return called = true; });
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(
      r.status().message(), "cannot read directory " + dir_ + "/no-such-dir"))
      << r.status();
  EXPECT_FALSE(called);
  EXPECT_TRUE(ScratchEmpty());
}

TEST_F(BackupTest, RestoreChecksTheKekThroughTheStoreItOpens) {
  std::string archive;
  ASSERT_TRUE(StreamBackup(*store_, data_, Clock::Real(), 65536,
                           [&](absl::string_view p) {
                             archive.append(p.data(), p.size());
                             return true;
                           })
                  .ok());
  const std::string file = dir_ + "/backup.tar";
  WriteFileOrDie(file, archive);
  const std::string target = dir_ + "/restored";

  // An opener that fails: the store does not open, nothing restored.
  auto failing =
      [](const std::string&) -> absl::StatusOr<std::unique_ptr<Store>> {
    return absl::InternalError("file is not a database");
  };
  auto r = RestoreBackup(file, target, "", failing);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "the backup's store does not open: file is not a database");
  EXPECT_FALSE(PathExists(target));

  // The opener sees the extracted store, in the staging directory.
  std::string opened;
  auto spy =
      [&opened](
          const std::string& path) -> absl::StatusOr<std::unique_ptr<Store>> {
    opened = path;
    return SqliteStore::Open(path);
  };
  ASSERT_TRUE(RestoreBackup(file, target, "", spy).ok());
  EXPECT_TRUE(absl::StartsWith(opened, target + ".restore.tmp.")) << opened;
  EXPECT_TRUE(absl::EndsWith(opened, "/simprov.db")) << opened;
}

TEST_F(BackupTest, AWrongExternalKekIsRefused) {
  // The KEK outside the data dir: the archive does not hold it.
  ASSERT_EQ(rename((data_ + "/kek").c_str(), (dir_ + "/kek").c_str()), 0);
  std::string archive;
  auto r = StreamBackup(*store_, data_, Clock::Real(), 65536,
                        [&](absl::string_view p) {
                          archive.append(p.data(), p.size());
                          return true;
                        });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->summary.kek_included);
  const std::string file = dir_ + "/backup.tar";
  WriteFileOrDie(file, archive);
  const std::string wrong = dir_ + "/wrong-kek";
  WriteFileOrDie(wrong, std::string(64, 'a') + "\n");
  auto bad = RestoreBackup(file, dir_ + "/restored", wrong, SqliteOpener());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(bad.status().message(),
            "the KEK in " + wrong +
                " does not open the backup's sealed keys (wrong KEK?)");
  EXPECT_FALSE(PathExists(dir_ + "/restored"));
  EXPECT_TRUE(
      RestoreBackup(file, dir_ + "/restored", dir_ + "/kek", SqliteOpener())
          .ok());
}

}  // namespace
}  // namespace simprov
