#include "test/testing/postgres_server.h"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace simprov::testing {
namespace {

constexpr char kBinDir[] = "/usr/lib/postgresql/15/bin";
constexpr int kPort = 5432;  // only names the socket: no TCP listener

// Waits for `pid` up to `timeout`; true when it exited (status in *status).
bool WaitFor(pid_t pid, absl::Duration timeout, int* status) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

std::string MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/simprov-pg.XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

PostgresServer::PostgresServer() {
  dir_ = MakeTempDir();
  data_ = dir_ + "/data";
  if (geteuid() == 0) {
    // The server refuses to run as root: it runs as nobody, which must own
    // the directory.
    const passwd* pw = getpwnam("nobody");
    if (pw != nullptr) {
      drop_ = true;
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      if (chown(dir_.c_str(), uid_, gid_) != 0) drop_ = false;
    }
  }
  chmod(dir_.c_str(), 0700);
}

PostgresServer::~PostgresServer() {
  (void)Stop();
  RemoveTree(dir_);
}

PostgresServer& PostgresServer::Shared() {
  static PostgresServer* server = [] {
    auto* s = new PostgresServer();
    (void)s->Start();
    // Stopped at exit; the directory goes with it.
    std::atexit([] { delete server; });
    return s;
  }();
  return *server;
}

pid_t PostgresServer::Spawn(const char* const argv[],
                            const std::string& log) const {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
  }
  const int null = open("/dev/null", O_RDONLY);
  if (null >= 0) dup2(null, 0);
  if (drop_) {
    if (setgroups(0, nullptr) != 0 || setgid(gid_) != 0 || setuid(uid_) != 0) {
      _exit(126);
    }
  }
  // After the uid change (which resets it): the server dies with the test.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  execv(argv[0], const_cast<char* const*>(argv));
  _exit(127);
}

absl::Status PostgresServer::InitDb() {
  const std::string initdb = absl::StrCat(kBinDir, "/initdb");
  const std::string log = dir_ + "/initdb.log";
  const std::string pgdata = "--pgdata=" + data_;
  const char* const argv[] = {initdb.c_str(),    pgdata.c_str(),
                              "--auth=trust",    "--username=postgres",
                              "--encoding=UTF8", "--locale=C.UTF-8",
                              "--no-sync",       nullptr};
  const pid_t pid = Spawn(argv, log);
  if (pid < 0) return absl::InternalError("fork failed");
  int status = 0;
  if (!WaitFor(pid, absl::Seconds(120), &status)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return absl::DeadlineExceededError("initdb took over 120 s");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("initdb failed (status ", status,
                                            "): ", ReadFileOrEmpty(log)));
  }
  initialised_ = true;
  return absl::OkStatus();
}

absl::Status PostgresServer::Start() {
  if (running()) return absl::OkStatus();
  if (!initialised_) {
    status_ = InitDb();
    if (!status_.ok()) return status_;
  }
  const std::string postgres = absl::StrCat(kBinDir, "/postgres");
  const std::string log = dir_ + "/postgres.log";
  const std::string socket = "unix_socket_directories=" + dir_;
  const std::string port = absl::StrCat("port=", kPort);
  const char* const argv[] = {
      postgres.c_str(),      "-D",   data_.c_str(),         "-c",
      socket.c_str(),        "-c",   port.c_str(),          "-c",
      "listen_addresses=",   "-c",   "max_connections=200", "-c",
      "shared_buffers=32MB", nullptr};
  pid_ = Spawn(argv, log);
  if (pid_ < 0) {
    status_ = absl::InternalError("fork failed");
    return status_;
  }
  const std::string conninfo = Uri("postgres");
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    if (PQping(conninfo.c_str()) == PQPING_OK) {
      status_ = absl::OkStatus();
      return status_;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      status_ = absl::InternalError(absl::StrCat(
          "postgres exited (status ", status, "): ", ReadFileOrEmpty(log)));
      return status_;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  status_ = absl::DeadlineExceededError(
      absl::StrCat("postgres not ready after 60 s: ", ReadFileOrEmpty(log)));
  return status_;
}

absl::Status PostgresServer::Stop() {
  if (!running()) return absl::OkStatus();
  kill(pid_, SIGINT);  // fast shutdown: clients disconnected, data kept
  int status = 0;
  if (!WaitFor(pid_, absl::Seconds(30), &status)) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  status_ = absl::FailedPreconditionError("stopped");
  return absl::OkStatus();
}

std::string PostgresServer::Uri(const std::string& db) const {
  // The socket directory as a query parameter (a path cannot be a host in
  // the authority part of a URI).
  return absl::StrCat("postgresql:///", db, "?host=", dir_, "&port=", kPort,
                      "&user=postgres");
}

absl::Status PostgresServer::Exec(const std::string& db,
                                  const std::string& sql) const {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(
      PQconnectdb(Uri(db).c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(PQerrorMessage(conn.get()));
  }
  std::unique_ptr<PGresult, decltype(&PQclear)> r(
      PQexec(conn.get(), sql.c_str()), &PQclear);
  const ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    return absl::InternalError(
        absl::StrCat(sql, ": ", PQerrorMessage(conn.get())));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PostgresServer::QueryValue(
    const std::string& db, const std::string& sql) const {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(
      PQconnectdb(Uri(db).c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(PQerrorMessage(conn.get()));
  }
  std::unique_ptr<PGresult, decltype(&PQclear)> r(
      PQexec(conn.get(), sql.c_str()), &PQclear);
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) < 1) {
    return absl::InternalError(
        absl::StrCat(sql, ": ", PQerrorMessage(conn.get())));
  }
  return std::string(PQgetvalue(r.get(), 0, 0));
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase() {
  const std::string name = absl::StrCat("t", ++next_db_);
  if (absl::Status s = Exec("postgres", "CREATE DATABASE " + name); !s.ok()) {
    return s;
  }
  return name;
}

}  // namespace simprov::testing
