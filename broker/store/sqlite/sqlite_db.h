// A thin RAII layer over the SQLite C API: a connection that caches its
// prepared statements, statements with typed bind/column helpers, and the
// one definition of the prepare -> bind -> step loop (ExecBound, Query,
// QueryRow), so that the store's files hold only SQL and row mapping.
// Not thread-safe: each connection belongs to one thread at a time.
#ifndef SIMPROV_BROKER_STORE_SQLITE_SQLITE_DB_H_
#define SIMPROV_BROKER_STORE_SQLITE_SQLITE_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/bytes.h"

namespace simprov {

// One value for a `?` of a statement: an integer, text or a blob. Holds a
// view of text and blobs (bound with SQLITE_TRANSIENT, i.e. copied), so
// the value only has to outlive the call it is passed to.
class SqlArg {
 public:
  template <typename T, typename = std::enable_if_t<std::is_integral_v<T> &&
                                                    !std::is_same_v<T, bool>>>
  SqlArg(T v) : kind_(kInt), int_(static_cast<int64_t>(v)) {}  // NOLINT
  SqlArg(absl::string_view v)                                  // NOLINT
      : kind_(kText), data_(v.data()), size_(v.size()) {}
  SqlArg(const std::string& v) : SqlArg(absl::string_view(v)) {}  // NOLINT
  SqlArg(const char* v) : SqlArg(absl::string_view(v)) {}         // NOLINT
  SqlArg(const Bytes& v)                                          // NOLINT
      : kind_(kBlob), data_(v.data()), size_(v.size()) {}

 private:
  friend class SqliteStatement;
  enum Kind { kInt, kText, kBlob };
  Kind kind_;
  int64_t int_ = 0;
  const void* data_ = nullptr;
  size_t size_ = 0;
};

class SqliteStatement {
 public:
  explicit SqliteStatement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~SqliteStatement() { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // Binds args[0] to 1, args[1] to 2, ...
  void BindAll(absl::Span<const SqlArg> args);

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
  SqliteStatement& operator*() { return *s_; }

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

  // The statement loops, on cached statements (reset when they return).
  // Errors are Error(rc, what). A row callback reads the current row's
  // columns.
  using RowFn = absl::FunctionRef<bool(SqliteStatement& row)>;
  using OneRowFn = absl::FunctionRef<void(SqliteStatement& row)>;
  // Runs a statement that returns no rows; Changes() tells how many rows it
  // changed.
  absl::Status ExecBound(const std::string& sql, absl::string_view what,
                         absl::Span<const SqlArg> args = {});
  // Calls `row` for each row until it returns false.
  absl::Status Query(const std::string& sql, absl::string_view what,
                     absl::Span<const SqlArg> args, RowFn row);
  // Calls `row` for the first row, if there is one; returns whether there
  // was.
  absl::StatusOr<bool> QueryRow(const std::string& sql, absl::string_view what,
                                absl::Span<const SqlArg> args, OneRowFn row);
  // Rows changed by the last INSERT, UPDATE or DELETE on this connection.
  int64_t Changes() { return sqlite3_changes64(db_); }
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
