// Every exit code docs/cli.md documents, for every binary: the test reads
// the doc's "which binary exits with which code" table and, for each
// (binary, code) row, runs the real binary into the situation the row
// names and expects exactly that code. A row with no case here, or a case
// the doc does not list, fails the test, so the doc and the binaries cannot
// drift apart.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "test/testing/broker_fixture.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

const std::string kBenchBin = SIMPROV_BENCH_BIN;
const std::string kSh = "/bin/sh";

using Pair = std::pair<std::string, int>;  // (binary, exit code)

// The rows "| `BINARY` | CODE | ... |" of docs/cli.md, and the codes of
// its first table ("| CODE | meaning | ... |").
struct DocTables {
  std::set<Pair> pairs;
  std::set<int> codes;
};

DocTables ReadDoc() {
  DocTables t;
  const std::string doc =
      ReadFileOrEmpty(std::string(SIMPROV_SOURCE_DIR) + "/docs/cli.md");
  EXPECT_FALSE(doc.empty());
  for (absl::string_view line : absl::StrSplit(doc, '\n')) {
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    // "| a | b | c |" splits into "", " a ", " b ", " c ", "".
    if (cells.size() != 5 || !cells[0].empty()) continue;
    for (std::string& c : cells) c = std::string(absl::StripAsciiWhitespace(c));
    int code = 0;
    if (absl::SimpleAtoi(cells[1], &code)) {
      t.codes.insert(code);  // | 0 | success | ... |
      continue;
    }
    const std::string& name = cells[1];
    if (name.size() > 2 && name.front() == '`' && name.back() == '`' &&
        name.rfind("`simprov", 0) == 0 && absl::SimpleAtoi(cells[2], &code)) {
      t.pairs.insert({name.substr(1, name.size() - 2), code});
    }
  }
  return t;
}

// Runs `argv` with writes beyond 512 bytes failing with EFBIG (RLIMIT_FSIZE
// of one block, SIGXFSZ ignored): an unexpected system error, as a full or
// failing disk gives.
ProcessResult WithWritesFailing(std::vector<std::string> argv) {
  std::vector<std::string> sh = {
      kSh, "-c", "trap '' XFSZ; ulimit -f 1; exec \"$@\"", "sh"};
  sh.insert(sh.end(), argv.begin(), argv.end());
  return RunProcess(sh);
}

class CliExitCodesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir());
    // One challenge per IMSI and no refill: the second bootstrap of an IMSI
    // is rate-limited.
    broker_ = BrokerProcess::Start(
                  *dir_ + "/broker",
                  {"--http-listen", "127.0.0.1:0", "--admin-listen",
                   "127.0.0.1:0", "--rate-burst", "1", "--rate-refill", "24h"})
                  .release();
  }
  static void TearDownTestSuite() {
    delete broker_;
    broker_ = nullptr;
    RemoveTree(*dir_);
    delete dir_;
  }
  void SetUp() override { ASSERT_NE(broker_, nullptr); }

  static std::string Dir() { return *dir_; }
  static BrokerProcess& Broker() { return *broker_; }
  // A fresh subscriber of the broker; returns its soft-SIM file.
  static std::string ImportedSim(const std::string& imsi) {
    const TestSim sim = RandomSim(imsi);
    Broker().Import({sim});
    return WriteSoftSim(Dir(), sim);
  }
  static std::string FileIn(const std::string& name) {
    return std::string(absl::StripAsciiWhitespace(
        ReadFileOrEmpty(Broker().data_dir() + "/" + name)));
  }
  static ProcessResult Agent(std::vector<std::string> args) {
    args.insert(args.begin(), testing::kAgentBin);
    return RunProcess(args);
  }

  // (binary, code) -> how to make it exit so.
  static std::map<Pair, std::function<ProcessResult()>> Cases();

  static std::string* dir_;
  static BrokerProcess* broker_;
};

std::string* CliExitCodesTest::dir_ = nullptr;
BrokerProcess* CliExitCodesTest::broker_ = nullptr;

std::map<Pair, std::function<ProcessResult()>> CliExitCodesTest::Cases() {
  const std::string broker = testing::kBrokerBin;
  const std::string cli = testing::kCliBin;
  std::map<Pair, std::function<ProcessResult()>> c;

  // simprov-broker
  c[{"simprov-broker", 0}] = [=] { return RunProcess({broker, "--version"}); };
  c[{"simprov-broker", 1}] = [=] {
    return WithWritesFailing({broker, "--data-dir", Dir() + "/broker-efbig",
                              "--listen", "127.0.0.1:0"});
  };
  c[{"simprov-broker", 2}] = [=] {
    return RunProcess({broker, "--data-dir", Dir() + "/b2", "--no-such-flag"});
  };
  c[{"simprov-broker", 4}] = [=] {
    return RunProcess({broker, "--data-dir", Dir() + "/broker-port-taken",
                       "--listen", Broker().address()});
  };

  // simprov
  c[{"simprov", 0}] = [] { return Broker().Cli({"subscribers", "list"}); };
  c[{"simprov", 1}] = [=] {
    return WithWritesFailing({cli, "--data-dir", Broker().data_dir(), "backup",
                              Dir() + "/backup.tar"});
  };
  c[{"simprov", 2}] = [] {
    return Broker().Cli({"subscribers", "show", "001019999999999"});
  };
  c[{"simprov", 3}] = [=] {
    const std::string certs = Dir() + "/viewer";
    ProcessResult issued =
        Broker().Cli({"admin", "issue-cert", "--role", "viewer", "--name",
                      "auditor", "--out", certs});
    EXPECT_EQ(issued.exit_code, 0) << issued.err;
    return RunProcess({cli, "--admin", FileIn("admin-address"), "--admin-cert",
                       certs, "groups", "delete", "cams"});
  };
  c[{"simprov", 4}] = [=] {
    return RunProcess(
        {cli, "--data-dir", Dir() + "/no-broker-here", "subscribers", "list"});
  };
  c[{"simprov", 6}] = [=] {
    return RunProcess(
        {cli, "token", "verify", "--jwks",
         "http://" + FileIn("http-address") + "/.well-known/jwks.json",
         "--audience", "billing", "eyJhbGciOiJFUzI1NiJ9.e30.AA"});
  };

  // simprov-agent
  c[{"simprov-agent", 0}] = [] {
    return Agent({"bootstrap", "--broker", Broker().address(), "--sim",
                  "soft:" + ImportedSim("001010000009001"), "--out",
                  Dir() + "/agent-0"});
  };
  c[{"simprov-agent", 1}] = [=] {
    const std::string sim = ImportedSim("001010000009002");
    return WithWritesFailing({testing::kAgentBin, "bootstrap", "--broker",
                              Broker().address(), "--sim", "soft:" + sim,
                              "--out", Dir() + "/agent-1"});
  };
  c[{"simprov-agent", 2}] = [] {
    return Agent({"bootstrap", "--broker", Broker().address(), "--sim",
                  "soft:" + Dir() + "/no-such-sim.json", "--out",
                  Dir() + "/agent-2"});
  };
  c[{"simprov-agent", 3}] = [] {
    const TestSim stranger = RandomSim("001010000009003");  // not imported
    return Agent({"bootstrap", "--broker", Broker().address(), "--sim",
                  "soft:" + WriteSoftSim(Dir(), stranger), "--out",
                  Dir() + "/agent-3"});
  };
  c[{"simprov-agent", 4}] = [] {
    return Agent({"bootstrap", "--broker", "127.0.0.1:1", "--sim",
                  "soft:" + ImportedSim("001010000009004"), "--attempts", "1",
                  "--out", Dir() + "/agent-4"});
  };
  c[{"simprov-agent", 5}] = [] {
    const std::string sim = ImportedSim("001010000009005");
    ProcessResult first =
        Agent({"bootstrap", "--broker", Broker().address(), "--sim",
               "soft:" + sim, "--out", Dir() + "/agent-5"});
    EXPECT_EQ(first.exit_code, 0) << first.err;
    return Agent({"bootstrap", "--force", "--attempts", "1", "--broker",
                  Broker().address(), "--sim", "soft:" + sim, "--out",
                  Dir() + "/agent-5"});
  };

  // simprov-bench
  c[{"simprov-bench", 0}] = [=] {
    return RunProcess({kBenchBin, "--broker", Broker().address(), "--data-dir",
                       Broker().data_dir(), "--devices", "2"});
  };
  c[{"simprov-bench", 2}] = [=] {
    return RunProcess({kBenchBin, "--no-such-flag"});
  };
  c[{"simprov-bench", 4}] = [=] {
    return RunProcess({kBenchBin, "--broker", "127.0.0.1:1", "--data-dir",
                       Broker().data_dir(), "--devices", "2"});
  };
  return c;
}

TEST_F(CliExitCodesTest, EveryDocumentedCodeOfEveryBinary) {
  const DocTables doc = ReadDoc();
  ASSERT_EQ(doc.codes, (std::set<int>{0, 1, 2, 3, 4, 5, 6}));
  ASSERT_FALSE(doc.pairs.empty()) << "no (binary, code) table in docs/cli.md";
  std::set<std::string> binaries;
  for (const auto& [binary, code] : doc.pairs) {
    binaries.insert(binary);
    EXPECT_TRUE(doc.codes.contains(code))
        << binary << " exits " << code
        << ", a code docs/cli.md does not define";
  }
  EXPECT_EQ(binaries,
            (std::set<std::string>{"simprov-broker", "simprov", "simprov-agent",
                                   "simprov-bench"}));
  auto cases = Cases();
  for (const Pair& p : doc.pairs) {
    auto it = cases.find(p);
    if (it == cases.end()) {
      ADD_FAILURE() << "docs/cli.md says " << p.first << " exits " << p.second
                    << ", but no case here makes it do so";
      continue;
    }
    ProcessResult r = it->second();
    EXPECT_EQ(r.exit_code, p.second)
        << p.first << " (documented exit " << p.second << ")\nstdout: " << r.out
        << "\nstderr: " << r.err;
    // Every failure says why, in one line on stderr.
    if (p.second != 0) {
      EXPECT_FALSE(r.err.empty()) << p.first << " exit " << p.second;
    }
  }
  for (const auto& [p, run] : cases) {
    EXPECT_TRUE(doc.pairs.contains(p))
        << "a case makes " << p.first << " exit " << p.second
        << ", which docs/cli.md's table does not list";
  }
}

}  // namespace
}  // namespace simprov
