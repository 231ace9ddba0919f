// Online backup and restore of a broker's data directory.
//
// The archive is a POSIX ustar file (`tar tvf` lists it) holding:
//   simprov.db     a consistent snapshot of the store, taken with SQLite's
//                  online backup API from a read connection while the
//                  broker serves (WAL readers never block the writer);
//   every other regular file of the data dir (CA certificates and keys,
//                  token keys, the KEK when it lives there, files other
//                  components add), except the store's WAL/SHM/journal, the
//                  admin socket, listen-address, http-address and
//                  temporary files of atomic writes;
//   MANIFEST.json  last: format, version, creation time, whether the KEK is
//                  included, and the size, mode and SHA-256 of every entry.
// The archive is written atomically (temporary file, fsync, rename), 0600.
//
// Restore rebuilds a data dir all-or-nothing: it refuses a non-empty
// target, extracts into a sibling staging directory, verifies every
// checksum against the manifest and that the KEK (from the archive or
// --kek-file) opens a sealed row, and only then renames the staging
// directory into place.
#ifndef SIMPROV_BROKER_OPS_BACKUP_H_
#define SIMPROV_BROKER_OPS_BACKUP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"

namespace simprov {

inline constexpr char kBackupManifest[] = "MANIFEST.json";
inline constexpr int kBackupFormatVersion = 1;

struct BackupSummary {
  uint64_t entries = 0;  // files, the manifest not counted
  uint64_t bytes = 0;    // their total size
  bool kek_included = false;
};

// Backs up the data dir `data_dir` (the broker may be running) to `out`.
absl::StatusOr<BackupSummary> CreateBackup(const std::string& data_dir,
                                           const std::string& out,
                                           Clock& clock);

struct RestoreSummary {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  bool kek_included = false;
  std::string created_at;  // from the manifest
};

// Restores `archive` into `new_dir` (absent or empty). `kek_file`: the KEK
// for a backup taken with --kek-file (it must open the sealed keys);
// must be empty when the archive includes its KEK.
absl::StatusOr<RestoreSummary> RestoreBackup(const std::string& archive,
                                             const std::string& new_dir,
                                             const std::string& kek_file);

}  // namespace simprov

#endif  // SIMPROV_BROKER_OPS_BACKUP_H_
