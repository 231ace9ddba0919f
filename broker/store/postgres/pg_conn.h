// libpq underneath the PostgreSQL store: one connection with its prepared
// statements, typed parameters (always bound, never spliced into SQL; bytea
// sent binary), results, SQLSTATE-to-Status mapping, and a bounded pool.
#ifndef SIMPROV_BROKER_STORE_POSTGRES_PG_CONN_H_
#define SIMPROV_BROKER_STORE_POSTGRES_PG_CONN_H_

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/bytes.h"

namespace simprov::pg {

// Where and how to connect: a libpq URI or key=value string passed through
// unchanged, and optionally a password (from --store-password-file).
struct ConnectOptions {
  ConnectOptions() = default;
  ConnectOptions(std::string c)  // NOLINT: implicit, {uri} reads well
      : conninfo(std::move(c)) {}
  std::string conninfo;
  std::string password;  // empty: libpq's own ways (PGPASSWORD, .pgpass)
  size_t max_connections = 16;
};

// The conninfo with any password removed, for logs.
std::string RedactConnInfo(const std::string& conninfo);

// One bound parameter: NULL, an integer, text, or bytes (bytea, binary).
struct Null {};
using Arg = std::variant<Null, int64_t, std::string, Bytes>;
// Integers of any width; unsigned values must fit in int64.
template <typename T>
Arg Int(T v) {
  return Arg(static_cast<int64_t>(v));
}

class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) : r_(r, &PQclear) {}
  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  int64_t affected() const;  // rows changed by an INSERT/UPDATE/DELETE
  bool IsNull(int row, int col) const;
  std::string Text(int row, int col) const;
  int64_t Int(int row, int col) const;
  Bytes Blob(int row, int col) const;  // a bytea column
  // The column names, and a column's type OID.
  std::vector<std::string> Columns() const;
  unsigned Type(int col) const { return PQftype(r_.get(), col); }

 private:
  std::shared_ptr<PGresult> r_;
};

class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // A statement with parameters $1..$n, prepared on this connection the
  // first time it is used.
  absl::StatusOr<Result> Query(const std::string& sql,
                               std::initializer_list<Arg> args);
  absl::StatusOr<Result> Query(const std::string& sql,
                               const std::vector<Arg>& args);
  absl::Status Exec(const std::string& sql, std::initializer_list<Arg> args) {
    return Query(sql, args).status();
  }
  // Statements without parameters (BEGIN, COMMIT, migrations), possibly
  // several separated by semicolons.
  absl::Status Simple(const std::string& sql);

  // COPY ... TO STDOUT: the whole stream into *out.
  absl::Status CopyOut(const std::string& sql, std::string* out);
  // COPY ... FROM STDIN with `data`.
  absl::Status CopyIn(const std::string& sql, absl::string_view data);

  bool broken() const { return PQstatus(conn_) != CONNECTION_OK; }
  // The SQLSTATE of the last failed statement ("" after success).
  const std::string& last_sqlstate() const { return sqlstate_; }
  PGconn* raw() { return conn_; }

 private:
  explicit Connection(PGconn* c) : conn_(c) {}
  absl::Status Error(const PGresult* r, absl::string_view what);

  PGconn* conn_;
  std::unordered_map<std::string, std::string> prepared_;  // sql -> name
  std::string sqlstate_;
};

// Serialization failures and deadlocks: the transaction may be retried.
bool Retryable(const std::string& sqlstate);

// At most max_connections open; idle ones are kept and reused, broken ones
// dropped (the next lease connects afresh: that is the reconnect).
class Pool {
 public:
  explicit Pool(ConnectOptions options) : options_(std::move(options)) {}

  class Lease {
   public:
    Lease(Pool* pool, std::unique_ptr<Connection> c)
        : pool_(pool), conn_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    Connection& operator*() { return *conn_; }
    Connection* operator->() { return conn_.get(); }

   private:
    Pool* pool_;
    std::unique_ptr<Connection> conn_;
  };
  // Unavailable when the server cannot be reached or every connection is
  // busy for 30 s.
  absl::StatusOr<Lease> Get();
  const ConnectOptions& options() const { return options_; }

 private:
  void Return(std::unique_ptr<Connection> c);

  const ConnectOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;  // mu_
  size_t open_ = 0;                                // mu_: leased + idle
};

}  // namespace simprov::pg

#endif  // SIMPROV_BROKER_STORE_POSTGRES_PG_CONN_H_
