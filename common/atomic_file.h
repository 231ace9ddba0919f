// Crash-safe file writes: a reader sees the old complete file or the new
// complete file, never a mix, even across power loss.
//
// WriteFileAtomic writes to a temporary file in the same directory (created
// with the final mode, so a secret is never briefly world-readable), fsyncs
// it, renames it over the target and fsyncs the directory.
#ifndef SIMPROV_COMMON_ATOMIC_FILE_H_
#define SIMPROV_COMMON_ATOMIC_FILE_H_

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace simprov {

absl::Status WriteFileAtomic(const std::string& path, std::string_view data,
                             mode_t mode);
// Reads a whole file, refusing files larger than max_bytes.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             size_t max_bytes = 64 << 20);
absl::Status FsyncDirectory(const std::string& dir);
// mkdir -p with `mode` for the directories it creates.
absl::Status MakeDirectories(const std::string& path, mode_t mode);
bool PathExists(const std::string& path);
std::string DirName(const std::string& path);

}  // namespace simprov

#endif  // SIMPROV_COMMON_ATOMIC_FILE_H_
