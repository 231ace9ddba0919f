// The operator CLI in scripts, with the real simprov-broker and simprov:
// the broker named by environment variables, imports from stdin with a byte
// order mark and --skip-existing, and serials pasted as openssl prints them.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "test/testing/broker_fixture.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

// posix_spawn does not search PATH.
const std::string kEnv = "/usr/bin/env";
const std::string kSh = "/bin/sh";

class CliScriptingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    broker_ = BrokerProcess::Start(dir_ + "/broker");
    ASSERT_NE(broker_, nullptr);
  }
  void TearDown() override {
    broker_.reset();
    RemoveTree(dir_);
  }
  // `simprov ARGS...` with exactly the environment `env` (nothing inherited).
  ProcessResult CliWithEnv(const std::vector<std::string>& env,
                           const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kEnv, "-i"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.push_back(testing::kCliBin);
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv);
  }
  int SubscriberCount() {
    ProcessResult r = broker_->Cli({"subscribers", "list", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    int n = 0;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (!line.empty()) ++n;
    }
    return n;
  }
  static std::string Csv(const std::vector<TestSim>& sims) {
    std::string csv = "imsi,ki,opc\n";
    for (const TestSim& s : sims) {
      absl::StrAppend(&csv, s.imsi, ",", s.k, ",", s.opc, "\n");
    }
    return csv;
  }

  std::string dir_;
  std::unique_ptr<BrokerProcess> broker_;
};

TEST_F(CliScriptingTest, EnvironmentNamesTheBrokerAndFlagsWin) {
  const std::string data_dir = "SIMPROV_DATA_DIR=" + broker_->data_dir();
  const std::string socket =
      "SIMPROV_ADMIN_SOCKET=" + broker_->data_dir() + "/admin.sock";
  EXPECT_EQ(CliWithEnv({data_dir}, {"subscribers", "list"}).exit_code, 0);
  EXPECT_EQ(CliWithEnv({socket}, {"subscribers", "list"}).exit_code, 0);

  // Nothing says where: one line naming the flags and the variables.
  ProcessResult r = CliWithEnv({}, {"subscribers", "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "simprov: say where the broker is: --data-dir DIR or "
            "--admin-socket PATH (or SIMPROV_DATA_DIR, SIMPROV_ADMIN_SOCKET, "
            "SIMPROV_ADMIN)\n");

  // A flag beats a variable, and a local flag is never redirected by a
  // variable naming another target.
  EXPECT_EQ(
      CliWithEnv({"SIMPROV_ADMIN_SOCKET=/nonexistent/admin.sock"},
                 {"--data-dir", broker_->data_dir(), "subscribers", "list"})
          .exit_code,
      0);
  EXPECT_EQ(
      CliWithEnv(
          {"SIMPROV_ADMIN=127.0.0.1:1", "SIMPROV_ADMIN_CERT=/nonexistent"},
          {"--data-dir", broker_->data_dir(), "subscribers", "list"})
          .exit_code,
      0);
  EXPECT_EQ(CliWithEnv({"SIMPROV_DATA_DIR=/nonexistent"},
                       {"--admin-socket", broker_->data_dir() + "/admin.sock",
                        "subscribers", "list"})
                .exit_code,
            0);
  // The remote variables are used when no flag names a target (here they
  // name a certificate directory that does not exist).
  r = CliWithEnv({data_dir, "SIMPROV_ADMIN=127.0.0.1:1",
                  "SIMPROV_ADMIN_CERT=/nonexistent-certs"},
                 {"subscribers", "list"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "/nonexistent-certs")) << r.err;
}

TEST_F(CliScriptingTest, ImportsFromStdinWithBomAndSkipsExisting) {
  const TestSim a = RandomSim("001010000007001");
  const TestSim b = RandomSim("001010000007002");
  const TestSim c = RandomSim("001010000007003");
  const std::string first = dir_ + "/first.csv";
  WriteFileOrDie(first, "\xEF\xBB\xBF" + Csv({a, b}));  // a spreadsheet's BOM
  ProcessResult r = broker_->Cli({"subscribers", "import", first});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 2 subscribers\n");

  // Re-running with one new row is refused as a whole without the flag...
  const std::string again = dir_ + "/again.csv";
  WriteFileOrDie(again, Csv({a, b, c}));
  r = broker_->Cli({"subscribers", "import", again});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "simprov: line 2: duplicate IMSI 001010000007001\n");
  EXPECT_EQ(SubscriberCount(), 2);

  // ...and imports only the new one with it, read from stdin.
  r = RunProcess({kSh, "-c",
                  absl::StrCat("exec \"$0\" --data-dir \"$1\" subscribers "
                               "import --skip-existing - < \"$2\""),
                  testing::kCliBin, broker_->data_dir(), again});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 1 subscribers (skipped 2 already present)\n");
  EXPECT_EQ(SubscriberCount(), 3);

  // An IMSI twice in one file is still an error, and nothing is imported.
  const TestSim d = RandomSim("001010000007004");
  const std::string twice = dir_ + "/twice.csv";
  WriteFileOrDie(twice, Csv({a, d, d}));
  r = broker_->Cli({"subscribers", "import", "--skip-existing", twice});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "simprov: line 4: duplicate IMSI 001010000007004\n");
  EXPECT_EQ(SubscriberCount(), 3);
}

TEST_F(CliScriptingTest, SerialsAsOpensslPrintsThem) {
  const TestSim sim = RandomSim("001010000007101");
  broker_->Import({sim});
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker_->Bootstrap(WriteSoftSim(dir_, sim), out).exit_code, 0);
  ProcessResult r = RunProcess({"/usr/bin/openssl", "x509", "-serial", "-noout",
                                "-in", out + "/device.crt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // "serial=5A3F..." -> "5A:3F:...", as `openssl x509 -text` groups it.
  absl::string_view printed = absl::StripAsciiWhitespace(r.out);
  ASSERT_TRUE(absl::ConsumePrefix(&printed, "serial=")) << r.out;
  const std::string hex(printed);
  std::string colons;
  for (size_t i = 0; i < hex.size(); i += 2) {
    absl::StrAppend(&colons, i == 0 ? "" : ":", hex.substr(i, 2));
  }
  r = broker_->Cli({"devices", "revoke", "--serial", "not-hex"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(absl::StartsWith(r.err, "simprov: serial must be hex digits"))
      << r.err;
  r = broker_->Cli({"devices", "revoke", "--serial", colons});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(
      r.out, "revoked 1 certificate: " + absl::AsciiStrToLower(hex)))
      << r.out;
}

// One JSON object on one line, parsed; fails the test otherwise.
nlohmann::json ParseOneLine(const ProcessResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(j.is_object()) << r.out;
  return j;
}

TEST_F(CliScriptingTest, JsonOnEveryCommandThatPrints) {
  const TestSim sim = RandomSim("001010000007201");
  const std::string csv = dir_ + "/one.csv";
  WriteFileOrDie(csv, Csv({sim}));
  nlohmann::json j =
      ParseOneLine(broker_->Cli({"subscribers", "import", "--json", csv}));
  EXPECT_EQ(j, (nlohmann::json{{"imported", 1}}));
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker_->Bootstrap(WriteSoftSim(dir_, sim), out).exit_code, 0);

  j = ParseOneLine(broker_->Cli({"subscribers", "show", "--json", sim.imsi}));
  EXPECT_EQ(j["imsi"], sim.imsi);
  EXPECT_EQ(j["group"], "default");
  EXPECT_EQ(j["status"], "active");
  EXPECT_EQ(j["amf"], "8000");
  ASSERT_EQ(j["certificates"].size(), 1u);
  EXPECT_EQ(j["certificates"][0]["status"], "valid");
  EXPECT_EQ(j["certificates"][0]["serial"].get<std::string>().size() % 2, 0u);

  j = ParseOneLine(broker_->Cli({"admin", "whoami", "--json"}));
  EXPECT_EQ(j, (nlohmann::json{{"name", "local"}, {"role", "admin"}}));

  j = ParseOneLine(broker_->Cli({"ca", "status", "--json"}));
  EXPECT_TRUE(j["active"]["subject"].is_string());
  EXPECT_TRUE(j["staged"].is_null());
  EXPECT_TRUE(j["retired"].is_number());

  j = ParseOneLine(broker_->Cli({"keys", "rotate-kek", "--json"}));
  EXPECT_EQ(j["resumed"], false);
  EXPECT_EQ(j["rows"], 1);
  EXPECT_EQ(j["rewrapped"], 1);

  const std::string archive = dir_ + "/backup.tar";
  j = ParseOneLine(broker_->Cli({"backup", "--json", archive}));
  EXPECT_EQ(j["file"], archive);
  EXPECT_EQ(j["archive_bytes"].get<uint64_t>(),
            testing::ReadFileOrEmpty(archive).size());
  EXPECT_EQ(j["sha256"].get<std::string>().size(), 64u);
  EXPECT_TRUE(j["kek_included"].is_boolean());
}

}  // namespace
}  // namespace simprov
