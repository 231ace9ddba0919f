// A real PostgreSQL 15 server for tests: initdb into a temporary directory
// (as the unprivileged user "nobody" when the test runs as root, since the
// server refuses to run as root), listening only on a Unix socket in that
// directory, torn down (and the directory removed) afterwards. The server
// is a child of the test process and dies with it (PR_SET_PDEATHSIG).
//
// Shared() is one server per test binary; each test takes a fresh database
// from CreateDatabase(), so tests stay independent.
#ifndef SIMPROV_TEST_TESTING_POSTGRES_SERVER_H_
#define SIMPROV_TEST_TESTING_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace simprov::testing {

class PostgresServer {
 public:
  PostgresServer();   // makes the directory; nothing runs yet
  ~PostgresServer();  // stops the server and removes the directory
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // The binary's server, started on first use. Aborts the calling test
  // (a fatal gtest failure is not possible from here) by returning a
  // server whose Start() failed: callers ASSERT_TRUE(Shared().ok()).
  static PostgresServer& Shared();

  // Runs initdb on the first call, then starts the server and waits until
  // it accepts connections (at most 60 s). The server is killed when the
  // calling thread ends (PR_SET_PDEATHSIG follows the thread that forked):
  // call it from a thread that outlives the server (the test's own).
  absl::Status Start();
  // Fast shutdown (the data stays; Start() again serves it).
  absl::Status Stop();
  bool running() const { return pid_ > 0; }
  // The status of the last Start() (OK once running).
  const absl::Status& status() const { return status_; }
  bool ok() const { return status_.ok() && running(); }

  const std::string& dir() const { return dir_; }
  // A libpq URI for database `db`, over the Unix socket, as user postgres.
  std::string Uri(const std::string& db) const;
  // CREATE DATABASE with a fresh name (t1, t2, ...); returns the name.
  absl::StatusOr<std::string> CreateDatabase();
  // Runs `sql` (no parameters) in database `db`.
  absl::Status Exec(const std::string& db, const std::string& sql) const;
  // The first column of the first row `sql` yields in `db` (text).
  absl::StatusOr<std::string> QueryValue(const std::string& db,
                                         const std::string& sql) const;

 private:
  absl::Status InitDb();
  // fork + (drop to nobody) + exec; stdout/stderr to `log`.
  pid_t Spawn(const char* const argv[], const std::string& log) const;

  std::string dir_;
  std::string data_;
  uid_t uid_ = 0;  // the server's user (nobody when the test runs as root)
  gid_t gid_ = 0;
  bool drop_ = false;
  bool initialised_ = false;
  pid_t pid_ = -1;
  int next_db_ = 0;
  absl::Status status_ = absl::FailedPreconditionError("not started");
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_POSTGRES_SERVER_H_
