#include "broker/store/sqlite/sqlite_db.h"

#include "absl/strings/str_cat.h"

namespace simprov {

std::string SqliteStatement::Text(int col) {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

Bytes SqliteStatement::Blob(int col) {
  const uint8_t* p =
      static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, col));
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? Bytes(p, p + n) : Bytes();
}

void SqliteStatement::BindAll(absl::Span<const SqlArg> args) {
  int i = 0;
  for (const SqlArg& a : args) {
    ++i;
    switch (a.kind_) {
      case SqlArg::kInt:
        sqlite3_bind_int64(stmt_, i, a.int_);
        break;
      case SqlArg::kText:
        sqlite3_bind_text(stmt_, i, static_cast<const char*>(a.data_),
                          static_cast<int>(a.size_), SQLITE_TRANSIENT);
        break;
      case SqlArg::kBlob:
        sqlite3_bind_blob(stmt_, i, a.data_, static_cast<int>(a.size_),
                          SQLITE_TRANSIENT);
        break;
    }
  }
}

absl::StatusOr<std::unique_ptr<SqliteConnection>> SqliteConnection::Open(
    const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(
        absl::StrCat("cannot open store ", path, ": ", msg));
  }
  auto conn = std::unique_ptr<SqliteConnection>(new SqliteConnection(db));
  sqlite3_busy_timeout(db, 60000);
  // journal_mode answers with the mode in force: insist on WAL.
  std::string mode;
  auto row = conn->QueryRow("PRAGMA journal_mode=WAL", "journal mode", {},
                            [&](SqliteStatement& r) { mode = r.Text(0); });
  if (!row.ok()) return row.status();
  if (mode != "wal") {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", path, ": the file system does not support WAL mode"));
  }
  for (const char* pragma :
       {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (absl::Status s = conn->Exec(pragma); !s.ok()) return s;
  }
  return conn;
}

SqliteConnection::~SqliteConnection() {
  cache_.clear();
  sqlite3_close(db_);
}

absl::Status SqliteConnection::Error(int rc, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", sqlite3_errmsg(db_));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status SqliteConnection::Exec(absl::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    absl::Status st = Error(rc, "store");
    return absl::Status(st.code(), absl::StrCat("store: ", msg));
  }
  return absl::OkStatus();
}

absl::StatusOr<StatementLease> SqliteConnection::Prepare(
    const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                                &stmt, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "prepare");
    it = cache_.emplace(sql, std::make_unique<SqliteStatement>(stmt)).first;
  }
  return StatementLease(it->second.get());
}

absl::Status SqliteConnection::ExecBound(const std::string& sql,
                                         absl::string_view what,
                                         absl::Span<const SqlArg> args) {
  auto st = Prepare(sql);
  if (!st.ok()) return st.status();
  (*st)->BindAll(args);
  int rc = (*st)->Step();
  if (rc != SQLITE_DONE) return Error(rc, what);
  return absl::OkStatus();
}

absl::Status SqliteConnection::Query(const std::string& sql,
                                     absl::string_view what,
                                     absl::Span<const SqlArg> args, RowFn row) {
  auto st = Prepare(sql);
  if (!st.ok()) return st.status();
  (*st)->BindAll(args);
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return Error(rc, what);
    if (!row(**st)) return absl::OkStatus();
  }
}

absl::StatusOr<bool> SqliteConnection::QueryRow(const std::string& sql,
                                                absl::string_view what,
                                                absl::Span<const SqlArg> args,
                                                OneRowFn row) {
  auto st = Prepare(sql);
  if (!st.ok()) return st.status();
  (*st)->BindAll(args);
  int rc = (*st)->Step();
  if (rc == SQLITE_DONE) return false;
  if (rc != SQLITE_ROW) return Error(rc, what);
  row(**st);
  return true;
}

}  // namespace simprov
