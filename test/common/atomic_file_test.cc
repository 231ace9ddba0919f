#include "common/atomic_file.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "test/testing/process.h"

namespace simprov {
namespace {

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir(); }
  void TearDown() override { testing::RemoveTree(dir_); }
  std::string dir_;
};

TEST_F(AtomicFileTest, PiecesAppearOnlyAtCommitWithExactlyTheMode) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteFileAtomic(path, "old", 0644).ok());
  auto w = AtomicFileWriter::Create(path, 0600);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Append("new ").ok());
  ASSERT_TRUE((*w)->Append("content").ok());
  EXPECT_EQ(*ReadFileToString(path), "old");  // not yet
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ(*ReadFileToString(path), "new content");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Names(dir_), std::vector<std::string>{"f"});
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(AtomicFileTest, DroppedUncommittedLeavesTheTargetAndNoTemporary) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteFileAtomic(path, "old", 0600).ok());
  {
    auto w = AtomicFileWriter::Create(path, 0600);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Append("half").ok());
    EXPECT_EQ(Names(dir_).size(), 2u);  // the target and the temporary
  }
  EXPECT_EQ(*ReadFileToString(path), "old");
  EXPECT_EQ(Names(dir_), std::vector<std::string>{"f"});
}

TEST_F(AtomicFileTest, MissingDirectoryIsNotFoundNamingTheTemporary) {
  auto w = AtomicFileWriter::Create(dir_ + "/missing/f", 0600);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(w.status().message().rfind(
                "cannot create " + dir_ + "/missing/f.tmp.", 0),
            0u)
      << w.status();
}

}  // namespace
}  // namespace simprov
