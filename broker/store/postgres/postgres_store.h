// The PostgreSQL store: several brokers on one database.
//
// Every call is one transaction on a pooled libpq connection (bounded;
// prepared statements per connection; every value a bound parameter,
// bytea binary). A commit is durable when it returns (synchronous_commit
// as the server is configured; the default is on). The SQN advance locks
// the subscriber's row (SELECT ... FOR UPDATE), so advances of one IMSI by
// any number of brokers are serialised and strictly increasing. The schema
// is migrated in one transaction holding a transaction-level advisory lock,
// so brokers starting together migrate once. A lost connection makes the
// call fail with Unavailable; the next call connects afresh.
#ifndef SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_STORE_H_
#define SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_STORE_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "broker/store/postgres/pg_conn.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

class PostgresStore : public Store {
 public:
  using ConnectOptions = pg::ConnectOptions;
  // Connects and migrates the schema. Unavailable when the server cannot
  // be reached (the caller may retry).
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const ConnectOptions& options, Clock& clock = Clock::Real());
  // Loads what Snapshot wrote into the empty database `options` names
  // (migrating it first), in one transaction. FailedPrecondition when the
  // database already holds subscribers, certificates or audit records, or
  // the snapshot is of another schema version.
  static absl::Status Restore(const ConnectOptions& options,
                              const std::string& snapshot_path,
                              Clock& clock = Clock::Real());
  ~PostgresStore() override;

  static int LatestSchemaVersion();
  absl::StatusOr<int> SchemaVersion();

  // Operations, in postgres_store_ops.cc.
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
  absl::StatusOr<std::vector<CertificateRecord>> CertificatesOf(
      const std::string& imsi) override;
  absl::StatusOr<CertificateRecord> GetCertificate(
      const std::string& serial) override;
  absl::StatusOr<std::vector<AuditEvent>> AuditOf(
      const std::string& imsi) override;

  // Fleet lifecycle, in postgres_store_fleet.cc.
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
  // Tokens: postgres_store_tokens.cc.
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
  // Registry outbox: postgres_store_registry.cc.
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

  // Operations, in postgres_store_ops.cc.
  absl::StatusOr<RewrapCounts> RewrapSealedKeys(const RewrapFn& rewrap,
                                                size_t batch_size) override;

  // Fleet counts for the gauges, in postgres_store_stats.cc.
  absl::StatusOr<FleetStats> GetFleetStats(absl::Time now) override;

  // Shared broker state, in postgres_store_shared.cc. A PostgreSQL store
  // is shared: every broker on it keeps sessions and limits here.
  bool IsShared() const override;
  absl::Status AppendAuditDurable(const AuditEvent& event) override;
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

 private:
  // Marks pending register entries of revoked certificates skipped.
  absl::Status SkipRevokedRegistrations(absl::Time now);
  using TxFn = std::function<absl::Status(pg::Connection&)>;
  PostgresStore(ConnectOptions options, Clock& clock);
  // Runs `fn` in one transaction (READ COMMITTED) and commits; retried on
  // serialization failures and deadlocks.
  absl::Status Tx(const TxFn& fn);
  // A statement outside a transaction (reads).
  absl::StatusOr<pg::Result> Read(const std::string& sql,
                                  const std::vector<pg::Arg>& args);
  static absl::Status RecordIssuanceIn(pg::Connection& db,
                                       const CertificateRecord& cert,
                                       const AuditEvent& event);
  void AuditLoop();

  Clock& clock_;
  pg::Pool pool_;

  std::mutex audit_flush_mu_;  // held across a batch's swap and write
  std::mutex audit_mu_;
  std::condition_variable audit_cv_;
  std::vector<AuditEvent> audit_queue_;  // guarded by audit_mu_
  bool audit_stopping_ = false;          // guarded by audit_mu_
  std::thread audit_thread_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_STORE_H_
