// One broker per data dir and per port, with the real binaries: a second
// broker on the same data dir, or on a port the first one listens on
// (--listen, --http-listen, --admin-listen), exits at once with one line,
// and the first one keeps serving alone with its admin socket. Restore
// respects the data dir's lock too.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BackgroundProcess;
using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;

class DataDirLockTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }

  // The pid recorded in DIR/broker.lock.
  static std::string LockPid(const std::string& data_dir) {
    return std::string(
        absl::StripAsciiWhitespace(ReadFileOrEmpty(data_dir + "/broker.lock")));
  }

  static bool IsSocket(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  }

  std::string dir_;
};

TEST_F(DataDirLockTest, ASecondBrokerOnTheSameDataDirExitsAndLeavesTheFirst) {
  const std::string data = dir_ + "/data";
  auto first = BrokerProcess::Start(data);
  ASSERT_NE(first, nullptr);
  const std::string pid = LockPid(data);
  ASSERT_FALSE(pid.empty());
  const std::string listen_before = ReadFileOrEmpty(data + "/listen-address");

  // Another port, same data dir.
  ProcessResult r = RunProcess(
      {testing::kBrokerBin, "--data-dir", data, "--listen", "127.0.0.1:0"},
      absl::Seconds(30));
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err, absl::StrCat("simprov-broker: data dir ", data,
                                " is in use by pid ", pid, "\n"));
  // The first broker's files are untouched and it still answers.
  EXPECT_TRUE(IsSocket(data + "/admin.sock"));
  EXPECT_EQ(ReadFileOrEmpty(data + "/listen-address"), listen_before);
  EXPECT_EQ(LockPid(data), pid);
  ProcessResult list = first->Cli({"subscribers", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;

  // Restore into the running broker's data dir: refused by the lock before
  // anything else.
  ProcessResult restore = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", data, dir_ + "/none.tar"});
  EXPECT_EQ(restore.exit_code, kExitUsage);
  EXPECT_EQ(restore.err, absl::StrCat("simprov-broker: data dir ", data,
                                      " is in use by pid ", pid, "\n"));
  EXPECT_TRUE(IsSocket(data + "/admin.sock"));

  // Once the first one stops, the data dir starts again (the lock file
  // stays, the kernel dropped the lock).
  EXPECT_EQ(first->Stop(), 0);
  auto again = BrokerProcess::Start(data);
  ASSERT_NE(again, nullptr);
  EXPECT_NE(LockPid(data), pid);
  EXPECT_EQ(again->Stop(), 0);
}

TEST_F(DataDirLockTest, ASecondBrokerOnAPortInUseExitsWithAddressInUse) {
  const std::string data = dir_ + "/first";
  auto first = BrokerProcess::Start(
      data, {"--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"});
  ASSERT_NE(first, nullptr);
  const std::string device =
      std::string(absl::StripAsciiWhitespace(first->address()));
  const std::string http = std::string(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(data + "/http-address")));
  const std::string admin = std::string(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(data + "/admin-address")));
  ASSERT_FALSE(http.empty());
  ASSERT_FALSE(admin.empty());

  struct Case {
    std::string name;
    std::vector<std::string> args;
    std::string address;
  };
  const std::vector<Case> cases = {
      {"device", {"--listen", device}, device},
      {"http", {"--listen", "127.0.0.1:0", "--http-listen", http}, http},
      {"admin", {"--listen", "127.0.0.1:0", "--admin-listen", admin}, admin},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string other = absl::StrCat(dir_, "/second-", i);
    std::vector<std::string> argv = {testing::kBrokerBin, "--data-dir", other};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    ProcessResult r = RunProcess(argv, absl::Seconds(60));
    EXPECT_EQ(r.exit_code, kExitUnreachable) << c.name << ": " << r.err;
    EXPECT_TRUE(absl::EndsWith(
        r.err, absl::StrCat("simprov-broker: cannot listen on ", c.address,
                            ": address in use (another process listens "
                            "there)\n")))
        << c.name << ": " << r.err;
    // One line on stderr from the failure (the log may precede it).
    EXPECT_FALSE(PathExists(other + "/listen-address")) << c.name;
  }
  // The first broker still serves on all three.
  ProcessResult list = first->Cli({"subscribers", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(
                ReadFileOrEmpty(data + "/http-address"))),
            http);
  EXPECT_TRUE(IsSocket(data + "/admin.sock"));
  EXPECT_EQ(first->Stop(), 0);
}

}  // namespace
}  // namespace simprov
