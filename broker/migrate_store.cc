#include "broker/migrate_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <iostream>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/data_dir.h"
#include "broker/store/postgres/postgres_load.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"

namespace simprov {
namespace {

// The SQLite store's tables, read on a read-only connection of its own.
class SqliteTables : public TableSource {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteTables>> Open(
      const std::string& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
        SQLITE_OK) {
      std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      return absl::UnavailableError(
          absl::StrCat("cannot open ", path, ": ", msg));
    }
    return std::unique_ptr<SqliteTables>(new SqliteTables(db));
  }
  ~SqliteTables() override { sqlite3_close(db_); }

  absl::StatusOr<std::vector<std::string>> Tables() override {
    std::vector<std::string> out;
    // Its own bookkeeping (the migrations it applied) stays behind.
    absl::Status s = Each(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
        "LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name",
        [&](sqlite3_stmt* st) -> absl::Status {
          out.emplace_back(
              reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
          return absl::OkStatus();
        });
    if (!s.ok()) return s;
    return out;
  }

  absl::Status Read(const std::string& table,
                    const std::vector<std::string>& columns,
                    const std::string& key, const RowFn& row) override {
    // Names come from the target's schema, never from input.
    const std::string sql =
        absl::StrCat("SELECT ", absl::StrJoin(columns, ", "), " FROM ", table,
                     " ORDER BY ", key);
    return Each(sql, [&](sqlite3_stmt* st) -> absl::Status {
      std::vector<pg::Arg> values;
      for (int i = 0; i < static_cast<int>(columns.size()); ++i) {
        switch (sqlite3_column_type(st, i)) {
          case SQLITE_NULL:
            values.emplace_back(pg::Null{});
            break;
          case SQLITE_INTEGER:
            values.emplace_back(
                static_cast<int64_t>(sqlite3_column_int64(st, i)));
            break;
          case SQLITE_BLOB: {
            const auto* p =
                static_cast<const uint8_t*>(sqlite3_column_blob(st, i));
            values.emplace_back(
                p == nullptr ? Bytes()
                             : Bytes(p, p + sqlite3_column_bytes(st, i)));
            break;
          }
          case SQLITE_FLOAT:
            return absl::InvalidArgumentError(
                absl::StrCat("column ", columns[i], " holds a real number"));
          default: {
            const auto* p =
                reinterpret_cast<const char*>(sqlite3_column_text(st, i));
            values.emplace_back(
                std::string(p == nullptr ? "" : p,
                            static_cast<size_t>(sqlite3_column_bytes(st, i))));
          }
        }
      }
      return row(values);
    });
  }

 private:
  explicit SqliteTables(sqlite3* db) : db_(db) {}
  absl::Status Each(const std::string& sql,
                    const std::function<absl::Status(sqlite3_stmt*)>& fn) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db_)));
    }
    absl::Status s;
    int rc;
    while (s.ok() && (rc = sqlite3_step(st)) == SQLITE_ROW) s = fn(st);
    if (s.ok() && rc != SQLITE_DONE) {
      s = absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db_)));
    }
    sqlite3_finalize(st);
    return s;
  }
  sqlite3* db_;
};

absl::StatusOr<std::vector<TableReport>> Migrate(const MigrateStoreConfig& c,
                                                 std::string* shown) {
  if (!absl::StartsWith(c.to, "postgresql://") &&
      !absl::StartsWith(c.to, "postgres://")) {
    return absl::InvalidArgumentError(
        "--to: expected postgresql://... or postgres://...");
  }
  pg::ConnectOptions target(c.to);
  *shown = pg::RedactConnInfo(c.to);
  if (!c.password_file.empty()) {
    auto password = ReadFileToString(c.password_file, 4096);
    if (!password.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--store-password-file: ", password.status().message()));
    }
    target.password = std::string(absl::StripAsciiWhitespace(*password));
  }
  const DataDirPaths paths(c.data_dir);
  struct stat st;
  if (stat(paths.store().c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("no SQLite store at ", paths.store()));
  }
  // Offline: no broker may write the SQLite store meanwhile.
  auto lock = DataDirLock::Acquire(paths.root);
  if (!lock.ok()) return lock.status();
  // Brings the SQLite schema up to date and writes its queued audit.
  if (auto sqlite = SqliteStore::Open(paths.store()); !sqlite.ok()) {
    return sqlite.status();
  }
  auto source = SqliteTables::Open(paths.store());
  if (!source.ok()) return source.status();
  return LoadIntoPostgres(target, **source);
}

}  // namespace

int RunMigrateStore(const MigrateStoreConfig& config) {
  std::string shown;
  auto reports = Migrate(config, &shown);
  if (!reports.ok()) {
    std::cerr << "simprov-broker: migrate-store: " << reports.status().message()
              << "\n";
    return ExitCodeFor(reports.status());
  }
  uint64_t rows = 0;
  for (const TableReport& r : *reports) {
    std::cout << r.table << " rows=" << r.rows << " sha256=" << r.sha256_hex
              << "\n";
    rows += r.rows;
  }
  std::cout << "migrated " << reports->size() << " tables (" << rows
            << " rows) from " << DataDirPaths(config.data_dir).store()
            << " into " << shown << "\n";
  return kExitOk;
}

}  // namespace simprov
