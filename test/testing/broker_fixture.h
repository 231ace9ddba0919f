// A real simprov-broker on loopback for tests, with helpers to make SIMs,
// import them with the real `simprov` CLI and run the real agent.
#ifndef SIMPROV_TEST_TESTING_BROKER_FIXTURE_H_
#define SIMPROV_TEST_TESTING_BROKER_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "test/testing/process.h"

namespace simprov::testing {

inline const std::string kBrokerBin = SIMPROV_BROKER_BIN;
inline const std::string kCliBin = SIMPROV_CLI_BIN;
inline const std::string kAgentBin = SIMPROV_AGENT_BIN;

struct TestSim {
  std::string imsi;
  std::string k;    // hex
  std::string opc;  // hex
};

// A SIM with fresh random K and OPc.
TestSim RandomSim(const std::string& imsi);
// Writes a soft-SIM file (JSON) for `sim`; returns its path.
std::string WriteSoftSim(const std::string& dir, const TestSim& sim,
                         const std::string& extra_json = "");

class BrokerProcess {
 public:
  // Starts a broker on 127.0.0.1:0 with `data_dir`; waits until it serves.
  // Returns null (after printing its log) if it does not come up.
  static std::unique_ptr<BrokerProcess> Start(
      const std::string& data_dir, std::vector<std::string> extra_args = {});

  const std::string& address() const { return address_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string log() const { return ReadFileOrEmpty(log_path_); }
  int Stop() { return process_->Stop(); }
  void Kill() { process_->Kill(); }
  bool Running() { return process_->Running(); }

  // Runs `simprov --data-dir DIR args...`.
  ProcessResult Cli(std::vector<std::string> args) const;
  // Imports SIMs through a CSV file and the real CLI; asserts success.
  void Import(const std::vector<TestSim>& sims) const;
  // Runs `simprov-agent bootstrap --broker ADDR --sim soft:SIM --out OUT`.
  ProcessResult Bootstrap(const std::string& sim_path, const std::string& out,
                          std::vector<std::string> extra = {}) const;

 private:
  std::string data_dir_;
  std::string log_path_;
  std::string address_;
  std::unique_ptr<BackgroundProcess> process_;
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_BROKER_FIXTURE_H_
