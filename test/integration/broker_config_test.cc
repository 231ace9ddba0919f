// simprov-broker's settings from a config file (TOML or YAML), from files
// and from the environment. Real binaries on loopback.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "broker/config_file.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "test/integration/ops_admin_testing.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::OpsAdminTest;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RunProcess;
using ::simprov::testing::WriteFileOrDie;

TEST(ConfigText, ParsesTomlAndYamlSubsets) {
  auto toml = ParseConfigText(
      "# broker\nlisten = \"127.0.0.1:0\"  # inline\nrate-burst = 4\n"
      "public-name = [\"a.example\", 'b.example']\ntoken-audiences = [\n"
      "  \"x\",\n  \"y\",\n]\n",
      false);
  ASSERT_TRUE(toml.ok()) << toml.status();
  ASSERT_EQ(toml->size(), 4u);
  EXPECT_EQ((*toml)[0].values, std::vector<std::string>{"127.0.0.1:0"});
  EXPECT_EQ((*toml)[2].values,
            (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ((*toml)[3].values, (std::vector<std::string>{"x", "y"}));
  auto yaml = ParseConfigText(
      "listen: 127.0.0.1:0\npublic-name:\n  - a.example\n  - b.example\n"
      "log-level: 'debug'\n",
      true);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  ASSERT_EQ(yaml->size(), 3u);
  EXPECT_EQ((*yaml)[1].values,
            (std::vector<std::string>{"a.example", "b.example"}));
  auto bad = ParseConfigText("listen\n", false);
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "line 1"));
  EXPECT_FALSE(ParseConfigText("[section]\n", false).ok());
}

TEST(ConfigText, FollowsTheRealGrammars) {
  // YAML: '#' starts a comment only after whitespace.
  auto yaml = ParseConfigText(
      "token-issuer: https://iss.example.com/tenant#1  # a comment\n"
      "public-name: [a.example, \"b.example\"]\nrate-burst: 7\n",
      true);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  ASSERT_EQ(yaml->size(), 3u);
  EXPECT_EQ((*yaml)[0].values,
            std::vector<std::string>{"https://iss.example.com/tenant#1"});
  EXPECT_EQ((*yaml)[1].values,
            (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ((*yaml)[2].line, 3);
  // TOML: digit separators, literal strings, booleans; file order kept.
  auto toml = ParseConfigText(
      "rate-burst = 1_000\ntoken-issuer = 'https://x.example/a#b'\n"
      "issue-hook-allow-on-timeout = true\n",
      false);
  ASSERT_TRUE(toml.ok()) << toml.status();
  ASSERT_EQ(toml->size(), 3u);
  EXPECT_EQ((*toml)[0].key, "rate-burst");
  EXPECT_EQ((*toml)[0].values, std::vector<std::string>{"1000"});
  EXPECT_EQ((*toml)[1].values,
            std::vector<std::string>{"https://x.example/a#b"});
  EXPECT_EQ((*toml)[2].values, std::vector<std::string>{"true"});
  // Refused, naming the line: nesting, syntax errors, a duplicate key.
  auto nested = ParseConfigText("listen: x\ntls:\n  cert: a\n", true);
  ASSERT_FALSE(nested.ok());
  EXPECT_TRUE(absl::StartsWith(nested.status().message(), "line 2: tls:"))
      << nested.status();
  auto broken = ParseConfigText("listen = \"x\"\nrate-burst = = 2\n", false);
  ASSERT_FALSE(broken.ok());
  EXPECT_TRUE(absl::StartsWith(broken.status().message(), "line 2: "))
      << broken.status();
  EXPECT_FALSE(ParseConfigText("a = 1\na = 2\n", false).ok());
  EXPECT_FALSE(ParseConfigText("[tls]\ncert = 'a'\n", false).ok());
  EXPECT_FALSE(ParseConfigText("- just\n- a list\n", true).ok());
  EXPECT_FALSE(ParseConfigText(std::string(2 << 20, '#'), false).ok());
}

std::string WaitForFile(const std::string& path) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    std::string s(absl::StripAsciiWhitespace(ReadFileOrEmpty(path)));
    if (!s.empty()) return s;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return "";
}

TEST_F(OpsAdminTest, ConfigFileSetsValuesAndFlagsOverrideIt) {
  const std::string data = dir_ + "/broker";
  const std::string conf = dir_ + "/broker.toml";
  WriteFileOrDie(conf, absl::StrCat("data-dir = \"", dir_,
                                    "/not-this\"\nhttp-listen = "
                                    "\"127.0.0.1:0\"\nlog-level = \"error\"\n"
                                    "admin_listen = \"127.0.0.1:0\"\n"));
  // --data-dir on the command line wins over the file's data-dir.
  auto broker = BrokerProcess::Start(data, {"--config", conf});
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(PathExists(dir_ + "/not-this"));
  EXPECT_FALSE(WaitForFile(data + "/http-address").empty());
  EXPECT_FALSE(WaitForFile(data + "/admin-address").empty());
  EXPECT_FALSE(absl::StrContains(broker->log(), "INFO")) << broker->log();
  ASSERT_EQ(broker->Stop(), 0);

  // YAML, with a flag overriding a key.
  const std::string yaml = dir_ + "/broker.yaml";
  WriteFileOrDie(yaml, "http-listen: 127.0.0.1:0\nlog-level: error\n");
  broker =
      BrokerProcess::Start(data, {"--config", yaml, "--log-level", "info"});
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(WaitForFile(data + "/http-address").empty());
  EXPECT_TRUE(absl::StrContains(broker->log(), "INFO")) << broker->log();
  ASSERT_EQ(broker->Stop(), 0);
}

TEST_F(OpsAdminTest, UnknownConfigKeysAreRefusedByName) {
  const std::string conf = dir_ + "/broker.toml";
  WriteFileOrDie(conf, "listen = \"127.0.0.1:0\"\nno-such-flag = 1\n");
  ProcessResult r = RunProcess(
      {testing::kBrokerBin, "--data-dir", dir_ + "/broker", "--config", conf});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "unknown key \"no-such-flag\""))
      << r.err;
  EXPECT_FALSE(PathExists(dir_ + "/broker"));
}

TEST_F(OpsAdminTest, ValuesFromFilesAndTheEnvironment) {
  const std::string data = dir_ + "/broker";
  // SIMPROV_<FLAG>_FILE: the value lives in a file (a secret's way in).
  const std::string value_file = dir_ + "/http-listen.secret";
  WriteFileOrDie(value_file, "127.0.0.1:0\n");
  setenv("SIMPROV_HTTP_LISTEN_FILE", value_file.c_str(), 1);
  setenv("SIMPROV_LOG_LEVEL", "error", 1);
  auto broker = BrokerProcess::Start(data);
  unsetenv("SIMPROV_HTTP_LISTEN_FILE");
  unsetenv("SIMPROV_LOG_LEVEL");
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(WaitForFile(data + "/http-address").empty());
  EXPECT_FALSE(absl::StrContains(broker->log(), "INFO")) << broker->log();
  ASSERT_EQ(broker->Stop(), 0);
  ::unlink((data + "/http-address").c_str());

  // In the config file: NAME-file reads flag NAME's value from a file.
  const std::string conf = dir_ + "/broker.toml";
  WriteFileOrDie(conf,
                 absl::StrCat("admin-listen-file = \"", value_file, "\"\n"));
  broker = BrokerProcess::Start(data, {"--config", conf});
  ASSERT_NE(broker, nullptr);
  EXPECT_FALSE(WaitForFile(data + "/admin-address").empty());
}
}  // namespace
}  // namespace simprov
