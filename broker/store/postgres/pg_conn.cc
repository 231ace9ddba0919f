#include "broker/store/postgres/pg_conn.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace simprov::pg {

std::string RedactConnInfo(const std::string& conninfo) {
  std::string s = conninfo;
  const bool uri = absl::StartsWith(s, "postgresql://") ||
                   absl::StartsWith(s, "postgres://");
  if (uri) {
    // user:password@ in the authority.
    const size_t start = s.find("://") + 3;
    const size_t end = s.find_first_of("/?", start);
    const size_t at = s.rfind('@', end == std::string::npos ? s.size() : end);
    if (at != std::string::npos && at >= start) {
      const size_t colon = s.find(':', start);
      if (colon != std::string::npos && colon < at) s.erase(colon, at - colon);
    }
    // password=... among the query parameters.
    const size_t q = s.find('?');
    if (q != std::string::npos) {
      std::vector<std::string> kept;
      for (absl::string_view p : absl::StrSplit(s.substr(q + 1), '&')) {
        if (!absl::StartsWith(p, "password=")) kept.emplace_back(p);
      }
      s = absl::StrCat(s.substr(0, q), kept.empty() ? "" : "?",
                       absl::StrJoin(kept, "&"));
    }
    return s;
  }
  // key=value form: drop password=... (quoted values may hold spaces).
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    bool quoted = false;
    while (j < s.size() && (quoted || s[j] != ' ')) {
      if (s[j] == '\\' && j + 1 < s.size()) {
        j += 2;
        continue;
      }
      if (s[j] == '\'') quoted = !quoted;
      ++j;
    }
    absl::string_view token(s.data() + i, j - i);
    std::string key(absl::StripAsciiWhitespace(
        token.substr(0, std::min(token.find('='), token.size()))));
    if (!token.empty() && key != "password") {
      if (!out.empty()) out += ' ';
      out += std::string(token);
    }
    i = j;
  }
  return out;
}

int64_t Result::affected() const {
  if (!r_) return 0;
  const char* n = PQcmdTuples(r_.get());
  return n == nullptr || *n == '\0' ? 0 : std::strtoll(n, nullptr, 10);
}

bool Result::IsNull(int row, int col) const {
  return PQgetisnull(r_.get(), row, col) != 0;
}

std::string Result::Text(int row, int col) const {
  return std::string(PQgetvalue(r_.get(), row, col),
                     PQgetlength(r_.get(), row, col));
}

int64_t Result::Int(int row, int col) const {
  if (IsNull(row, col)) return 0;
  return std::strtoll(PQgetvalue(r_.get(), row, col), nullptr, 10);
}

Bytes Result::Blob(int row, int col) const {
  if (IsNull(row, col)) return {};
  size_t n = 0;
  unsigned char* raw = PQunescapeBytea(
      reinterpret_cast<const unsigned char*>(PQgetvalue(r_.get(), row, col)),
      &n);
  if (raw == nullptr) return {};
  Bytes out(raw, raw + n);
  PQfreemem(raw);
  return out;
}

std::vector<std::string> Result::Columns() const {
  std::vector<std::string> out;
  for (int i = 0; r_ && i < PQnfields(r_.get()); ++i) {
    out.emplace_back(PQfname(r_.get(), i));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const ConnectOptions& options) {
  // Earlier keywords are defaults the URI overrides; the password file
  // (after it) overrides the URI.
  std::vector<const char*> keys = {"connect_timeout", "application_name",
                                   "dbname"};
  std::vector<const char*> values = {"10", "simprov-broker",
                                     options.conninfo.c_str()};
  if (!options.password.empty()) {
    keys.push_back("password");
    values.push_back(options.password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* c = PQconnectdbParams(keys.data(), values.data(), 1);
  if (c == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg(absl::StripTrailingAsciiWhitespace(PQerrorMessage(c)));
    PQfinish(c);
    return absl::UnavailableError(absl::StrCat("cannot connect to the store ",
                                               RedactConnInfo(options.conninfo),
                                               ": ", msg));
  }
  // Server notices ("relation already exists, skipping") are not errors
  // and would otherwise go to stderr unformatted.
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<Connection>(new Connection(c));
}

Connection::~Connection() { PQfinish(conn_); }

bool Retryable(const std::string& sqlstate) {
  return sqlstate == "40001" || sqlstate == "40P01";
}

absl::Status Connection::Error(const PGresult* r, absl::string_view what) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  sqlstate_ = state ? state : "";
  std::string msg =
      absl::StrCat(what, ": ",
                   absl::StripTrailingAsciiWhitespace(
                       r ? PQresultErrorMessage(r) : PQerrorMessage(conn_)));
  if (broken() || sqlstate_.empty() || absl::StartsWith(sqlstate_, "08") ||
      absl::StartsWith(sqlstate_, "57P") || absl::StartsWith(sqlstate_, "53") ||
      sqlstate_ == "55P03") {
    return absl::UnavailableError(msg);
  }
  if (absl::StartsWith(sqlstate_, "23")) return absl::AlreadyExistsError(msg);
  if (Retryable(sqlstate_)) return absl::AbortedError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<Result> Connection::Query(const std::string& sql,
                                         std::initializer_list<Arg> args) {
  return Query(sql, std::vector<Arg>(args));
}

absl::StatusOr<Result> Connection::Query(const std::string& sql,
                                         const std::vector<Arg>& args) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = absl::StrCat("s", prepared_.size() + 1);
    PGresult* prep = PQprepare(conn_, name.c_str(), sql.c_str(),
                               static_cast<int>(args.size()), nullptr);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
      absl::Status e = Error(prep, "store: prepare");
      PQclear(prep);
      return e;
    }
    PQclear(prep);
    it = prepared_.emplace(sql, name).first;
  }
  std::vector<std::string> text(args.size());
  std::vector<const char*> values(args.size(), nullptr);
  std::vector<int> lengths(args.size(), 0);
  std::vector<int> formats(args.size(), 0);
  for (size_t i = 0; i < args.size(); ++i) {
    const Arg& a = args[i];
    if (std::holds_alternative<int64_t>(a)) {
      text[i] = absl::StrCat(std::get<int64_t>(a));
      values[i] = text[i].c_str();
    } else if (std::holds_alternative<std::string>(a)) {
      values[i] = std::get<std::string>(a).c_str();
    } else if (std::holds_alternative<Bytes>(a)) {
      const Bytes& b = std::get<Bytes>(a);
      static const char kEmpty = 0;
      values[i] = b.empty() ? &kEmpty : reinterpret_cast<const char*>(b.data());
      lengths[i] = static_cast<int>(b.size());
      formats[i] = 1;
    }
  }
  PGresult* r =
      PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(args.size()),
                     values.data(), lengths.data(), formats.data(), 0);
  const ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    absl::Status e = Error(r, "store");
    PQclear(r);
    return e;
  }
  sqlstate_.clear();
  return Result(r);
}

absl::Status Connection::Simple(const std::string& sql) {
  PGresult* r = PQexec(conn_, sql.c_str());
  const ExecStatusType st = PQresultStatus(r);
  absl::Status s;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    s = Error(r, "store");
  } else {
    sqlstate_.clear();
  }
  PQclear(r);
  return s;
}

absl::Status Connection::CopyOut(const std::string& sql, std::string* out) {
  PGresult* r = PQexec(conn_, sql.c_str());
  if (PQresultStatus(r) != PGRES_COPY_OUT) {
    absl::Status e = Error(r, "copy out");
    PQclear(r);
    return e;
  }
  PQclear(r);
  while (true) {
    char* buf = nullptr;
    const int n = PQgetCopyData(conn_, &buf, 0);
    if (n > 0) {
      out->append(buf, n);
      PQfreemem(buf);
      continue;
    }
    if (n == -2) return Error(nullptr, "copy out");
    break;  // -1: done
  }
  PGresult* end = PQgetResult(conn_);
  const bool ok = PQresultStatus(end) == PGRES_COMMAND_OK;
  absl::Status s = ok ? absl::OkStatus() : Error(end, "copy out");
  PQclear(end);
  while (PGresult* more = PQgetResult(conn_)) PQclear(more);
  return s;
}

absl::Status Connection::CopyIn(const std::string& sql,
                                absl::string_view data) {
  PGresult* r = PQexec(conn_, sql.c_str());
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    absl::Status e = Error(r, "copy in");
    PQclear(r);
    return e;
  }
  PQclear(r);
  constexpr size_t kChunk = 1 << 16;
  for (size_t off = 0; off < data.size(); off += kChunk) {
    const size_t n = std::min(kChunk, data.size() - off);
    if (PQputCopyData(conn_, data.data() + off, static_cast<int>(n)) != 1) {
      return Error(nullptr, "copy in");
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return Error(nullptr, "copy in");
  PGresult* end = PQgetResult(conn_);
  const bool ok = PQresultStatus(end) == PGRES_COMMAND_OK;
  absl::Status s = ok ? absl::OkStatus() : Error(end, "copy in");
  PQclear(end);
  while (PGresult* more = PQgetResult(conn_)) PQclear(more);
  return s;
}

Pool::Lease::~Lease() {
  if (conn_ != nullptr) pool_->Return(std::move(conn_));
}

void Pool::Return(std::unique_ptr<Connection> c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A broken connection (server restarted, network gone), or one left
    // inside a transaction, is dropped: the next lease connects afresh.
    if (c->broken() || PQtransactionStatus(c->raw()) != PQTRANS_IDLE) {
      --open_;
    } else {
      idle_.push_back(std::move(c));
    }
  }
  cv_.notify_one();
}

absl::StatusOr<Pool::Lease> Pool::Get() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const bool got = cv_.wait_for(lock, std::chrono::seconds(30), [this] {
      return !idle_.empty() || open_ < options_.max_connections;
    });
    if (!got) {
      return absl::UnavailableError("store: every database connection is busy");
    }
    if (!idle_.empty()) {
      Lease lease(this, std::move(idle_.back()));
      idle_.pop_back();
      return lease;
    }
    ++open_;  // reserved; connected outside the lock
  }
  auto c = Connection::Open(options_);
  if (!c.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --open_;
    }
    cv_.notify_one();
    return c.status();
  }
  return Lease(this, std::move(*c));
}

}  // namespace simprov::pg
