// `simprov-broker restore` against crafted archives, with the real binary:
// wrong JSON types and missing fields in the manifest, bad tar headers,
// truncation, sizes past the end, path traversal, links, duplicates, a
// file where a directory is needed, and a symlink planted at the staging
// path. Each one exits 2 with one line naming what is wrong, and leaves
// nothing behind: no target, no staging directory, nothing written through
// the symlink.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::WriteFileOrDie;

struct TarEntry {
  std::string name;
  std::string data;
  char type = '0';
  unsigned mode = 0600;
};

void Octal(char* field, size_t width, uint64_t v) {
  std::string s(width - 1, '0');
  for (size_t i = width - 1; i-- > 0;) {
    s[i] = static_cast<char>('0' + (v & 7));
    v >>= 3;
  }
  memcpy(field, s.data(), width - 1);
  field[width - 1] = '\0';
}

// A ustar header; `size` may lie about the data that follows.
std::string Header(const TarEntry& e, uint64_t size) {
  std::string h(512, '\0');
  memcpy(&h[0], e.name.data(), std::min<size_t>(e.name.size(), 100));
  Octal(&h[100], 8, e.mode);
  Octal(&h[108], 8, 0);
  Octal(&h[116], 8, 0);
  Octal(&h[124], 12, size);
  Octal(&h[136], 12, 0);
  memset(&h[148], ' ', 8);
  h[156] = e.type;
  memcpy(&h[257], "ustar", 6);
  memcpy(&h[263], "00", 2);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  Octal(&h[148], 7, sum);
  h[155] = ' ';
  return h;
}

std::string Padded(const std::string& data) {
  return data + std::string((512 - data.size() % 512) % 512, '\0');
}

std::string Tar(const std::vector<TarEntry>& entries) {
  std::string out;
  for (const TarEntry& e : entries) {
    out += Header(e, e.data.size()) + Padded(e.data);
  }
  return out + std::string(1024, '\0');
}

// The entries of a ustar archive simprov wrote.
std::vector<TarEntry> Untar(const std::string& tar) {
  std::vector<TarEntry> out;
  size_t pos = 0;
  while (pos + 512 <= tar.size() && tar[pos] != '\0') {
    TarEntry e;
    e.name = std::string(tar.c_str() + pos);
    e.type = tar[pos + 156];
    const uint64_t size = std::stoull(tar.substr(pos + 124, 11), nullptr, 8);
    e.mode = std::stoul(tar.substr(pos + 100, 7), nullptr, 8);
    e.data = tar.substr(pos + 512, size);
    out.push_back(e);
    pos += 512 + (size + 511) / 512 * 512;
  }
  return out;
}

class RestoreArchiveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_dir_ = new std::string(MakeTempDir());
    auto broker = BrokerProcess::Start(*suite_dir_ + "/broker");
    ASSERT_NE(broker, nullptr);
    broker->Import(
        {RandomSim("001010000700001"), RandomSim("001010000700002")});
    const std::string backup = *suite_dir_ + "/backup.tar";
    ProcessResult r = broker->Cli({"backup", backup});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(broker->Stop(), 0);
    good_ = new std::vector<TarEntry>(Untar(ReadFileOrEmpty(backup)));
  }
  static void TearDownTestSuite() {
    RemoveTree(*suite_dir_);
    delete suite_dir_;
    delete good_;
  }
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_NE(good_, nullptr);
    ASSERT_GE(good_->size(), 3u);
    ASSERT_EQ(good_->back().name, "MANIFEST.json");
  }
  void TearDown() override { RemoveTree(dir_); }

  static nlohmann::json GoodManifest() {
    return nlohmann::json::parse(good_->back().data);
  }
  // The good archive with its manifest replaced by `m`.
  static std::string WithManifest(const nlohmann::json& m) {
    std::vector<TarEntry> e = *good_;
    e.back().data = m.dump(2);
    return Tar(e);
  }

  // Restores `archive` into dir_/target; expects exit 2 with exactly
  // `error` (after "simprov-broker: ") and nothing left behind.
  void ExpectRefused(const std::string& archive, const std::string& error) {
    const std::string file = dir_ + "/crafted.tar";
    WriteFileOrDie(file, archive);
    const std::string target = dir_ + "/target";
    ProcessResult r = RunProcess(
        {testing::kBrokerBin, "restore", "--data-dir", target, file});
    EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
    EXPECT_EQ(r.err, "simprov-broker: " + error + "\n");
    EXPECT_EQ(r.out, "");
    EXPECT_FALSE(PathExists(target));
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      EXPECT_EQ(e.path().filename().string(), "crafted.tar") << e.path();
    }
  }

  static std::string* suite_dir_;
  static std::vector<TarEntry>* good_;
  std::string dir_;
};

std::string* RestoreArchiveTest::suite_dir_ = nullptr;
std::vector<TarEntry>* RestoreArchiveTest::good_ = nullptr;

TEST_F(RestoreArchiveTest, TheUntouchedArchiveRestores) {
  const std::string file = dir_ + "/good.tar";
  WriteFileOrDie(file, Tar(*good_));
  ProcessResult r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", dir_ + "/target", file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(PathExists(dir_ + "/target/simprov.db"));
  EXPECT_FALSE(PathExists(dir_ + "/target/broker.lock"));
}

TEST_F(RestoreArchiveTest, ManifestFieldsOfTheWrongTypeAreRefused) {
  nlohmann::json m = GoodManifest();
  m["entries"][0]["path"] = 5;
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: entry 1: \"path\" is not "
                "a string");

  m = GoodManifest();
  const std::string first = m["entries"][0]["path"];
  m["entries"][0]["size"] = "12";
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: entry 1 (" + first +
                    "): \"size\" is not a non-negative integer");
  m["entries"][0]["size"] = -1;
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: entry 1 (" + first +
                    "): \"size\" is not a non-negative integer");

  m = GoodManifest();
  m["entries"][1]["sha256"] = nlohmann::json::array();
  ExpectRefused(WithManifest(m), "the backup's manifest is corrupt: entry 2 (" +
                                     std::string(m["entries"][1]["path"]) +
                                     "): \"sha256\" is not 64 hex digits");

  m = GoodManifest();
  m["entries"][0] = "simprov.db";
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: entry 1 is not an object");

  m = GoodManifest();
  m["entries"] = {{"path", "x"}};
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: \"entries\" is not a list");

  m = GoodManifest();
  m["version"] = "1";
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: \"version\" is not a "
                "number");
  m["version"] = 2;
  ExpectRefused(WithManifest(m),
                "the backup is format version 2; this simprov reads version "
                "1");

  m = GoodManifest();
  m["format"] = 1;
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: \"format\" is not "
                "\"simprov-backup\"");
  m = GoodManifest();
  m["kek"] = true;
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: \"kek\" is neither "
                "\"included\" nor \"external\"");
  m = GoodManifest();
  m["created_at"] = nullptr;
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: \"created_at\" is not a "
                "string");

  ExpectRefused(WithManifest(nlohmann::json::array()),
                "the backup's manifest is corrupt: not a JSON object");
  std::vector<TarEntry> e = *good_;
  e.back().data = "{\"format\": \"simprov-backup\", ";
  ExpectRefused(Tar(e), "the backup's manifest is corrupt: not a JSON object");
}

TEST_F(RestoreArchiveTest, MissingFieldsAndDuplicateListingsAreRefused) {
  nlohmann::json m = GoodManifest();
  m["entries"][0].erase("sha256");
  const std::string first = m["entries"][0]["path"];
  ExpectRefused(WithManifest(m), "the backup's manifest is corrupt: entry 1 (" +
                                     first +
                                     "): \"sha256\" is not 64 hex digits");
  m = GoodManifest();
  m.erase("entries");
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: \"entries\" is not a list");
  m = GoodManifest();
  m.erase("kek");
  ExpectRefused(WithManifest(m),
                "the backup's manifest is corrupt: \"kek\" is neither "
                "\"included\" nor \"external\"");

  // One file listed twice stands in for another that goes unchecked.
  m = GoodManifest();
  m["entries"][1] = m["entries"][0];
  ExpectRefused(WithManifest(m), "the backup's manifest is corrupt: " + first +
                                     " is listed twice");

  // A listed file the archive lacks, and a file the manifest lacks.
  m = GoodManifest();
  nlohmann::json extra = m["entries"][0];
  extra["path"] = "missing.pem";
  m["entries"].push_back(extra);
  ExpectRefused(WithManifest(m),
                "the backup lacks missing.pem listed in its manifest");
  std::vector<TarEntry> e = *good_;
  e.insert(e.end() - 1, TarEntry{"unlisted.pem", "x"});
  ExpectRefused(Tar(e), "the backup holds files its manifest does not list");

  // No manifest at all.
  e = *good_;
  e.pop_back();
  const std::string file = dir_ + "/crafted.tar";
  ExpectRefused(Tar(e), file + " has no manifest: not a simprov backup");
}

TEST_F(RestoreArchiveTest, BadTarHeadersTruncationAndOversizeAreRefused) {
  const std::string file = dir_ + "/crafted.tar";
  std::string tar = Tar(*good_);
  // Header checksum off by one.
  std::string bad = tar;
  bad[0] ^= 0x01;
  ExpectRefused(bad, file + " is not a simprov backup (bad tar header)");
  // A size field that is not octal (checksum recomputed).
  std::vector<TarEntry> e = *good_;
  bad = Header(e[0], e[0].data.size());
  memcpy(&bad[124], "0000000009x", 11);
  memset(&bad[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : bad) sum += c;
  Octal(&bad[148], 7, sum);
  bad[155] = ' ';
  ExpectRefused(bad + tar.substr(512),
                file + " is not a simprov backup (bad tar header)");
  // Cut in the middle of the first entry, and right after a header.
  ExpectRefused(tar.substr(0, 3000), "the backup is truncated");
  ExpectRefused(tar.substr(0, 512 + Padded(e[0].data).size()),
                "the backup is truncated");
  // A size far beyond the archive: refused before anything is written.
  ExpectRefused(Header(e[0], 077777777777ULL) + tar.substr(512),
                "the backup is truncated");
  // A manifest over 16 MiB.
  e.back().data = std::string((16 << 20) + 1, ' ');
  ExpectRefused(Tar(e), "the backup's manifest is too large");
  // Not even one header.
  ExpectRefused("", "the backup is truncated");
}

TEST_F(RestoreArchiveTest, TraversalLinksAndDuplicateEntriesAreRefused) {
  for (const std::string& name :
       {std::string("../escaped"), std::string("/tmp/abs"),
        std::string("ca/../../escaped"), std::string("./kek"),
        std::string("a//b"), std::string("bad\nname"),
        std::string("broker.lock")}) {
    std::vector<TarEntry> e = *good_;
    e.insert(e.begin(), TarEntry{name, "x"});
    std::string shown = name;
    if (name == "bad\nname") shown = "bad\\x0aname";
    ExpectRefused(Tar(e), "the backup holds an unexpected entry: " + shown);
  }
  EXPECT_FALSE(PathExists(dir_ + "/escaped"));
  // Links and directories as entries.
  for (char type : {'1', '2', '5', 'L', 'x'}) {
    std::vector<TarEntry> e = *good_;
    e.insert(e.begin(), TarEntry{"link", "", type});
    ExpectRefused(Tar(e), "the backup holds an unexpected entry: link");
  }
  // The same file twice (the second would replace the checked one).
  std::vector<TarEntry> e = *good_;
  e.insert(e.end() - 1, e[0]);
  ExpectRefused(Tar(e), "the backup holds " + e[0].name + " twice");
  // Two manifests.
  e = *good_;
  e.push_back(e.back());
  ExpectRefused(Tar(e), "the backup holds MANIFEST.json twice");
  // A file where a directory is needed.
  e = *good_;
  e.insert(e.begin(), TarEntry{"dir", "x"});
  e.insert(e.begin() + 1, TarEntry{"dir/file", "y"});
  ExpectRefused(Tar(e),
                "the backup holds an unexpected entry: dir/file (Not a "
                "directory)");
}

// Runs `restore` with a symlink planted at its staging path
// (TARGET.restore.tmp.PID) before it starts: the child waits on a pipe
// until the parent, knowing its pid, has planted the link.
TEST_F(RestoreArchiveTest, ASymlinkPlantedAtTheStagingPathIsNeverFollowed) {
  const std::string file = dir_ + "/good.tar";
  WriteFileOrDie(file, Tar(*good_));
  const std::string target = dir_ + "/target";
  const std::string victim = dir_ + "/victim";
  std::filesystem::create_directories(victim);
  int go[2];
  int err[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(err), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(go[1]);
    close(err[0]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(99);
    dup2(err[1], STDERR_FILENO);
    execl(testing::kBrokerBin.c_str(), testing::kBrokerBin.c_str(), "restore",
          "--data-dir", target.c_str(), file.c_str(), nullptr);
    _exit(98);
  }
  close(go[0]);
  close(err[1]);
  const std::string staging = absl::StrCat(target, ".restore.tmp.", pid);
  ASSERT_EQ(symlink(victim.c_str(), staging.c_str()), 0);
  ASSERT_EQ(write(go[1], "g", 1), 1);
  close(go[1]);
  std::string stderr_text;
  char buf[4096];
  ssize_t n;
  while ((n = read(err[0], buf, sizeof buf)) > 0) stderr_text.append(buf, n);
  close(err[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kExitUsage) << stderr_text;
  EXPECT_EQ(stderr_text, "simprov-broker: " + staging +
                             " already exists (left by another restore?); "
                             "remove it and retry\n");
  // The link is left as it was, nothing went through it, no target.
  struct stat st;
  ASSERT_EQ(lstat(staging.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_TRUE(std::filesystem::is_empty(victim));
  EXPECT_FALSE(PathExists(target));
}

}  // namespace
}  // namespace simprov
