// KEK rotation leaves no old ciphertext on disk: with the real broker and
// CLI, the sealed K/OPc blobs read from the store before `simprov keys
// rotate-kek` appear nowhere in simprov.db, simprov.db-wal or
// simprov.db-shm once it reports success, and every subscriber still
// bootstraps.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteSoftSim;

// Every subscriber's sealed blob, read with a connection of the test's own
// (closed before it returns, so it holds no snapshot during the rotation).
std::vector<std::string> SealedBlobs(const std::string& db_path) {
  std::vector<std::string> out;
  sqlite3* db = nullptr;
  EXPECT_EQ(
      sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
      SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db,
                               "SELECT sealed_keys FROM subscribers ORDER BY "
                               "imsi",
                               -1, &stmt, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    out.emplace_back(static_cast<const char*>(sqlite3_column_blob(stmt, 0)),
                     static_cast<size_t>(sqlite3_column_bytes(stmt, 0)));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

// How many of `blobs` occur, byte for byte, in the store's files.
int FoundOnDisk(const std::string& data_dir,
                const std::vector<std::string>& blobs,
                std::string* where = nullptr) {
  int found = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string file = data_dir + "/simprov.db" + suffix;
    const std::string bytes = ReadFileOrEmpty(file);
    for (const std::string& b : blobs) {
      if (bytes.find(b) != std::string::npos) {
        ++found;
        if (where != nullptr && where->empty()) *where = file;
      }
    }
  }
  return found;
}

TEST(KekScrubTest, NoPreRotationCiphertextIsLeftInTheStoreFiles) {
  const std::string dir = MakeTempDir();
  auto broker = BrokerProcess::Start(dir + "/broker");
  ASSERT_NE(broker, nullptr);
  // Two imports (two transactions), then a re-read of each row, so the old
  // boxes sit in the WAL and, after an automatic checkpoint or not, in the
  // database file.
  std::vector<TestSim> sims;
  for (int i = 0; i < 40; ++i) {
    sims.push_back(RandomSim(absl::StrCat(1010000900000LL + i)));
  }
  broker->Import({sims.begin(), sims.begin() + 20});
  broker->Import({sims.begin() + 20, sims.end()});
  const std::string db = broker->data_dir() + "/simprov.db";
  const std::vector<std::string> before = SealedBlobs(db);
  ASSERT_EQ(before.size(), sims.size());
  for (const std::string& b : before) ASSERT_GE(b.size(), 40u);
  // The attack's premise: the blobs are on disk now.
  ASSERT_EQ(FoundOnDisk(broker->data_dir(), before) >= 40, true);

  ProcessResult r = broker->Cli({"keys", "rotate-kek"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "rotated the KEK: 40 of 40")) << r.out;

  // Right after success: not one old box in the database, WAL or SHM.
  std::string where;
  EXPECT_EQ(FoundOnDisk(broker->data_dir(), before, &where), 0)
      << "an old sealed box is still in " << where;
  // The rows were re-wrapped, not lost.
  const std::vector<std::string> after = SealedBlobs(db);
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_NE(after[i], before[i]);
  EXPECT_GE(FoundOnDisk(broker->data_dir(), after), 40);

  // And the broker still serves them: a SIM bootstraps, a new import works.
  std::filesystem::create_directories(dir + "/sim");
  const std::string sim = WriteSoftSim(dir + "/sim", sims[7]);
  ProcessResult b = broker->Bootstrap(sim, dir + "/out");
  EXPECT_EQ(b.exit_code, 0) << b.err;
  broker->Import({RandomSim("1010000900999")});
  EXPECT_EQ(SealedBlobs(db).size(), 41u);
  EXPECT_EQ(broker->Stop(), 0);
  RemoveTree(dir);
}

}  // namespace
}  // namespace simprov
