// A progress bar for `simprov subscribers import` on a terminal: percent of
// the file read, rows and rows per second, redrawn on one stderr line at
// most 10 times a second. Silent when stderr is not a terminal (scripts
// and logs get only the one-line summary on stdout).
#ifndef SIMPROV_BROKER_CLI_IMPORT_PROGRESS_H_
#define SIMPROV_BROKER_CLI_IMPORT_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <istream>
#include <string>

namespace simprov {

class ImportProgress {
 public:
  ImportProgress(std::istream& in, const std::string& path);
  // Called once per row read.
  void Row() {
    if (enabled_ && (++rows_ & 0x3ff) == 0) Draw(false);
  }
  // Every row is sent; the broker commits.
  void Committing();
  // Ends the bar with the elapsed time.
  void Done(uint64_t imported);

 private:
  void Draw(bool final);

  std::istream& in_;
  bool enabled_ = false;
  uint64_t total_bytes_ = 0;
  uint64_t rows_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CLI_IMPORT_PROGRESS_H_
