#include "broker/store/sqlite/sqlite_store.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store_internal.h"
#include "common/log.h"

namespace simprov {

namespace {

// Audit events queued by AppendAudit are written at least this often.
constexpr absl::Duration kAuditFlushInterval = absl::Milliseconds(250);
constexpr size_t kAuditBatchMax = 4096;

}  // namespace

namespace sqlite_internal {
namespace {

int MigrationCount() { return static_cast<int>(Migrations().size()); }

}  // namespace

int64_t Unix(absl::Time t) { return absl::ToUnixSeconds(t); }

const char kSubscriberColumns[] =
    "imsi, sealed_keys, amf, sqn_seq, sqn_ind, last_sqn, group_name, iccid, "
    "msisdn, status, device_id, created_at, imei, last_seen, replaced_by";

SubscriberRecord ReadSubscriber(SqliteStatement& row) {
  SubscriberRecord r;
  r.imsi = row.Text(0);
  r.sealed_keys = row.Blob(1);
  r.amf = row.Blob(2);
  r.sqn.seq_he = static_cast<uint64_t>(row.Int(3));
  r.sqn.next_ind = static_cast<uint32_t>(row.Int(4));
  r.last_sqn = static_cast<uint64_t>(row.Int(5));
  r.group = row.Text(6);
  r.iccid = row.Text(7);
  r.msisdn = row.Text(8);
  r.status = row.Text(9);
  r.device_id = row.Text(10);
  r.created_at = absl::FromUnixSeconds(row.Int(11));
  r.imei = row.Text(12);
  r.last_seen = absl::FromUnixSeconds(row.Int(13));
  r.replaced_by = row.Text(14);
  return r;
}

const char kCertificateColumns[] =
    "serial, imsi, device_id, not_before, not_after, der, status, issued_at, "
    "revocation_reason, revoked_at, renewed_from, superseded_at";

CertificateRecord ReadCertificate(SqliteStatement& row) {
  CertificateRecord c;
  c.serial = row.Text(0);
  c.imsi = row.Text(1);
  c.device_id = row.Text(2);
  c.not_before = absl::FromUnixSeconds(row.Int(3));
  c.not_after = absl::FromUnixSeconds(row.Int(4));
  c.der = row.Blob(5);
  c.status = row.Text(6);
  c.issued_at = absl::FromUnixSeconds(row.Int(7));
  c.revocation_reason = row.Text(8);
  c.revoked_at = absl::FromUnixSeconds(row.Int(9));
  c.renewed_from = row.Text(10);
  const int64_t superseded = row.Int(11);
  c.superseded_at =
      superseded == 0 ? absl::UnixEpoch() : absl::FromUnixSeconds(superseded);
  return c;
}

absl::Status InsertAudit(SqliteConnection& db, const AuditEvent& e) {
  return db.ExecBound(
      "INSERT INTO audit (at, actor, action, target, result, reason) "
      "VALUES (?, ?, ?, ?, ?, ?)",
      "audit", {Unix(e.at), e.actor, e.action, e.target, e.result, e.reason});
}

const char kAuditColumns[] = "id, at, actor, action, target, result, reason";

AuditEvent ReadAudit(SqliteStatement& row) {
  AuditEvent e;
  e.id = row.Int(0);
  e.at = absl::FromUnixSeconds(row.Int(1));
  e.actor = row.Text(2);
  e.action = row.Text(3);
  e.target = row.Text(4);
  e.result = row.Text(5);
  e.reason = row.Text(6);
  return e;
}

namespace {

absl::Status Migrate(SqliteConnection& db, Clock& clock) {
  if (absl::Status s =
          db.Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                  "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
      !s.ok()) {
    return s;
  }
  int current = 0;
  auto read = db.QueryRow(
      "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
      "schema version", {},
      [&](SqliteStatement& row) { current = static_cast<int>(row.Int(0)); });
  if (!read.ok()) return read.status();
  if (current > MigrationCount()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store schema version ", current, " is newer than this broker (",
        MigrationCount(), "); upgrade the broker"));
  }
  for (int v = current + 1; v <= MigrationCount(); ++v) {
    if (absl::Status s = db.Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    absl::Status s = db.Exec(Migrations()[v - 1]);
    if (s.ok()) {
      s = db.Exec(absl::StrCat(
          "INSERT INTO schema_migrations (version, applied_at) VALUES (", v,
          ", ", absl::ToUnixSeconds(clock.Now()), ")"));
    }
    if (!s.ok()) {
      (void)db.Exec("ROLLBACK");
      return absl::Status(s.code(), absl::StrCat("schema migration ", v,
                                                 " failed: ", s.message()));
    }
    if (absl::Status c = db.Exec("COMMIT"); !c.ok()) return c;
    LogInfo("store: applied schema migration %d", v);
  }
  return absl::OkStatus();
}

class SqliteImport : public SubscriberImport {
 public:
  SqliteImport(std::unique_ptr<SqliteConnection> db, Clock& clock)
      : db_(std::move(db)), clock_(clock) {}
  ~SqliteImport() override {
    if (!done_) (void)db_->Exec("ROLLBACK");
  }

  absl::Status Add(const NewSubscriber& s) override {
    const int64_t now = Unix(clock_.Now());
    absl::Status st = db_->ExecBound(
        "INSERT INTO subscribers (imsi, sealed_keys, amf, sqn_seq, sqn_ind, "
        "last_sqn, group_name, iccid, msisdn, status, device_id, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, 'active', '', ?, ?)",
        "import",
        {s.imsi, s.sealed_keys, s.amf, s.sqn.seq_he, s.sqn.next_ind, s.group,
         s.iccid, s.msisdn, now, now});
    if (absl::IsAlreadyExists(st)) {  // a constraint: the IMSI is taken
      return absl::AlreadyExistsError(
          absl::StrCat("IMSI ", s.imsi, " already exists"));
    }
    if (!st.ok()) return st;
    ++count_;
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Commit() override {
    done_ = true;
    if (absl::Status s = db_->Exec("COMMIT"); !s.ok()) {
      (void)db_->Exec("ROLLBACK");
      return s;
    }
    return count_;
  }

 private:
  std::unique_ptr<SqliteConnection> db_;
  Clock& clock_;
  uint64_t count_ = 0;
  bool done_ = false;
};

}  // namespace
}  // namespace sqlite_internal

using namespace sqlite_internal;  // NOLINT: this file's own helpers

struct SqliteStore::PendingWrite {
  WriteFn fn;
  std::promise<absl::Status> done;
};

int SqliteStore::LatestSchemaVersion() { return MigrationCount(); }

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path, Clock& clock) {
  auto writer = SqliteConnection::Open(path);
  if (!writer.ok()) return writer.status();
  if (absl::Status s = RegisterSha256Function(**writer); !s.ok()) return s;
  if (absl::Status s = Migrate(**writer, clock); !s.ok()) return s;
  auto reader = SqliteConnection::Open(path);
  if (!reader.ok()) return reader.status();
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(path, clock, std::move(*writer), std::move(*reader)));
}

SqliteStore::SqliteStore(std::string path, Clock& clock,
                         std::unique_ptr<SqliteConnection> writer,
                         std::unique_ptr<SqliteConnection> reader)
    : path_(std::move(path)),
      clock_(clock),
      writer_(std::move(writer)),
      reader_(std::move(reader)) {
  // The WAL-index region SQLite mapped for the writer (the migrations ran
  // on it); it stays mapped while the writer is open.
  sqlite3_file* file = nullptr;
  if (sqlite3_file_control(writer_->raw(), "main", SQLITE_FCNTL_FILE_POINTER,
                           &file) == SQLITE_OK &&
      file != nullptr && file->pMethods != nullptr &&
      file->pMethods->iVersion >= 2 && file->pMethods->xShmMap != nullptr) {
    void volatile* region = nullptr;
    if (file->pMethods->xShmMap(file, 0, 32768, 0, &region) == SQLITE_OK &&
        region != nullptr) {
      wal_index_ = static_cast<const volatile uint32_t*>(region);
    }
  }
  if (wal_index_ == nullptr) {
    LogWarning("store: WAL-index not mapped; token subjects are not cached");
  }
  writer_thread_ = std::thread([this] { WriterLoop(); });
  audit_thread_ = std::thread([this] { AuditLoop(); });
}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard<std::mutex> lock(audit_mu_);
    audit_stopping_ = true;
  }
  audit_cv_.notify_all();
  audit_thread_.join();
  (void)FlushAudit();  // the writer still runs
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  writer_thread_.join();
}

uint64_t SqliteStore::WalChange() const {
  // The published header copy: iChange (word 2) and mxFrame (word 4).
  const uint32_t change = __atomic_load_n(&wal_index_[2], __ATOMIC_ACQUIRE);
  const uint32_t frames = __atomic_load_n(&wal_index_[4], __ATOMIC_ACQUIRE);
  return (static_cast<uint64_t>(change) << 32) | frames;
}

absl::StatusOr<int> SqliteStore::SchemaVersion() {
  std::lock_guard<std::mutex> lock(read_mu_);
  int version = 0;
  auto found = reader_->QueryRow(
      "SELECT MAX(version) FROM schema_migrations", "schema version", {},
      [&](SqliteStatement& row) { version = static_cast<int>(row.Int(0)); });
  if (!found.ok()) return found.status();
  if (!*found) return absl::InternalError("no schema");
  return version;
}

absl::Status SqliteStore::Write(WriteFn fn) {
  PendingWrite op{std::move(fn), {}};
  std::future<absl::Status> result = op.done.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopping_) return absl::UnavailableError("store is shutting down");
    queue_.push_back(&op);
  }
  queue_cv_.notify_one();
  if (!write_observer_) return result.get();
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = result.get();
  write_observer_(absl::FromChrono(std::chrono::steady_clock::now() - start));
  return s;
}

void SqliteStore::WriterLoop() {
  while (true) {
    std::deque<PendingWrite*> batch;
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      batch.swap(queue_);
    }
    std::vector<absl::Status> results(batch.size());
    absl::Status begin = writer_->Exec("BEGIN IMMEDIATE");
    if (!begin.ok()) {
      for (PendingWrite* op : batch) op->done.set_value(begin);
      continue;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      absl::Status s = writer_->Exec("SAVEPOINT w");
      if (s.ok()) {
        s = batch[i]->fn(*writer_);
        if (s.ok()) {
          s = writer_->Exec("RELEASE w");
        } else {
          (void)writer_->Exec("ROLLBACK TO w");
          (void)writer_->Exec("RELEASE w");
        }
      }
      results[i] = s;
    }
    absl::Status commit = writer_->Exec("COMMIT");
    if (!commit.ok()) {
      (void)writer_->Exec("ROLLBACK");
      LogError("store: commit failed: %s", commit.message());
      for (auto& r : results) {
        if (r.ok()) {
          r = absl::UnavailableError(
              absl::StrCat("store commit failed: ", commit.message()));
        }
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i]->done.set_value(results[i]);
    }
  }
}

absl::StatusOr<std::unique_ptr<SubscriberImport>> SqliteStore::BeginImport() {
  auto db = SqliteConnection::Open(path_);
  if (!db.ok()) return db.status();
  if (absl::Status s = (*db)->Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  return std::unique_ptr<SubscriberImport>(
      new SqliteImport(std::move(*db), clock_));
}

SqliteStore::ReaderLease::~ReaderLease() {
  if (conn_ == nullptr) return;
  std::lock_guard<std::mutex> lock(store_->pool_mu_);
  if (store_->idle_readers_.size() < kMaxIdleReaders) {
    store_->idle_readers_.push_back(std::move(conn_));
  }
}

absl::StatusOr<SqliteStore::ReaderLease> SqliteStore::LeaseReader() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_readers_.empty()) {
      ReaderLease lease(this, std::move(idle_readers_.back()));
      idle_readers_.pop_back();
      return lease;
    }
  }
  auto conn = SqliteConnection::Open(path_);
  if (!conn.ok()) return conn.status();
  // Point look-ups: a small page cache each (the OS caches the file too),
  // so a full pool stays within ~32 MB.
  if (absl::Status s = (*conn)->Exec("PRAGMA cache_size=-256"); !s.ok()) {
    return s;
  }
  return ReaderLease(this, std::move(*conn));
}

absl::StatusOr<SubscriberRecord> SqliteStore::GetSubscriber(
    const std::string& imsi) {
  auto reader = LeaseReader();
  if (!reader.ok()) return reader.status();
  SubscriberRecord r;
  auto found = (*reader)->QueryRow(
      absl::StrCat("SELECT ", kSubscriberColumns,
                   " FROM subscribers WHERE imsi = ?"),
      "get subscriber", {imsi},
      [&](SqliteStatement& row) { r = ReadSubscriber(row); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(absl::StrCat("no subscriber with IMSI ", imsi));
  }
  return r;
}

absl::Status SqliteStore::ListSubscribers(
    const std::string& group,
    const std::function<bool(const SubscriberRecord&)>& fn) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::string sql =
      absl::StrCat("SELECT ", kSubscriberColumns, " FROM subscribers");
  if (!group.empty()) sql += " WHERE group_name = ?";
  sql += " ORDER BY imsi";
  auto visit = [&](SqliteStatement& row) { return fn(ReadSubscriber(row)); };
  if (group.empty()) return reader_->Query(sql, "list subscribers", {}, visit);
  return reader_->Query(sql, "list subscribers", {group}, visit);
}

absl::StatusOr<ChallengeMaterial> SqliteStore::AdvanceSqn(
    const std::string& imsi) {
  ChallengeMaterial m;
  bool known = false;
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    HeSqnState sqn;
    auto found = db.QueryRow(
        "SELECT sealed_keys, amf, sqn_seq, sqn_ind, status, device_id, "
        "group_name FROM subscribers WHERE imsi = ?",
        "advance SQN", {imsi}, [&](SqliteStatement& row) {
          m.sealed_keys = row.Blob(0);
          m.amf = row.Blob(1);
          sqn.seq_he = static_cast<uint64_t>(row.Int(2));
          sqn.next_ind = static_cast<uint32_t>(row.Int(3));
          m.status = row.Text(4);
          m.device_id = row.Text(5);
          m.group = row.Text(6);
        });
    if (!found.ok()) return found.status();
    known = *found;
    if (!known || m.status != kStatusActive) {
      // An unknown or inactive IMSI must cost what an active one does: one
      // page written and committed durably. (A commit that wrote nothing
      // skips the disk, and its speed would tell the two apart.) The CRL
      // number goes up and back down: the page is dirtied, nothing changes.
      // The statement succeeds, so the savepoint is kept, not rolled back.
      absl::Status up = db.ExecBound(
          "UPDATE crl_state SET crl_number = crl_number + 1 WHERE id = 1",
          "advance SQN", {});
      if (!up.ok()) return up;
      return db.ExecBound(
          "UPDATE crl_state SET crl_number = crl_number - 1 WHERE id = 1",
          "advance SQN", {});
    }
    m.sqn = NextSqn(sqn);
    return db.ExecBound(
        "UPDATE subscribers SET sqn_seq = ?, sqn_ind = ?, last_sqn = ? "
        "WHERE imsi = ?",
        "advance SQN", {sqn.seq_he, sqn.next_ind, m.sqn, imsi});
  });
  if (!s.ok()) return s;
  if (!known) return absl::NotFoundError("unknown IMSI");
  return m;
}

absl::Status SqliteStore::ResyncSqn(const std::string& imsi, uint64_t sqn_ms) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    HeSqnState sqn;
    auto found =
        db.QueryRow("SELECT sqn_seq, sqn_ind FROM subscribers WHERE imsi = ?",
                    "resync SQN", {imsi}, [&](SqliteStatement& row) {
                      sqn.seq_he = static_cast<uint64_t>(row.Int(0));
                      sqn.next_ind = static_cast<uint32_t>(row.Int(1));
                    });
    if (!found.ok()) return found.status();
    if (!*found) return absl::NotFoundError("unknown IMSI");
    ResyncHe(sqn, sqn_ms);
    return db.ExecBound(
        "UPDATE subscribers SET sqn_seq = ?, sqn_ind = ?, updated_at = ? "
        "WHERE imsi = ?",
        "resync SQN", {sqn.seq_he, sqn.next_ind, Unix(clock_.Now()), imsi});
  });
}

absl::Status SqliteStore::RecordIssuance(const CertificateRecord& cert,
                                         const AuditEvent& event) {
  (void)FlushAudit();  // events queued earlier come first (cheap when none)
  return Write([&](SqliteConnection& db) -> absl::Status {
    return RecordIssuanceIn(db, cert, event);
  });
}

absl::Status SqliteStore::RecordIssuanceIn(SqliteConnection& db,
                                           const CertificateRecord& cert,
                                           const AuditEvent& event) {
  if (absl::Status s =
          db.ExecBound("UPDATE subscribers SET device_id = ?, updated_at = ?, "
                       "last_seen = ? WHERE imsi = ? AND status = 'active' AND "
                       "(device_id = '' OR device_id = ?)",
                       "record issuance",
                       {cert.device_id, Unix(cert.issued_at),
                        Unix(cert.issued_at), cert.imsi, cert.device_id});
      !s.ok()) {
    return s;
  }
  if (db.Changes() != 1) {
    return absl::FailedPreconditionError(
        "subscriber is no longer active or its device id changed");
  }
  if (!cert.renewed_from.empty()) {
    // Checked in the transaction that records the renewal: of two
    // renewals of one certificate, the second finds it superseded.
    auto current = db.QueryRow(
        "SELECT 1 FROM certificates WHERE serial = ? AND imsi = ? AND "
        "status = 'valid' AND superseded_at = 0",
        "record renewal", {cert.renewed_from, cert.imsi},
        [](SqliteStatement&) {});
    if (!current.ok()) return current.status();
    if (!*current) {
      return absl::AbortedError(absl::StrCat("certificate ", cert.renewed_from,
                                             " is no longer current"));
    }
  }
  // One current certificate per subscriber: the new one supersedes the
  // others (a superseded time of 0 would read as "not superseded").
  if (absl::Status s = db.ExecBound(
          "UPDATE certificates SET superseded_at = ? WHERE imsi = ? AND "
          "status = 'valid' AND superseded_at = 0",
          "supersede", {std::max<int64_t>(Unix(cert.issued_at), 1), cert.imsi});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = db.ExecBound(
          "INSERT INTO certificates (serial, imsi, device_id, not_before, "
          "not_after, der, status, issued_at, renewed_from) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          "record certificate",
          {cert.serial, cert.imsi, cert.device_id, Unix(cert.not_before),
           Unix(cert.not_after), cert.der, cert.status, Unix(cert.issued_at),
           cert.renewed_from});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = InsertCertificateSha256(db, cert); !s.ok()) return s;
  return InsertAudit(db, event);
}

absl::Status SqliteStore::AppendAudit(const AuditEvent& event) {
  {
    std::lock_guard<std::mutex> lock(audit_mu_);
    if (audit_stopping_) {
      return absl::UnavailableError("store is shutting down");
    }
    audit_queue_.push_back(event);
    if (audit_queue_.size() < kAuditBatchMax) return absl::OkStatus();
  }
  audit_cv_.notify_one();
  return absl::OkStatus();
}

absl::Status SqliteStore::FlushAudit() {
  // One flush at a time, so batches reach the table in queue order.
  std::lock_guard<std::mutex> flushing(audit_flush_mu_);
  std::vector<AuditEvent> batch;
  {
    std::lock_guard<std::mutex> lock(audit_mu_);
    batch.swap(audit_queue_);
  }
  if (batch.empty()) return absl::OkStatus();
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    for (const AuditEvent& e : batch) {
      if (absl::Status st = InsertAudit(db, e); !st.ok()) return st;
    }
    return absl::OkStatus();
  });
  if (!s.ok()) LogError("audit: %d events lost: %s", batch.size(), s.message());
  return s;
}

void SqliteStore::AuditLoop() {
  std::unique_lock<std::mutex> lock(audit_mu_);
  while (!audit_stopping_) {
    audit_cv_.wait_for(
        lock, absl::ToChronoMilliseconds(kAuditFlushInterval), [this] {
          return audit_stopping_ || audit_queue_.size() >= kAuditBatchMax;
        });
    if (audit_queue_.empty()) continue;
    lock.unlock();
    (void)FlushAudit();
    lock.lock();
  }
}

absl::StatusOr<std::vector<CertificateRecord>> SqliteStore::CertificatesOf(
    const std::string& imsi) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::vector<CertificateRecord> out;
  absl::Status s = reader_->Query(
      absl::StrCat(
          "SELECT ", kCertificateColumns,
          " FROM certificates WHERE imsi = ? ORDER BY issued_at DESC, serial"),
      "certificates", {imsi}, [&](SqliteStatement& row) {
        out.push_back(ReadCertificate(row));
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<CertificateRecord> SqliteStore::GetCertificate(
    const std::string& serial) {
  std::lock_guard<std::mutex> lock(read_mu_);
  CertificateRecord c;
  auto found = reader_->QueryRow(
      absl::StrCat("SELECT ", kCertificateColumns,
                   " FROM certificates WHERE serial = ?"),
      "certificate", {serial},
      [&](SqliteStatement& row) { c = ReadCertificate(row); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(absl::StrCat("no certificate ", serial));
  }
  return c;
}

absl::StatusOr<std::vector<AuditEvent>> SqliteStore::AuditOf(
    const std::string& imsi) {
  std::vector<AuditEvent> out;
  AuditQuery q;
  q.imsi = imsi;
  absl::Status s = QueryAudit(q, [&](const AuditEvent& e) {
    out.push_back(e);
    return true;
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace simprov
