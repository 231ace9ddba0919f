// `simprov-broker restore`: a data dir from a backup archive, under the
// data dir's lock (broker/ops/restore.cc reads and checks the archive).
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <memory>

#include "broker/broker_app.h"
#include "broker/data_dir.h"
#include "broker/ops/backup.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"

namespace simprov {
namespace {

int Fail(const absl::Status& s) {
  std::cerr << "simprov-broker: " << s.message() << "\n";
  return ExitCodeFor(s) == kExitOk ? kExitError : ExitCodeFor(s);
}

}  // namespace

int RunRestore(const RestoreConfig& r) {
  umask(077);
  std::string target = r.data_dir;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  // Restore writes the data dir: it holds the data dir's lock, like a
  // broker, so neither starts on a directory the other is writing. An
  // absent target is created to hold the lock, and removed on failure.
  struct stat st;
  bool created = false;
  if (lstat(target.c_str(), &st) != 0 && errno == ENOENT) {
    if (absl::Status s = MakeDirectories(target, 0700); !s.ok()) {
      return Fail(s);
    }
    created = true;
  }
  std::unique_ptr<DataDirLock> lock;
  if (created || (lstat(target.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
    auto l = DataDirLock::Acquire(target);
    if (!l.ok()) {
      if (created) rmdir(target.c_str());
      return Fail(l.status());
    }
    lock = std::move(*l);
  }
  auto s = RestoreBackup(
      r.archive, target, r.kek_file,
      [](const std::string& path) -> absl::StatusOr<std::unique_ptr<Store>> {
        return SqliteStore::Open(path);
      });
  if (!s.ok()) {
    // Leave the target as it was: absent, or empty.
    if (lock != nullptr && (created || lock->created())) {
      unlink(lock->path().c_str());
    }
    if (created) rmdir(target.c_str());
    return Fail(s.status());
  }
  std::cout << "restored " << s->entries << " files (" << s->bytes
            << " bytes, backup of " << s->created_at << ") into " << r.data_dir
            << "\n";
  if (!s->kek_included) {
    std::cerr << "simprov-broker: start it with --kek-file " << r.kek_file
              << "\n";
  }
  return kExitOk;
}

}  // namespace simprov
