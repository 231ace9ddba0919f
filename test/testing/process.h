// Running the real binaries from tests: one-shot commands with captured
// output, and background services stopped with SIGTERM.
#ifndef SIMPROV_TEST_TESTING_PROCESS_H_
#define SIMPROV_TEST_TESTING_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace simprov::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  std::string out;
  std::string err;
};

// Runs argv to completion (killed after `timeout`), capturing stdout and
// stderr.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(60));

// A process in the background; its stderr goes to a file.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv,
                    const std::string& stderr_path);
  ~BackgroundProcess();
  pid_t pid() const { return pid_; }
  bool Running();
  // Sends SIGTERM and waits; returns the exit code (-1 on signal/timeout).
  int Stop(absl::Duration timeout = absl::Seconds(15));
  // SIGKILL: a crash, as far as the process can tell.
  void Kill();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

// A fresh directory under $TMPDIR, removed by RemoveTree.
std::string MakeTempDir();
void RemoveTree(const std::string& path);
std::string ReadFileOrEmpty(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& data);

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_PROCESS_H_
