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

TEST(LogTest, JsonLinesEscapeAsJsonRequires) {
  const std::string line = FormatLogLine(
      LogLevel::kWarning, "a \"b\" \\ c\nd\x01 \xc3\xa9",
      "2026-12-08T00:00:00.000Z", LogFormat::kJson, /*journald=*/false);
  EXPECT_EQ(line,
            "{\"time\":\"2026-12-08T00:00:00.000Z\",\"level\":\"warning\","
            "\"msg\":\"a \\\"b\\\" \\\\ c\\nd\\u0001 \xc3\xa9\"}");
  // Bytes that are not UTF-8 cannot make the line invalid JSON.
  EXPECT_EQ(
      FormatLogLine(LogLevel::kInfo, "x\xff", "T", LogFormat::kJson, false),
      "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"x\\u00ff\"}");
  EXPECT_EQ(
      FormatLogLine(LogLevel::kInfo, "\xc3", "T", LogFormat::kJson, false),
      "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"\\u00c3\"}");
}

TEST(LogTest, JournaldLinesStartWithTheSyslogPriority) {
  EXPECT_EQ(FormatLogLine(LogLevel::kDebug, "m", "T", LogFormat::kText, true),
            "<7>T DEBUG m");
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "m", "T", LogFormat::kText, true),
            "<6>T INFO m");
  EXPECT_EQ(FormatLogLine(LogLevel::kWarning, "m", "T", LogFormat::kText, true),
            "<4>T WARN m");
  EXPECT_EQ(FormatLogLine(LogLevel::kError, "m", "T", LogFormat::kJson, true),
            "<3>{\"time\":\"T\",\"level\":\"error\",\"msg\":\"m\"}");
  EXPECT_EQ(FormatLogLine(LogLevel::kError, "m", "T", LogFormat::kText, false),
            "T ERROR m");
}

TEST(LogTest, SetLogFormatSwitchesToJsonLines) {
  LogFormat format = LogFormat::kText;
  ASSERT_TRUE(ParseLogFormat("json", &format));
  EXPECT_FALSE(ParseLogFormat("xml", &format));
  SetLogFormat(format);
  const std::string out = CaptureStderr([] { LogInfo("hello %s", "json"); });
  SetLogFormat(LogFormat::kText);
  EXPECT_THAT(out,
              MatchesRegex("\\{\"time\":\"[0-9T:.Z-]+\",\"level\":\"info\","
                           "\"msg\":\"hello json\"\\}\n"));
}

}  // namespace
}  // namespace simprov
