// Crash-safe file writes: a reader sees the old complete file or the new
// complete file, never a mix, even across power loss.
//
// AtomicFileWriter writes to a temporary file in the same directory (created
// with the final mode, so a secret is never briefly world-readable), and on
// Commit fsyncs it, renames it over the target and fsyncs the directory;
// destroyed uncommitted, it removes the temporary. WriteFileAtomic is the
// same for data held in memory.
#ifndef SIMPROV_COMMON_ATOMIC_FILE_H_
#define SIMPROV_COMMON_ATOMIC_FILE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace simprov {

class AtomicFileWriter {
 public:
  // Creates the temporary beside `path` with exactly `mode`; refuses a
  // planted file or symlink (O_EXCL|O_NOFOLLOW).
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(
      const std::string& path, mode_t mode);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  absl::Status Append(std::string_view data);
  // fsync, rename over the target, fsync the directory. After a failure the
  // target is unchanged and the temporary gone.
  absl::Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string tmp, int fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}
  const std::string path_;
  const std::string tmp_;
  int fd_;  // -1 once closed
  bool committed_ = false;
};

absl::Status WriteFileAtomic(const std::string& path, std::string_view data,
                             mode_t mode);
// Reads a whole file, refusing files larger than max_bytes.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             size_t max_bytes = 64 << 20);
absl::Status FsyncDirectory(const std::string& dir);
// mkdir -p with `mode` for the directories it creates.
absl::Status MakeDirectories(const std::string& path, mode_t mode);
bool PathExists(const std::string& path);
// Removes `path` and everything below it (nothing if absent); InternalError
// naming the path otherwise.
absl::Status RemoveTree(const std::string& path);
std::string DirName(const std::string& path);

}  // namespace simprov

#endif  // SIMPROV_COMMON_ATOMIC_FILE_H_
