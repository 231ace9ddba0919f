// Values from outside cannot forge log lines: an issue hook that refuses
// with a reason holding a newline, a forged log line and a terminal escape
// shows up in the real broker's log as one escaped line.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

TEST(LogEscapeTest, AnIssueHookReasonCannotForgeALogLine) {
  const std::string dir = MakeTempDir();
  const std::string reason =
      "unknown serial\n2026-01-01T00:00:00.000Z INFO admin login ok\x1b[2K";
  httplib::Server hook;
  hook.Post("/hook", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(nlohmann::json{{"allow", false}, {"reason", reason}}.dump(),
                    "application/json");
  });
  const int port = hook.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serve([&] { hook.listen_after_bind(); });
  WriteFileOrDie(dir + "/hook-secret", "s3cret\n");
  auto broker = BrokerProcess::Start(
      dir + "/broker",
      {"--issue-hook", absl::StrCat("http://127.0.0.1:", port, "/hook"),
       "--issue-hook-secret-file", dir + "/hook-secret"});
  ASSERT_NE(broker, nullptr);
  const TestSim sim = RandomSim("001010000006401");
  broker->Import({sim});
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir, sim), dir + "/device");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(broker->Stop(), 0);
  hook.stop();
  serve.join();

  const std::string log = broker->log();
  EXPECT_TRUE(absl::StrContains(
      log,
      " refused: unknown serial\\n2026-01-01T00:00:00.000Z INFO admin login "
      "ok\\x1b[2K\n"))
      << log;
  EXPECT_FALSE(absl::StrContains(log, "\x1b")) << log;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    EXPECT_FALSE(absl::StartsWith(line, "2026-01-01T00:00:00.000Z")) << line;
  }
  RemoveTree(dir);
}

}  // namespace
}  // namespace simprov
