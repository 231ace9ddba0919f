// A thin RAII layer over the SQLite C API: a connection that caches its
// prepared statements, and statements with typed bind/column helpers.
// Not thread-safe: each connection belongs to one thread at a time.
#ifndef SIMPROV_BROKER_STORE_SQLITE_SQLITE_DB_H_
#define SIMPROV_BROKER_STORE_SQLITE_SQLITE_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/bytes.h"

namespace simprov {

class SqliteStatement {
 public:
  explicit SqliteStatement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~SqliteStatement() { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // Binds by 1-based index.
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, absl::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
  }
  void Bind(int i, const char* v) { Bind(i, absl::string_view(v)); }
  void Bind(int i, const std::string& v) { Bind(i, absl::string_view(v)); }
  void Bind(int i, const Bytes& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
  }
  void BindNull(int i) { sqlite3_bind_null(stmt_, i); }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col);
  Bytes Blob(int col);
  bool IsNull(int col) {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }

 private:
  sqlite3_stmt* stmt_;
};

// Resets a cached statement when a scope ends.
class StatementLease {
 public:
  explicit StatementLease(SqliteStatement* s) : s_(s) {}
  StatementLease(StatementLease&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  StatementLease(const StatementLease&) = delete;
  StatementLease& operator=(const StatementLease&) = delete;
  ~StatementLease() {
    if (s_) s_->Reset();
  }
  SqliteStatement* operator->() { return s_; }

 private:
  SqliteStatement* s_;
};

class SqliteConnection {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(
      const std::string& path);
  ~SqliteConnection();

  absl::Status Exec(absl::string_view sql);
  // Returns a cached prepared statement, reset and ready to bind.
  absl::StatusOr<StatementLease> Prepare(const std::string& sql);
  // Maps the connection's last error to a Status (busy/locked/IO ->
  // Unavailable, constraint -> AlreadyExists).
  absl::Status Error(int rc, absl::string_view what);
  sqlite3* raw() { return db_; }

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, std::unique_ptr<SqliteStatement>> cache_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_SQLITE_SQLITE_DB_H_
