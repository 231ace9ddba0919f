// PostgresStore: operations: health, snapshots (and restoring them into an
// empty database), and re-wrapping sealed keys for a KEK rotation.
//
// A snapshot is one file: a header line, the schema version, then each
// table's rows in COPY binary format, all read in one REPEATABLE READ
// transaction (one consistent view while the brokers keep writing).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/postgres/postgres_store_internal.h"

namespace simprov {

using namespace pg_internal;  // NOLINT: the store's own helpers

namespace {

constexpr char kSnapshotMagic[] = "simprov-postgres-snapshot 1\n";

absl::Status WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) return absl::UnavailableError("cannot write the snapshot");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Parses a snapshot: its schema version and each table's COPY data.
absl::Status ParseSnapshot(const std::string& bytes, int* version,
                           std::map<std::string, std::string>* tables) {
  auto bad = [] {
    return absl::InvalidArgumentError("not a simprov PostgreSQL snapshot");
  };
  absl::string_view rest(bytes);
  if (!absl::ConsumePrefix(&rest, kSnapshotMagic)) return bad();
  auto line = [&](std::string* out) {
    const size_t nl = rest.find('\n');
    if (nl == absl::string_view::npos) return false;
    *out = std::string(rest.substr(0, nl));
    rest.remove_prefix(nl + 1);
    return true;
  };
  std::string l;
  if (!line(&l)) return bad();
  absl::string_view v(l);
  if (!absl::ConsumePrefix(&v, "schema ") || !absl::SimpleAtoi(v, version)) {
    return bad();
  }
  while (!rest.empty()) {
    if (!line(&l)) return bad();
    std::vector<std::string> f = absl::StrSplit(l, ' ');
    size_t size = 0;
    if (f.size() != 3 || f[0] != "table" || !absl::SimpleAtoi(f[2], &size) ||
        size > rest.size()) {
      return bad();
    }
    (*tables)[f[1]] = std::string(rest.substr(0, size));
    rest.remove_prefix(size);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PostgresStore::Ping() {
  if (auto v = SchemaVersion(); !v.ok()) {
    return absl::UnavailableError(v.status().message());
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::Snapshot(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(path, " already exists"));
  }
  if (absl::Status s = FlushAudit(); !s.ok()) return s;
  auto db = pool_.Get();
  if (!db.ok()) return db.status();
  std::string out = kSnapshotMagic;
  absl::Status s =
      (*db)->Simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  if (s.ok()) {
    auto v = (*db)->Query("SELECT MAX(version) FROM schema_version", {});
    s = v.status();
    if (s.ok()) absl::StrAppend(&out, "schema ", v->Int(0, 0), "\n");
  }
  for (int i = 0; s.ok() && i < kTableCount; ++i) {
    std::string data;
    s = (*db)->CopyOut(
        absl::StrCat("COPY ", kTables[i], " TO STDOUT (FORMAT binary)"), &data);
    if (s.ok()) {
      absl::StrAppend(&out, "table ", kTables[i], " ", data.size(), "\n", data);
    }
  }
  if (s.ok()) {
    s = (*db)->Simple("COMMIT");
  } else {
    (void)(*db)->Simple("ROLLBACK");
  }
  if (!s.ok()) return s;
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return errno == EEXIST
               ? absl::AlreadyExistsError(absl::StrCat(path, " already exists"))
               : absl::UnavailableError(absl::StrCat("cannot create ", path));
  }
  s = WriteAll(fd, out);
  if (s.ok() && fsync(fd) != 0) {
    s = absl::UnavailableError(absl::StrCat("cannot sync ", path));
  }
  close(fd);
  if (!s.ok()) unlink(path.c_str());
  return s;
}

absl::Status PostgresStore::Restore(const ConnectOptions& options,
                                    const std::string& snapshot_path,
                                    Clock& clock) {
  std::ifstream in(snapshot_path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", snapshot_path));
  }
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  int version = 0;
  std::map<std::string, std::string> tables;
  if (absl::Status s = ParseSnapshot(bytes, &version, &tables); !s.ok()) {
    return s;
  }
  auto store = Open(options, clock);
  if (!store.ok()) return store.status();
  if (version != kMigrationCount) {
    return absl::FailedPreconditionError(
        absl::StrCat("the snapshot has schema version ", version,
                     "; this broker restores version ", kMigrationCount));
  }
  return (*store)->Tx([&](pg::Connection& db) -> absl::Status {
    auto used = db.Query(
        "SELECT (SELECT COUNT(*) FROM subscribers) + (SELECT COUNT(*) FROM "
        "certificates) + (SELECT COUNT(*) FROM audit)",
        {});
    if (!used.ok()) return used.status();
    if (used->Int(0, 0) != 0) {
      return absl::FailedPreconditionError(
          "the target database is not empty; restore into a fresh one");
    }
    // The fresh schema's own rows (the CRL counter) come from the snapshot.
    if (absl::Status s = db.Simple("DELETE FROM crl_state"); !s.ok()) return s;
    for (int i = 0; i < kTableCount; ++i) {
      auto it = tables.find(kTables[i]);
      if (it == tables.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the snapshot lacks table ", kTables[i]));
      }
      if (absl::Status s = db.CopyIn(
              absl::StrCat("COPY ", kTables[i], " FROM STDIN (FORMAT binary)"),
              it->second);
          !s.ok()) {
        return s;
      }
    }
    for (const char* table : {"audit", "registry_outbox"}) {
      if (absl::Status s = db.Simple(
              absl::StrCat("SELECT setval(pg_get_serial_sequence('", table,
                           "', 'id'), COALESCE((SELECT MAX(id) FROM ", table,
                           "), 0) + 1, false)"));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Store::RewrapCounts> PostgresStore::RewrapSealedKeys(
    const RewrapFn& rewrap, size_t batch_size) {
  if (batch_size == 0) batch_size = 1;
  RewrapCounts total;
  std::string after;  // last IMSI of the previous batch; "" sorts first
  while (true) {
    RewrapCounts batch;
    std::string last;
    // Read with the rows locked, so no write between our read and our
    // update is lost.
    absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
      batch = RewrapCounts{};
      last.clear();
      auto rows = db.Query(
          "SELECT imsi, sealed_keys FROM subscribers WHERE imsi > $1 "
          "ORDER BY imsi LIMIT $2 FOR UPDATE",
          {after, pg::Int(batch_size)});
      if (!rows.ok()) return rows.status();
      for (int i = 0; i < rows->rows(); ++i) {
        const std::string imsi = rows->Text(i, 0);
        auto box = rewrap(imsi, rows->Blob(i, 1));
        if (!box.ok()) return box.status();
        ++batch.rows;
        last = imsi;
        if (!box->has_value()) continue;
        if (absl::Status u = db.Exec(
                "UPDATE subscribers SET sealed_keys = $1 WHERE imsi = $2",
                {**box, imsi});
            !u.ok()) {
          return u;
        }
        ++batch.rewrapped;
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    total.rows += batch.rows;
    total.rewrapped += batch.rewrapped;
    if (batch.rows < batch_size) break;
    after = last;
  }
  // The replaced boxes live on in dead row versions until the table is
  // rewritten: VACUUM FULL rewrites it from its live rows only. (The
  // server's WAL and any archive of it keep them until recycled: see
  // docs/broker.md, "Running on PostgreSQL".)
  if (total.rewrapped > 0) {
    auto db = pool_.Get();
    if (!db.ok()) return db.status();
    if (absl::Status v = (*db)->Simple("VACUUM FULL subscribers"); !v.ok()) {
      return absl::Status(
          v.code(), absl::StrCat("cannot vacuum subscribers: ", v.message()));
    }
  }
  return total;
}

}  // namespace simprov
