#include "test/testing/broker_fixture.h"

#include <gtest/gtest.h>

#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov::testing {

TestSim RandomSim(const std::string& imsi) {
  return {imsi, HexEncode(Random::Real().Generate(16)),
          HexEncode(Random::Real().Generate(16))};
}

std::string WriteSoftSim(const std::string& dir, const TestSim& sim,
                         const std::string& extra_json) {
  std::string path = absl::StrCat(dir, "/sim-", sim.imsi, ".json");
  WriteFileOrDie(
      path, absl::StrCat("{\"imsi\": \"", sim.imsi, "\", \"k\": \"", sim.k,
                         "\", \"opc\": \"", sim.opc, "\"", extra_json, "}\n"));
  return path;
}

std::unique_ptr<BrokerProcess> BrokerProcess::Start(
    const std::string& data_dir, std::vector<std::string> extra_args) {
  auto b = std::unique_ptr<BrokerProcess>(new BrokerProcess);
  b->data_dir_ = data_dir;
  b->log_path_ = data_dir + ".broker.log";
  std::string ready = data_dir + "/listen-address";
  ::unlink(ready.c_str());
  std::vector<std::string> argv = {kBrokerBin, "--data-dir", data_dir,
                                   "--listen", "127.0.0.1:0"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  b->process_ = std::make_unique<BackgroundProcess>(argv, b->log_path_);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    std::string addr(absl::StripAsciiWhitespace(ReadFileOrEmpty(ready)));
    if (!addr.empty()) {
      b->address_ = addr;
      return b;
    }
    if (!b->process_->Running()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::cerr << "broker did not start; log:\n" << b->log() << "\n";
  return nullptr;
}

ProcessResult BrokerProcess::Cli(std::vector<std::string> args) const {
  std::vector<std::string> argv = {kCliBin, "--data-dir", data_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProcess(argv);
}

void BrokerProcess::Import(const std::vector<TestSim>& sims) const {
  std::string csv = "imsi,ki,opc\n";
  for (const TestSim& s : sims) {
    absl::StrAppend(&csv, s.imsi, ",", s.k, ",", s.opc, "\n");
  }
  std::string path = data_dir_ + ".import.csv";
  WriteFileOrDie(path, csv);
  ProcessResult r = Cli({"subscribers", "import", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ::unlink(path.c_str());
}

ProcessResult BrokerProcess::Bootstrap(const std::string& sim_path,
                                       const std::string& out,
                                       std::vector<std::string> extra) const {
  std::vector<std::string> argv = {kAgentBin, "bootstrap", "--broker",
                                   address_,  "--sim",     "soft:" + sim_path,
                                   "--out",   out};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return RunProcess(argv);
}

}  // namespace simprov::testing
