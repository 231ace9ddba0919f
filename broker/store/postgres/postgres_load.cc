#include "broker/store/postgres/postgres_load.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/postgres/postgres_store_internal.h"
#include "common/digest.h"

namespace simprov {
namespace {

using pg_internal::kTableCount;
using pg_internal::kTables;

// Each table's key, for the order both sides are hashed in.
const std::map<std::string, std::string>& Keys() {
  static const auto* keys = new std::map<std::string, std::string>{
      {"subscribers", "imsi"},
      {"certificates", "serial"},
      {"certificate_sha256", "serial"},
      {"groups", "name"},
      {"crl_state", "id"},
      {"audit", "id"},
      {"token_apps", "name"},
      {"token_revocations", "jti"},
      {"token_device_revocations", "imsi"},
      {"registry_outbox", "id"},
      {"admin_revocations", "serial"},
  };
  return *keys;
}

// What lives seconds (challenge sessions, rate-limit buckets, leases) is
// not copied: a migration is offline, and all of it has expired by the
// time a broker starts on the new store.
bool Ephemeral(const std::string& table) {
  return table == "sessions" || table == "rate_limits" || table == "leases";
}

// One value in the hashed encoding: a type letter, the length, the bytes
// (integers as decimal text), so that no two rows encode alike.
void Encode(const pg::Arg& v, std::string* out) {
  if (std::holds_alternative<pg::Null>(v)) {
    out->append("n;");
    return;
  }
  if (std::holds_alternative<int64_t>(v)) {
    absl::StrAppend(out, "i", std::get<int64_t>(v), ";");
    return;
  }
  if (std::holds_alternative<std::string>(v)) {
    const std::string& s = std::get<std::string>(v);
    absl::StrAppend(out, "s", s.size(), ":", s);
    return;
  }
  const Bytes& b = std::get<Bytes>(v);
  absl::StrAppend(out, "b", b.size(), ":");
  out->append(reinterpret_cast<const char*>(b.data()), b.size());
}

// Hashes rows one at a time (SHA-256 over the concatenated encodings,
// computed in chunks so that a large table is never held whole).
class RowHash {
 public:
  void Add(const std::vector<pg::Arg>& row) {
    for (const pg::Arg& v : row) Encode(v, &buf_);
    buf_.append("\n");
    ++rows_;
    if (buf_.size() > (1 << 20)) Flush();
  }
  std::string Hex() {
    Flush();
    return absl::BytesToHexString(absl::string_view(
        reinterpret_cast<const char*>(chain_.data()), chain_.size()));
  }
  uint64_t rows() const { return rows_; }

 private:
  // Chained: h = SHA-256(h || chunk).
  void Flush() {
    if (buf_.empty()) return;
    Bytes in = chain_;
    in.insert(in.end(), buf_.begin(), buf_.end());
    chain_ = Sha256(in);
    buf_.clear();
  }
  Bytes chain_;
  std::string buf_;
  uint64_t rows_ = 0;
};

constexpr unsigned kOidBytea = 17;
constexpr unsigned kOidInt8 = 20;
constexpr unsigned kOidInt2 = 21;
constexpr unsigned kOidInt4 = 23;

}  // namespace

absl::StatusOr<std::vector<TableReport>> LoadIntoPostgres(
    const pg::ConnectOptions& target, TableSource& source, Clock& clock) {
  // Migrates the target's schema (a store opened and closed again).
  if (auto store = PostgresStore::Open(target, clock); !store.ok()) {
    return store.status();
  }
  auto tables = source.Tables();
  if (!tables.ok()) return tables.status();
  for (const std::string& t : *tables) {
    if (!Keys().count(t) && !Ephemeral(t)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the source store has table ", t,
          " that this broker's PostgreSQL schema lacks; nothing copied"));
    }
  }
  auto db = pg::Connection::Open(target);
  if (!db.ok()) return db.status();
  pg::Connection& c = **db;
  std::vector<TableReport> reports;
  auto run = [&]() -> absl::Status {
    auto used = c.Query(
        "SELECT (SELECT COUNT(*) FROM subscribers) + (SELECT COUNT(*) FROM "
        "certificates) + (SELECT COUNT(*) FROM audit) + (SELECT COUNT(*) "
        "FROM groups) + (SELECT COUNT(*) FROM registry_outbox)",
        {});
    if (!used.ok()) return used.status();
    if (used->Int(0, 0) != 0) {
      return absl::FailedPreconditionError(
          "the target database is not empty; migrate into a fresh one");
    }
    if (absl::Status s = c.Simple("DELETE FROM crl_state"); !s.ok()) return s;
    for (int i = 0; i < kTableCount; ++i) {
      const std::string table = kTables[i];
      const std::string& key = Keys().at(table);
      if (std::find(tables->begin(), tables->end(), table) == tables->end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the source store lacks table ", table));
      }
      // The columns, from the target's schema.
      auto shape =
          c.Query(absl::StrCat("SELECT * FROM ", table, " LIMIT 0"), {});
      if (!shape.ok()) return shape.status();
      std::vector<std::string> columns = shape->Columns();
      std::vector<std::string> params;
      for (size_t k = 1; k <= columns.size(); ++k) {
        params.push_back(absl::StrCat("$", k));
      }
      const std::string insert = absl::StrCat(
          "INSERT INTO ", table, " (", absl::StrJoin(columns, ", "),
          ") VALUES (", absl::StrJoin(params, ", "), ")");
      RowHash read;
      absl::Status s =
          source.Read(table, columns, key,
                      [&](const std::vector<pg::Arg>& row) -> absl::Status {
                        read.Add(row);
                        return c.Query(insert, row).status();
                      });
      if (!s.ok()) {
        return absl::Status(s.code(),
                            absl::StrCat("table ", table, ": ", s.message()));
      }
      // Read back what was written, in the same order, and hash it alike.
      // Text keys bytewise, as the source orders them.
      const std::string order =
          key == "id" ? key : absl::StrCat(key, " COLLATE \"C\"");
      auto back = c.Query(absl::StrCat("SELECT ", absl::StrJoin(columns, ", "),
                                       " FROM ", table, " ORDER BY ", order),
                          {});
      if (!back.ok()) return back.status();
      RowHash written;
      for (int r = 0; r < back->rows(); ++r) {
        std::vector<pg::Arg> row;
        for (size_t k = 0; k < columns.size(); ++k) {
          const int col = static_cast<int>(k);
          const unsigned type = back->Type(col);
          if (back->IsNull(r, col)) {
            row.emplace_back(pg::Null{});
          } else if (type == kOidInt8 || type == kOidInt4 || type == kOidInt2) {
            row.emplace_back(back->Int(r, col));
          } else if (type == kOidBytea) {
            row.emplace_back(back->Blob(r, col));
          } else {
            row.emplace_back(back->Text(r, col));
          }
        }
        written.Add(row);
      }
      TableReport report{table, read.rows(), read.Hex()};
      if (written.rows() != read.rows() || written.Hex() != report.sha256_hex) {
        return absl::DataLossError(absl::StrCat(
            "table ", table, ": read ", read.rows(), " rows (sha256 ",
            report.sha256_hex, "), the database holds ", written.rows(),
            " (sha256 ", written.Hex(), "); nothing copied"));
      }
      reports.push_back(std::move(report));
    }
    for (const char* table : {"audit", "registry_outbox"}) {
      if (absl::Status s = c.Simple(
              absl::StrCat("SELECT setval(pg_get_serial_sequence('", table,
                           "', 'id'), COALESCE((SELECT MAX(id) FROM ", table,
                           "), 0) + 1, false)"));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = c.Simple("BEGIN"); !s.ok()) return s;
  // Nobody else writes while the copy runs (brokers wait at their next
  // write; the copy is meant to run before any starts).
  if (absl::Status s = run(); !s.ok()) {
    (void)c.Simple("ROLLBACK");
    return s;
  }
  if (absl::Status s = c.Simple("COMMIT"); !s.ok()) return s;
  return reports;
}

}  // namespace simprov
