// SqliteStore: operations: health, snapshots for backups, and re-wrapping
// sealed keys for a KEK rotation.
#include <sqlite3.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {
namespace {

// Leaves no replaced content in the store's files: VACUUM rebuilds the
// database from its live rows only (free pages and the free space inside
// pages, where SQLite keeps deleted cells, are gone), and a truncating
// checkpoint copies it into the database file and empties the WAL, which
// held every earlier page image. On a connection of its own: VACUUM cannot
// run inside the writer's transactions. A checkpoint must wait until no
// reader uses an older snapshot (the busy timeout); if one still does, the
// WAL cannot be emptied and this fails (Unavailable), so the caller does
// not report success with the old bytes still on disk.
absl::Status ScrubReplacedContent(const std::string& path) {
  auto db = SqliteConnection::Open(path);
  if (!db.ok()) return db.status();
  if (absl::Status s = (*db)->Exec("PRAGMA secure_delete=ON"); !s.ok()) {
    return s;
  }
  if (absl::Status s = (*db)->Exec("VACUUM"); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot vacuum the store ", path,
                                               ": ", s.message()));
  }
  int log = -1;
  int checkpointed = -1;
  const int rc = sqlite3_wal_checkpoint_v2(
      (*db)->raw(), "main", SQLITE_CHECKPOINT_TRUNCATE, &log, &checkpointed);
  struct stat st;
  const bool wal_empty =
      stat((path + "-wal").c_str(), &st) != 0 || st.st_size == 0;
  if (rc != SQLITE_OK || log != 0 || !wal_empty) {
    return absl::UnavailableError(absl::StrCat(
        "cannot empty the store's WAL ", path, "-wal (",
        rc != SQLITE_OK ? sqlite3_errmsg((*db)->raw()) : "frames remain",
        "): a reader holds an old snapshot; retry"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SqliteStore::AppendAuditDurable(const AuditEvent& event) {
  (void)FlushAudit();  // events queued earlier come first (cheap when none)
  return Write([&](SqliteConnection& db) -> absl::Status {
    return sqlite_internal::InsertAudit(db, event);
  });
}

absl::Status SqliteStore::Ping() {
  // An open connection keeps reading a deleted file: check the path too.
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    return absl::UnavailableError(absl::StrCat(path_, " is missing"));
  }
  if (auto v = SchemaVersion(); !v.ok()) return v.status();
  return absl::OkStatus();
}

absl::Status SqliteStore::Snapshot(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(path, " already exists"));
  }
  if (absl::Status s = FlushAudit(); !s.ok()) return s;
  sqlite3* from = nullptr;
  sqlite3* to = nullptr;
  int rc = sqlite3_open_v2(path_.c_str(), &from, SQLITE_OPEN_READONLY, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(from, 60000);
    rc = sqlite3_open_v2(path.c_str(), &to,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  }
  if (rc == SQLITE_OK) {
    // One step over every page: a single read transaction, so the copy is
    // one consistent snapshot; WAL lets the writer keep committing.
    sqlite3_backup* b = sqlite3_backup_init(to, "main", from, "main");
    if (!b) {
      rc = sqlite3_errcode(to);
    } else {
      do {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(50);
      } while (rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
      int frc = sqlite3_backup_finish(b);
      if (rc == SQLITE_DONE) rc = frc;
    }
  }
  if (rc == SQLITE_OK) {
    // A self-contained file: no WAL next to it.
    rc = sqlite3_exec(to, "PRAGMA journal_mode=DELETE", nullptr, nullptr,
                      nullptr);
  }
  absl::Status s;
  if (rc != SQLITE_OK) {
    s = absl::UnavailableError(absl::StrCat("cannot snapshot the store ", path_,
                                            ": ",
                                            to     ? sqlite3_errmsg(to)
                                            : from ? sqlite3_errmsg(from)
                                                   : "open failed"));
  }
  sqlite3_close(to);
  sqlite3_close(from);
  return s;
}

absl::StatusOr<Store::RewrapCounts> SqliteStore::RewrapSealedKeys(
    const RewrapFn& rewrap, size_t batch_size) {
  if (batch_size == 0) batch_size = 1;
  RewrapCounts total;
  std::string after;  // last IMSI of the previous batch; "" sorts first
  while (true) {
    RewrapCounts batch;
    std::string last;
    // Reads and updates in the writer's transaction, so no write between
    // our read and our update can be lost.
    auto rewrap_batch = [&](SqliteConnection& db) -> absl::Status {
      batch = RewrapCounts{};
      last.clear();
      std::vector<std::pair<std::string, Bytes>> rows;
      if (absl::Status r = db.Query(
              "SELECT imsi, sealed_keys FROM subscribers WHERE imsi > ? "
              "ORDER BY imsi LIMIT ?",
              "read sealed keys", {after, batch_size},
              [&](SqliteStatement& row) {
                rows.emplace_back(row.Text(0), row.Blob(1));
                return true;
              });
          !r.ok()) {
        return r;
      }
      for (auto& [imsi, sealed] : rows) {
        auto box = rewrap(imsi, sealed);
        if (!box.ok()) return box.status();
        ++batch.rows;
        last = imsi;
        if (!box->has_value()) continue;
        if (absl::Status u = db.ExecBound(
                "UPDATE subscribers SET sealed_keys = ? WHERE imsi = ?",
                "re-wrap sealed keys", {**box, imsi});
            !u.ok()) {
          return u;
        }
        ++batch.rewrapped;
      }
      return absl::OkStatus();
    };
    absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
      // Replaced boxes are overwritten with zeros in their pages as they
      // are replaced; the connection's setting is restored afterwards.
      int64_t secure_delete = 0;
      if (auto r = db.QueryRow(
              "PRAGMA secure_delete", "read secure_delete", {},
              [&](SqliteStatement& row) { secure_delete = row.Int(0); });
          !r.ok()) {
        return r.status();
      }
      if (absl::Status r = db.Exec("PRAGMA secure_delete=ON"); !r.ok()) {
        return r;
      }
      absl::Status result = rewrap_batch(db);
      (void)db.Exec(absl::StrCat("PRAGMA secure_delete=", secure_delete));
      return result;
    });
    if (!s.ok()) return s;
    total.rows += batch.rows;
    total.rewrapped += batch.rewrapped;
    if (batch.rows < batch_size) break;
    after = last;
  }
  if (absl::Status s = ScrubReplacedContent(path_); !s.ok()) return s;
  return total;
}

}  // namespace simprov
