#include "broker/store/postgres/postgres_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/store/postgres/postgres_store_internal.h"
#include "common/digest.h"
#include "common/log.h"

namespace simprov {

namespace {

// Audit events queued by AppendAudit are written at least this often.
constexpr absl::Duration kAuditFlushInterval = absl::Milliseconds(250);
constexpr size_t kAuditBatchMax = 4096;
// The advisory lock key under which the schema is migrated ("simprov").
constexpr int64_t kMigrationLock = 0x73696d70726f76;
constexpr int kTxAttempts = 5;

}  // namespace

namespace pg_internal {

int64_t Unix(absl::Time t) { return absl::ToUnixSeconds(t); }

const char kSubscriberColumns[] =
    "imsi, sealed_keys, amf, sqn_seq, sqn_ind, last_sqn, group_name, iccid, "
    "msisdn, status, device_id, created_at, imei, last_seen, replaced_by";

SubscriberRecord ReadSubscriber(const pg::Result& r, int i) {
  SubscriberRecord s;
  s.imsi = r.Text(i, 0);
  s.sealed_keys = r.Blob(i, 1);
  s.amf = r.Blob(i, 2);
  s.sqn.seq_he = static_cast<uint64_t>(r.Int(i, 3));
  s.sqn.next_ind = static_cast<uint32_t>(r.Int(i, 4));
  s.last_sqn = static_cast<uint64_t>(r.Int(i, 5));
  s.group = r.Text(i, 6);
  s.iccid = r.Text(i, 7);
  s.msisdn = r.Text(i, 8);
  s.status = r.Text(i, 9);
  s.device_id = r.Text(i, 10);
  s.created_at = absl::FromUnixSeconds(r.Int(i, 11));
  s.imei = r.Text(i, 12);
  s.last_seen = absl::FromUnixSeconds(r.Int(i, 13));
  s.replaced_by = r.Text(i, 14);
  return s;
}

const char kCertificateColumns[] =
    "serial, imsi, device_id, not_before, not_after, der, status, issued_at, "
    "revocation_reason, revoked_at, renewed_from, superseded_at";

CertificateRecord ReadCertificate(const pg::Result& r, int i) {
  CertificateRecord c;
  c.serial = r.Text(i, 0);
  c.imsi = r.Text(i, 1);
  c.device_id = r.Text(i, 2);
  c.not_before = absl::FromUnixSeconds(r.Int(i, 3));
  c.not_after = absl::FromUnixSeconds(r.Int(i, 4));
  c.der = r.Blob(i, 5);
  c.status = r.Text(i, 6);
  c.issued_at = absl::FromUnixSeconds(r.Int(i, 7));
  c.revocation_reason = r.Text(i, 8);
  c.revoked_at = absl::FromUnixSeconds(r.Int(i, 9));
  c.renewed_from = r.Text(i, 10);
  const int64_t superseded = r.Int(i, 11);
  c.superseded_at =
      superseded == 0 ? absl::UnixEpoch() : absl::FromUnixSeconds(superseded);
  return c;
}

std::vector<CertificateRecord> Certificates(const pg::Result& r) {
  std::vector<CertificateRecord> out;
  out.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadCertificate(r, i));
  return out;
}

const char kAuditColumns[] = "id, at, actor, action, target, result, reason";

AuditEvent ReadAudit(const pg::Result& r, int i) {
  AuditEvent e;
  e.id = r.Int(i, 0);
  e.at = absl::FromUnixSeconds(r.Int(i, 1));
  e.actor = r.Text(i, 2);
  e.action = r.Text(i, 3);
  e.target = r.Text(i, 4);
  e.result = r.Text(i, 5);
  e.reason = r.Text(i, 6);
  return e;
}

absl::Status InsertAudit(pg::Connection& db, const AuditEvent& e) {
  return db.Exec(
      "INSERT INTO audit (at, actor, action, target, result, reason) "
      "VALUES ($1, $2, $3, $4, $5, $6)",
      {pg::Int(Unix(e.at)), e.actor, e.action, e.target, e.result, e.reason});
}

absl::Status InsertCertificateSha256(pg::Connection& db,
                                     const CertificateRecord& cert) {
  return db.Exec(
      "INSERT INTO certificate_sha256 (serial, sha256) VALUES ($1, $2)",
      {cert.serial, Sha256(cert.der)});
}

namespace {

absl::Status Migrate(pg::Connection& db, Clock& clock) {
  if (absl::Status s = db.Simple("BEGIN"); !s.ok()) return s;
  auto fail = [&](absl::Status s) {
    (void)db.Simple("ROLLBACK");
    return s;
  };
  // Brokers starting together: the first migrates, the others wait here
  // and then find nothing left to do.
  if (absl::Status s = db.Exec("SELECT pg_advisory_xact_lock($1)",
                               {pg::Int(kMigrationLock)});
      !s.ok()) {
    return fail(s);
  }
  if (absl::Status s =
          db.Simple("CREATE TABLE IF NOT EXISTS schema_version ("
                    "version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
      !s.ok()) {
    return fail(s);
  }
  auto current =
      db.Query("SELECT COALESCE(MAX(version), 0) FROM schema_version", {});
  if (!current.ok()) return fail(current.status());
  const int version = static_cast<int>(current->Int(0, 0));
  if (version > kMigrationCount) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "store schema version ", version, " is newer than this broker (",
        kMigrationCount, "); upgrade the broker")));
  }
  for (int v = version + 1; v <= kMigrationCount; ++v) {
    absl::Status s = db.Simple(kMigrations[v - 1]);
    if (s.ok()) {
      s = db.Exec(
          "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
          {pg::Int(v), pg::Int(Unix(clock.Now()))});
    }
    if (!s.ok()) {
      return fail(absl::Status(
          s.code(),
          absl::StrCat("schema migration ", v, " failed: ", s.message())));
    }
    LogInfo("store: applying schema migration %d", v);
  }
  return db.Simple("COMMIT");
}

class PostgresImport : public SubscriberImport {
 public:
  PostgresImport(pg::Pool::Lease db, Clock& clock)
      : db_(std::move(db)), clock_(clock) {}
  ~PostgresImport() override {
    if (!done_) (void)db_->Simple("ROLLBACK");
  }

  absl::Status Add(const NewSubscriber& s) override {
    const int64_t now = Unix(clock_.Now());
    // ON CONFLICT: a taken IMSI is refused without aborting the import's
    // transaction.
    auto r = db_->Query(
        "INSERT INTO subscribers (imsi, sealed_keys, amf, sqn_seq, sqn_ind, "
        "last_sqn, group_name, iccid, msisdn, status, device_id, created_at, "
        "updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, 'active', '', "
        "$9, $10) ON CONFLICT (imsi) DO NOTHING",
        {s.imsi, s.sealed_keys, s.amf, pg::Int(s.sqn.seq_he),
         pg::Int(s.sqn.next_ind), s.group, s.iccid, s.msisdn, pg::Int(now),
         pg::Int(now)});
    if (!r.ok()) return r.status();
    if (r->affected() != 1) {
      return absl::AlreadyExistsError(
          absl::StrCat("IMSI ", s.imsi, " already exists"));
    }
    ++count_;
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Commit() override {
    done_ = true;
    if (absl::Status s = db_->Simple("COMMIT"); !s.ok()) {
      (void)db_->Simple("ROLLBACK");
      return s;
    }
    return count_;
  }

 private:
  pg::Pool::Lease db_;
  Clock& clock_;
  uint64_t count_ = 0;
  bool done_ = false;
};

}  // namespace
}  // namespace pg_internal

using namespace pg_internal;  // NOLINT: this store's own helpers

int PostgresStore::LatestSchemaVersion() { return kMigrationCount; }

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const ConnectOptions& options, Clock& clock) {
  std::unique_ptr<PostgresStore> store(new PostgresStore(options, clock));
  {
    auto db = store->pool_.Get();
    if (!db.ok()) return db.status();
    if (absl::Status s = Migrate(**db, clock); !s.ok()) return s;
  }
  return store;
}

PostgresStore::PostgresStore(ConnectOptions options, Clock& clock)
    : clock_(clock), pool_(std::move(options)) {
  audit_thread_ = std::thread([this] { AuditLoop(); });
}

PostgresStore::~PostgresStore() {
  {
    std::lock_guard<std::mutex> lock(audit_mu_);
    audit_stopping_ = true;
  }
  audit_cv_.notify_all();
  audit_thread_.join();
  (void)FlushAudit();
}

absl::Status PostgresStore::Tx(const TxFn& fn) {
  absl::Status s;
  for (int attempt = 0; attempt < kTxAttempts; ++attempt) {
    auto db = pool_.Get();
    if (!db.ok()) return db.status();
    s = (*db)->Simple("BEGIN");
    if (!s.ok()) return s;
    s = fn(**db);
    std::string state = (*db)->last_sqlstate();
    if (s.ok()) {
      s = (*db)->Simple("COMMIT");
      state = (*db)->last_sqlstate();
    } else {
      (void)(*db)->Simple("ROLLBACK");
    }
    // Two transactions that locked rows in opposite orders: one is chosen
    // to fail and is run again.
    if (s.ok() || !pg::Retryable(state)) return s;
  }
  return s;
}

absl::StatusOr<pg::Result> PostgresStore::Read(
    const std::string& sql, const std::vector<pg::Arg>& args) {
  auto db = pool_.Get();
  if (!db.ok()) return db.status();
  return (*db)->Query(sql, args);
}

absl::StatusOr<int> PostgresStore::SchemaVersion() {
  auto r = Read("SELECT MAX(version) FROM schema_version", {});
  if (!r.ok()) return r.status();
  if (r->rows() != 1 || r->IsNull(0, 0)) {
    return absl::InternalError("no schema");
  }
  return static_cast<int>(r->Int(0, 0));
}

absl::StatusOr<std::unique_ptr<SubscriberImport>> PostgresStore::BeginImport() {
  auto db = pool_.Get();
  if (!db.ok()) return db.status();
  if (absl::Status s = (*db)->Simple("BEGIN"); !s.ok()) return s;
  return std::unique_ptr<SubscriberImport>(
      new PostgresImport(std::move(*db), clock_));
}

absl::StatusOr<SubscriberRecord> PostgresStore::GetSubscriber(
    const std::string& imsi) {
  auto r = Read(absl::StrCat("SELECT ", kSubscriberColumns,
                             " FROM subscribers WHERE imsi = $1"),
                {imsi});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no subscriber with IMSI ", imsi));
  }
  return ReadSubscriber(*r, 0);
}

absl::Status PostgresStore::ListSubscribers(
    const std::string& group,
    const std::function<bool(const SubscriberRecord&)>& fn) {
  SubscriberFilter filter;
  filter.group = group;
  return ListSubscribersPage(filter, fn);
}

absl::StatusOr<ChallengeMaterial> PostgresStore::AdvanceSqn(
    const std::string& imsi) {
  ChallengeMaterial m;
  bool known = false;
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    // The row lock serialises advances of one IMSI across connections and
    // brokers: the second waits for the first's commit and reads its SQN.
    auto r = db.Query(
        "SELECT sealed_keys, amf, sqn_seq, sqn_ind, status, device_id, "
        "group_name FROM subscribers WHERE imsi = $1 FOR UPDATE",
        {imsi});
    if (!r.ok()) return r.status();
    known = r->rows() == 1;
    if (known) {
      m.sealed_keys = r->Blob(0, 0);
      m.amf = r->Blob(0, 1);
      m.status = r->Text(0, 4);
      m.device_id = r->Text(0, 5);
      m.group = r->Text(0, 6);
    }
    if (!known || m.status != kStatusActive) {
      // An unknown or inactive IMSI costs what an active one does: a
      // transaction with an id, whose commit record is flushed like a
      // write's (a read-only commit skips the flush, and its speed would
      // tell the two apart).
      return db.Exec("SELECT pg_current_xact_id()", {});
    }
    HeSqnState sqn;
    sqn.seq_he = static_cast<uint64_t>(r->Int(0, 2));
    sqn.next_ind = static_cast<uint32_t>(r->Int(0, 3));
    m.sqn = NextSqn(sqn);
    return db.Exec(
        "UPDATE subscribers SET sqn_seq = $1, sqn_ind = $2, last_sqn = $3 "
        "WHERE imsi = $4",
        {pg::Int(sqn.seq_he), pg::Int(sqn.next_ind), pg::Int(m.sqn), imsi});
  });
  if (!s.ok()) return s;
  if (!known) return absl::NotFoundError("unknown IMSI");
  return m;
}

absl::Status PostgresStore::ResyncSqn(const std::string& imsi,
                                      uint64_t sqn_ms) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query(
        "SELECT sqn_seq, sqn_ind FROM subscribers WHERE imsi = $1 FOR UPDATE",
        {imsi});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::NotFoundError("unknown IMSI");
    HeSqnState sqn;
    sqn.seq_he = static_cast<uint64_t>(r->Int(0, 0));
    sqn.next_ind = static_cast<uint32_t>(r->Int(0, 1));
    ResyncHe(sqn, sqn_ms);
    return db.Exec(
        "UPDATE subscribers SET sqn_seq = $1, sqn_ind = $2, updated_at = $3 "
        "WHERE imsi = $4",
        {pg::Int(sqn.seq_he), pg::Int(sqn.next_ind),
         pg::Int(Unix(clock_.Now())), imsi});
  });
}

absl::Status PostgresStore::RecordIssuance(const CertificateRecord& cert,
                                           const AuditEvent& event) {
  (void)FlushAudit();  // events queued earlier come first (cheap when none)
  return Tx([&](pg::Connection& db) -> absl::Status {
    return RecordIssuanceIn(db, cert, event);
  });
}

absl::Status PostgresStore::RecordIssuanceIn(pg::Connection& db,
                                             const CertificateRecord& cert,
                                             const AuditEvent& event) {
  // Locks the subscriber's row: issuances of one subscriber (two renewals
  // of one certificate on two brokers) run one after the other.
  auto bound = db.Query(
      "UPDATE subscribers SET device_id = $1, updated_at = $2, last_seen = $3 "
      "WHERE imsi = $4 AND status = 'active' AND "
      "(device_id = '' OR device_id = $5)",
      {cert.device_id, pg::Int(Unix(cert.issued_at)),
       pg::Int(Unix(cert.issued_at)), cert.imsi, cert.device_id});
  if (!bound.ok()) return bound.status();
  if (bound->affected() != 1) {
    return absl::FailedPreconditionError(
        "subscriber is no longer active or its device id changed");
  }
  if (!cert.renewed_from.empty()) {
    // Checked under the subscriber's lock: of two renewals of one
    // certificate, the second finds it superseded.
    auto current = db.Query(
        "SELECT 1 FROM certificates WHERE serial = $1 AND imsi = $2 AND "
        "status = 'valid' AND superseded_at = 0",
        {cert.renewed_from, cert.imsi});
    if (!current.ok()) return current.status();
    if (current->rows() == 0) {
      return absl::AbortedError(absl::StrCat("certificate ", cert.renewed_from,
                                             " is no longer current"));
    }
  }
  // One current certificate per subscriber: the new one supersedes the
  // others (a superseded time of 0 would read as "not superseded").
  if (absl::Status s = db.Exec(
          "UPDATE certificates SET superseded_at = $1 WHERE imsi = $2 AND "
          "status = 'valid' AND superseded_at = 0",
          {pg::Int(std::max<int64_t>(Unix(cert.issued_at), 1)), cert.imsi});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = db.Exec(
          "INSERT INTO certificates (serial, imsi, device_id, not_before, "
          "not_after, der, status, issued_at, renewed_from) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
          {cert.serial, cert.imsi, cert.device_id,
           pg::Int(Unix(cert.not_before)), pg::Int(Unix(cert.not_after)),
           cert.der, cert.status, pg::Int(Unix(cert.issued_at)),
           cert.renewed_from});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = InsertCertificateSha256(db, cert); !s.ok()) return s;
  return InsertAudit(db, event);
}

absl::Status PostgresStore::AppendAudit(const AuditEvent& event) {
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

absl::Status PostgresStore::FlushAudit() {
  // One flush at a time, so batches reach the table in queue order.
  std::lock_guard<std::mutex> flushing(audit_flush_mu_);
  std::vector<AuditEvent> batch;
  {
    std::lock_guard<std::mutex> lock(audit_mu_);
    batch.swap(audit_queue_);
  }
  if (batch.empty()) return absl::OkStatus();
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    for (const AuditEvent& e : batch) {
      if (absl::Status st = InsertAudit(db, e); !st.ok()) return st;
    }
    return absl::OkStatus();
  });
  if (!s.ok()) LogError("audit: %d events lost: %s", batch.size(), s.message());
  return s;
}

void PostgresStore::AuditLoop() {
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

absl::StatusOr<std::vector<CertificateRecord>> PostgresStore::CertificatesOf(
    const std::string& imsi) {
  auto r = Read(absl::StrCat("SELECT ", kCertificateColumns,
                             " FROM certificates WHERE imsi = $1 "
                             "ORDER BY issued_at DESC, serial"),
                {imsi});
  if (!r.ok()) return r.status();
  return Certificates(*r);
}

absl::StatusOr<CertificateRecord> PostgresStore::GetCertificate(
    const std::string& serial) {
  auto r = Read(absl::StrCat("SELECT ", kCertificateColumns,
                             " FROM certificates WHERE serial = $1"),
                {serial});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no certificate ", serial));
  }
  return ReadCertificate(*r, 0);
}

absl::StatusOr<std::vector<AuditEvent>> PostgresStore::AuditOf(
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
