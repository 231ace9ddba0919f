// Online backup and restore of a broker's data directory.
//
// The archive is a POSIX ustar file (`tar tvf` lists it) holding:
//   simprov.db     a consistent snapshot of the store (Store::Snapshot),
//                  taken while the broker serves;
//   every other regular file of the data dir (CA certificates and keys,
//                  token keys, the KEK when it lives there, files other
//                  components add), except the store's WAL/SHM/journal, the
//                  admin socket, listen-address, http-address, the lock
//                  file and temporary files of atomic writes;
//   MANIFEST.json  last: format, version, creation time, whether the KEK is
//                  included, and the size, mode and SHA-256 of every entry.
// The broker builds it (CreateBackup) and streams it to `simprov backup`
// over the admin API (StreamBackup, Ops.Backup).
//
// Restore rebuilds a data dir all-or-nothing: it refuses a non-empty
// target, extracts into a sibling staging directory that it creates itself
// (never an existing path, never through a symlink), verifies the archive's
// structure, every checksum against the manifest and that the KEK (from the
// archive or --kek-file) opens a sealed row, and only then moves the
// staging directory into place. Any malformed archive is InvalidArgument
// with one line naming what is wrong, and leaves nothing behind.
#ifndef SIMPROV_BROKER_OPS_BACKUP_H_
#define SIMPROV_BROKER_OPS_BACKUP_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

inline constexpr char kBackupManifest[] = "MANIFEST.json";
inline constexpr int kBackupFormatVersion = 1;
// The store's entry and the KEK's, in the archive and in a data dir.
inline constexpr char kBackupStoreName[] = "simprov.db";
inline constexpr char kBackupKekName[] = "kek";
// The data dir's lock file (held by a running broker, and by restore):
// never backed up, and the only file a restore target may already hold.
inline constexpr char kBackupLockName[] = "broker.lock";

struct BackupSummary {
  uint64_t entries = 0;  // files, the manifest not counted
  uint64_t bytes = 0;    // their total size
  bool kek_included = false;
};

// Backs up the data dir `data_dir`, whose store is `store` (the broker may
// be serving from both), to `out`: written to a temporary file next to it,
// fsynced and renamed, 0600.
absl::StatusOr<BackupSummary> CreateBackup(Store& store,
                                           const std::string& data_dir,
                                           const std::string& out,
                                           Clock& clock);

struct StreamedBackup {
  BackupSummary summary;
  uint64_t archive_size = 0;  // bytes handed to the sink
  std::string sha256;         // of the whole archive, lower-case hex
};

// CreateBackup into a private temporary directory (0700, under $TMPDIR or
// /tmp), then hands the archive to `sink` in order, in pieces of at most
// `chunk_size` bytes, and removes the directory, whatever happened.
// Cancelled when `sink` returns false (the receiver went away).
absl::StatusOr<StreamedBackup> StreamBackup(
    Store& store, const std::string& data_dir, Clock& clock, size_t chunk_size,
    const std::function<bool(absl::string_view)>& sink);

struct RestoreSummary {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  bool kek_included = false;
  std::string created_at;  // from the manifest
};

// Opens the store file a backup holds (SqliteStore::Open in the broker).
using StoreOpener = std::function<absl::StatusOr<std::unique_ptr<Store>>(
    const std::string& path)>;

// Restores `archive` into `new_dir` (absent, or empty but for its lock file
// kBackupLockName, which the caller may hold). `kek_file`: the KEK
// for a backup taken with --kek-file (it must open the sealed keys);
// must be empty when the archive includes its KEK. `open_store` opens the
// extracted store to read a sealed row.
absl::StatusOr<RestoreSummary> RestoreBackup(const std::string& archive,
                                             const std::string& new_dir,
                                             const std::string& kek_file,
                                             const StoreOpener& open_store);

}  // namespace simprov

#endif  // SIMPROV_BROKER_OPS_BACKUP_H_
