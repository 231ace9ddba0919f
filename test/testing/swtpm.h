// A software TPM 2.0 for tests: `swtpm socket --tpm2` in a temporary state
// directory on two free loopback ports, started up (TPM2_Startup(CLEAR)) and
// stopped with the object.
#ifndef SIMPROV_TEST_TESTING_SWTPM_H_
#define SIMPROV_TEST_TESTING_SWTPM_H_

#include <memory>
#include <string>

#include "test/testing/process.h"

namespace simprov::testing {

class Swtpm {
 public:
  // Null (after printing why) when swtpm does not come up.
  static std::unique_ptr<Swtpm> Start();
  ~Swtpm();

  // The TCTI for the agent's --key tpm2:TCTI and for tpm2-tools' -T.
  const std::string& tcti() const { return tcti_; }
  int port() const { return port_; }
  // The transient objects currently loaded (tpm2_getcap handles-transient):
  // what a process that forgot to flush its keys leaves behind.
  int TransientObjects() const;

 private:
  Swtpm() = default;
  std::string dir_;
  std::string tcti_;
  int port_ = 0;
  std::unique_ptr<BackgroundProcess> process_;
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_SWTPM_H_
