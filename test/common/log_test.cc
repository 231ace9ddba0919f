#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace simprov {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// Runs `log` with stderr redirected to a temporary file; returns what it
// wrote.
template <typename F>
std::string CaptureStderr(F log) {
  char path[] = "/tmp/simprov-log-test.XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  unlink(path);
  const int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  log();
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string out(4096, '\0');
  const ssize_t n = pread(fd, out.data(), out.size(), 0);
  close(fd);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

TEST(LogTest, OneLineWithTimeAndLevel) {
  const std::string out = CaptureStderr([] { LogInfo("hello %s", "world"); });
  EXPECT_THAT(out, MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z INFO "
                                "hello world\n"));
}

TEST(LogTest, ControlCharactersInValuesAreEscaped) {
  // A webhook's refusal reason that tries to forge a second log line and
  // hide it with a carriage return and terminal escapes.
  const std::string reason =
      "denied\n2026-01-01T00:00:00.000Z INFO admin login ok\r\x1b[2K\t\x7f\x01";
  const std::string out =
      CaptureStderr([&] { LogWarning("issue hook refused: %s", reason); });
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_THAT(out, EndsWith(" WARN issue hook refused: denied\\n2026-01-01T00:"
                            "00:00.000Z INFO admin login ok\\r\\x1b[2K\\t\\x7f"
                            "\\x01\n"));
  for (char c : out.substr(0, out.size() - 1)) {
    const unsigned char u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u >= 0x20 && u != 0x7f) << static_cast<int>(u);
  }
}

TEST(LogTest, JwtKidWithNulAndPrintableBytesKept) {
  const std::string kid("k\0id\xc3\xa9 \\n", 9);
  const std::string out =
      CaptureStderr([&] { LogError("unknown kid %s", kid); });
  // NUL escaped; UTF-8 and a literal backslash sequence are left as they are.
  EXPECT_THAT(out, EndsWith(" ERROR unknown kid k\\x00id\xc3\xa9 \\n\n"));
  EXPECT_THAT(out, HasSubstr("ERROR"));
}

}  // namespace
}  // namespace simprov
