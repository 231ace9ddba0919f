// The embedded store: SQLite in WAL mode with synchronous=FULL, versioned
// schema migrations, and group commit.
//
// Group commit: every write is a closure queued to one writer thread, which
// runs all queued closures in one transaction (each under its own
// SAVEPOINT, so one failure rolls back only itself) and commits them with
// one fsync. A caller returns only after its write is durable. Reads use a
// separate connection (WAL readers never block the writer).
#ifndef SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_H_
#define SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker/store/sqlite/sqlite_db.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

class SqliteStore : public Store {
 public:
  // Opens (creating if needed) the store at `path` and migrates its schema.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path, Clock& clock = Clock::Real());
  ~SqliteStore() override;

  // The schema version this binary migrates to.
  static int LatestSchemaVersion();
  absl::StatusOr<int> SchemaVersion();

  // Operations, in sqlite_store_ops.cc.
  absl::Status Ping() override;
  absl::Status Snapshot(const std::string& path) override;

  absl::StatusOr<std::unique_ptr<SubscriberImport>> BeginImport() override;
  absl::StatusOr<SubscriberRecord> GetSubscriber(
      const std::string& imsi) override;
  absl::Status ListSubscribers(
      const std::string& group,
      const std::function<bool(const SubscriberRecord&)>& fn) override;
  absl::StatusOr<ChallengeMaterial> AdvanceSqn(
      const std::string& imsi) override;
  absl::Status ResyncSqn(const std::string& imsi, uint64_t sqn_ms) override;
  absl::Status RecordIssuance(const CertificateRecord& cert,
                              const AuditEvent& event) override;
  absl::Status AppendAudit(const AuditEvent& event) override;
  absl::Status AppendAuditDurable(const AuditEvent& event) override;
  absl::StatusOr<std::vector<CertificateRecord>> CertificatesOf(
      const std::string& imsi) override;
  absl::StatusOr<CertificateRecord> GetCertificate(
      const std::string& serial) override;
  absl::StatusOr<std::vector<AuditEvent>> AuditOf(
      const std::string& imsi) override;

  // Fleet lifecycle, in sqlite_store_fleet.cc.
  absl::Status PutGroups(const std::vector<GroupRow>& groups,
                         const AuditEvent& event) override;
  absl::StatusOr<GroupRow> GetGroup(const std::string& name) override;
  absl::Status ListGroups(
      const std::string& after, size_t limit,
      const std::function<bool(const GroupRow&)>& fn) override;
  absl::Status DeleteGroup(const std::string& name,
                           const AuditEvent& event) override;
  absl::StatusOr<uint64_t> CountSubscribersInGroup(
      const std::string& group) override;
  absl::Status ListSubscribersPage(
      const SubscriberFilter& filter,
      const std::function<bool(const SubscriberRecord&)>& fn) override;
  absl::StatusOr<SubscriberRecord> GetSubscriberByDeviceId(
      const std::string& device_id) override;
  absl::Status SetSubscriberGroup(const std::string& imsi,
                                  const std::string& group,
                                  const AuditEvent& event) override;
  absl::Status SetSubscriberStatus(const std::string& imsi,
                                   const std::vector<std::string>& from,
                                   const std::string& to,
                                   const std::string& reactivated_device_id,
                                   const AuditEvent& event) override;
  absl::StatusOr<std::vector<CertificateRecord>> RevokeCertificates(
      const RevocationRequest& request, const AuditEvent& event) override;
  absl::StatusOr<std::vector<CertificateRecord>> RenewalsOf(
      const std::string& serial) override;
  absl::Status ListSuperseded(
      const std::function<bool(const CertificateRecord&)>& fn) override;
  absl::StatusOr<std::vector<CertificateRecord>> RevokeSuperseded(
      const std::vector<std::string>& serials, absl::Time at,
      const AuditEvent& event) override;
  absl::StatusOr<std::vector<CertificateRecord>> RevokedCertificates(
      absl::Time now) override;
  absl::StatusOr<uint64_t> NextCrlNumber() override;
  absl::StatusOr<std::vector<CertificateRecord>> ReplaceDevice(
      const std::string& old_imsi, const std::string& new_imsi, absl::Time at,
      const AuditEvent& event) override;
  absl::Status SetImei(const std::string& imsi, const std::string& imei,
                       bool only_if_unbound) override;
  absl::Status ClearImei(const std::string& imsi,
                         const AuditEvent& event) override;
  absl::Status QueryAudit(
      const AuditQuery& query,
      const std::function<bool(const AuditEvent&)>& fn) override;
  absl::Status FlushAudit() override;
  // Tokens: sqlite_store_tokens.cc.
  absl::Status CreateTokenApp(const std::string& name, const Bytes& key_hash,
                              absl::Time at) override;
  absl::StatusOr<Bytes> TokenAppKeyHash(const std::string& name) override;
  absl::Status RevokeTokenId(const std::string& jti, absl::Time at) override;
  absl::Status RevokeDeviceTokens(const std::string& imsi,
                                  absl::Time at) override;
  absl::StatusOr<bool> TokenRevoked(const std::string& jti,
                                    const std::string& imsi,
                                    absl::Time iat) override;
  absl::Status PruneTokenRevocations(absl::Time before) override;
  absl::StatusOr<TokenSubject> GetTokenSubject(
      const std::string& serial) override;
  absl::StatusOr<TokenSubject> GetTokenSubjectByCertHash(
      const Bytes& cert_sha256) override;
  // Registry outbox: sqlite_store_registry.cc.
  absl::Status RecordIssuanceWithIntents(
      const CertificateRecord& cert, const AuditEvent& event,
      const std::vector<RegistrationIntent>& intents) override;
  absl::StatusOr<std::vector<RegistrationIntent>> DueIntents(
      absl::Time now, size_t limit) override;
  absl::Status FinishIntent(int64_t id, const std::string& state,
                            const std::string& result, absl::Time at) override;
  absl::Status DeferIntent(int64_t id, const std::string& error,
                           absl::Time next_attempt_at) override;
  absl::StatusOr<std::vector<RegistrationIntent>> IntentsOf(
      const std::string& serial) override;
  absl::Status ListPendingIntents(
      int64_t after_id, size_t limit,
      const std::function<bool(const RegistrationIntent&)>& fn) override;
  absl::StatusOr<int64_t> RequeueRegistrations(
      const std::vector<RegistrationIntent>& intents) override;
  absl::StatusOr<int64_t> EnqueueRemovals(absl::Time now) override;
  absl::StatusOr<OutboxStats> GetOutboxStats(absl::Time now) override;
  absl::StatusOr<FleetStats> GetFleetStats(absl::Time now) override;

  // Shared broker state: sqlite_store_shared.cc.
  absl::Status PutSession(const StoredSession& s,
                          const SessionCaps& caps) override;
  absl::StatusOr<StoredSession> TakeSession(const Bytes& id) override;
  absl::StatusOr<StoredSession> TakeSessionByRand(const std::string& imsi,
                                                  const Bytes& rand) override;
  absl::StatusOr<int64_t> ExpireSessions(absl::Time before) override;
  absl::StatusOr<int64_t> CountSessions(const std::string& imsi) override;
  absl::StatusOr<bool> TakeRateToken(const std::string& key, int burst,
                                     absl::Duration refill,
                                     absl::Time now) override;
  absl::StatusOr<int64_t> ForgetIdleRateLimits(absl::Time now) override;
  absl::StatusOr<std::vector<RegistrationIntent>> ClaimIntents(
      absl::Time now, size_t limit, const std::string& holder,
      absl::Duration lease) override;
  absl::StatusOr<bool> TryAcquireLease(const std::string& name,
                                       const std::string& holder,
                                       absl::Duration ttl,
                                       absl::Time now) override;
  absl::Status ReleaseLease(const std::string& name,
                            const std::string& holder) override;
  absl::StatusOr<LeaseRow> GetLease(const std::string& name) override;
  absl::StatusOr<bool> RevokeAdminCertificate(const std::string& serial,
                                              absl::Time at) override;
  absl::StatusOr<bool> AdminCertificateRevoked(
      const std::string& serial) override;
  absl::StatusOr<std::vector<std::string>> ListAdminRevocations() override;

  // Operations, in sqlite_store_ops.cc.
  absl::StatusOr<RewrapCounts> RewrapSealedKeys(const RewrapFn& rewrap,
                                                size_t batch_size) override;
  // Called with the wall time of every write (queue wait + commit); set
  // before the store is shared between threads.
  void SetWriteObserver(std::function<void(absl::Duration)> fn) {
    write_observer_ = std::move(fn);
  }

 private:
  using WriteFn = std::function<absl::Status(SqliteConnection&)>;
  struct PendingWrite;

  SqliteStore(std::string path, Clock& clock,
              std::unique_ptr<SqliteConnection> writer,
              std::unique_ptr<SqliteConnection> reader);
  // Queues `fn` for the next group commit and waits until it is durable.
  absl::Status Write(WriteFn fn);
  // The statements of RecordIssuance, inside a write (the registry outbox
  // reuses them).
  static absl::Status RecordIssuanceIn(SqliteConnection& db,
                                       const CertificateRecord& cert,
                                       const AuditEvent& event);
  // Marks pending register entries of revoked certificates "skipped".
  absl::Status SkipRevokedRegistrations(absl::Time now);
  // Whether `sql` (a SELECT) yields a row, on the reader.
  absl::StatusOr<bool> Exists(const std::string& sql);
  void WriterLoop();
  // Writes queued audit events every kAuditFlushInterval (or sooner when
  // the queue is long).
  void AuditLoop();

  // Constant after construction.
  const std::string path_;
  Clock& clock_;
  std::function<void(absl::Duration)> write_observer_;

  // Owned by the writer thread.
  std::unique_ptr<SqliteConnection> writer_;

  std::mutex read_mu_;
  std::unique_ptr<SqliteConnection> reader_;  // guarded by read_mu_

  // Readers for the hot per-request reads (bootstrap's subscriber, token
  // issuance's certificate and subscriber): one per concurrent caller,
  // opened on demand and kept, so concurrent requests do not queue behind
  // reader_'s mutex (token issuance: 118-143 us of broker CPU per token
  // instead of 130-165, docs/BENCHMARKS.md). SQLite connections are not
  // shared between threads: a lease holds one and returns it when it ends.
  class ReaderLease {
   public:
    ReaderLease(SqliteStore* store, std::unique_ptr<SqliteConnection> conn)
        : store_(store), conn_(std::move(conn)) {}
    ReaderLease(ReaderLease&&) = default;
    ~ReaderLease();
    SqliteConnection* operator->() { return conn_.get(); }

   private:
    static constexpr size_t kMaxIdleReaders = 128;
    SqliteStore* store_;
    std::unique_ptr<SqliteConnection> conn_;
  };
  absl::StatusOr<ReaderLease> LeaseReader();
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<SqliteConnection>> idle_readers_;  // pool_mu_

  // Token subjects (GetTokenSubject) remembered until the next commit.
  // Every commit to the database, by any connection of any process, bumps
  // the change counter of the WAL-index header (iChange, offset 8 of the
  // -shm file, sqlite.org/walformat.html) before COMMIT returns; an entry
  // is used only while the counter it was read under is current. So every
  // issuance still sees each revocation or suspension committed before it,
  // without a SQLite read transaction per token (docs/BENCHMARKS.md).
  // The store is always in WAL mode (SqliteConnection::Open insists, and
  // leaving it needs every other connection closed). Null wal_index_ (no
  // caching) if the WAL-index is not mapped.
  uint64_t WalChange() const;
  // Holds only subjects read under subjects_change_: emptied when the
  // counter moves, so it never outgrows the devices asking for tokens
  // between two commits (and kMaxCachedSubjects).
  static constexpr size_t kMaxCachedSubjects = 16384;
  const volatile uint32_t* wal_index_ = nullptr;  // SQLite's own mapping
  std::mutex subjects_mu_;
  uint64_t subjects_change_ = 0;                            // subjects_mu_
  std::unordered_map<std::string, TokenSubject> subjects_;  // subjects_mu_

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PendingWrite*> queue_;  // guarded by queue_mu_
  bool stopping_ = false;            // guarded by queue_mu_
  std::thread writer_thread_;

  std::mutex audit_flush_mu_;  // held across a batch's swap and write
  std::mutex audit_mu_;
  std::condition_variable audit_cv_;
  std::vector<AuditEvent> audit_queue_;  // guarded by audit_mu_
  bool audit_stopping_ = false;          // guarded by audit_mu_
  std::thread audit_thread_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_H_
