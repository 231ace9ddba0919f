// The broker's persistent state behind one interface: subscribers (with
// sealed K/OPc and the home-environment SQN), issued certificates and the
// audit trail.
//
// The embedded implementation is SQLite (sqlite_store.h); the SQL is kept
// portable so that a PostgreSQL implementation can serve several brokers on
// one database. Every write that a caller has seen succeed is durable.
// Errors: NotFound (no such subscriber), AlreadyExists, FailedPrecondition
// (state forbids it), Unavailable (retryable store trouble).
#ifndef SIMPROV_BROKER_STORE_STORE_H_
#define SIMPROV_BROKER_STORE_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/store/store_stats.h"
#include "broker/store/store_types.h"
#include "common/bytes.h"
#include "common/sqn.h"

namespace simprov {

inline constexpr char kDefaultGroup[] = "default";
inline constexpr char kStatusActive[] = "active";

struct NewSubscriber {
  std::string imsi;
  Bytes sealed_keys;  // SealBox(K || OPc, aad = IMSI)
  Bytes amf;          // 2 bytes
  HeSqnState sqn;
  std::string group = kDefaultGroup;
  std::string iccid;
  std::string msisdn;
};

struct SubscriberRecord {
  std::string imsi;
  Bytes sealed_keys;
  Bytes amf;
  HeSqnState sqn;
  uint64_t last_sqn = 0;
  std::string group;
  std::string iccid;
  std::string msisdn;
  std::string status;
  std::string device_id;  // empty until first provisioning
  absl::Time created_at;
  // Fleet: the IMEI seen last (bound under an imei_lock policy),
  // the last successful bootstrap/renewal, and the SIM that replaced this
  // one (status "replaced").
  std::string imei;
  absl::Time last_seen = absl::UnixEpoch();
  std::string replaced_by;
};

struct CertificateRecord {
  std::string serial;  // lower-case hex
  std::string imsi;
  std::string device_id;
  absl::Time not_before;
  absl::Time not_after;
  Bytes der;
  std::string status = "valid";  // "valid" or "revoked"
  absl::Time issued_at;
  // Set when revoked: the RFC 5280 reason name and the time.
  std::string revocation_reason;
  absl::Time revoked_at = absl::UnixEpoch();
  // Lineage: the certificate this one was renewed from (empty for a SIM
  // bootstrap). Revoking a certificate revokes its renewals with it.
  std::string renewed_from;
  // When a newer certificate of the same subscriber was recorded (a
  // renewal or a bootstrap); UnixEpoch while this one is the current one.
  // A superseded certificate renews and gets tokens no more, and is
  // revoked ("superseded") once its group's supersede_grace has passed.
  absl::Time superseded_at = absl::UnixEpoch();
};

// One append-only audit record (see docs/fleet.md). Never secrets.
struct AuditEvent {
  absl::Time at;
  // Who acted: an admin identity ("local" for the Unix socket, see
  // broker/admin/admin_auth.h) or the IMSI for device events.
  std::string actor;
  // Plain words: bootstrap, renew, token, revoke, suspend, resume,
  // terminate, replace, import, group-apply, ...
  std::string action;
  std::string target;  // the IMSI, device id, group or serial acted on
  std::string result;  // "ok", "refused" or "failed"
  std::string reason;  // why (refusals), or details (serials)
  int64_t id = 0;      // assigned by the store; the paging cursor
};

// A vector's worth of subscriber data, read and SQN-advanced atomically.
struct ChallengeMaterial {
  Bytes sealed_keys;
  Bytes amf;
  uint64_t sqn = 0;
  std::string status;
  std::string device_id;
  std::string group;
};

// Streams a large import into one transaction; nothing is visible until
// Commit, and destroying it uncommitted rolls everything back.
class SubscriberImport {
 public:
  virtual ~SubscriberImport() = default;
  // AlreadyExists when the IMSI is in the store or earlier in this import.
  virtual absl::Status Add(const NewSubscriber& s) = 0;
  virtual absl::StatusOr<uint64_t> Commit() = 0;
};

// A registry outbox entry (broker/registry/registry_outbox.h): one
// delivery to one registry, written with the certificate (register) or
// after a revocation (remove), retried until delivered.
struct RegistrationIntent {
  int64_t id = 0;        // assigned by the store
  std::string registry;  // the configured registry's name
  std::string kind;      // "register" or "remove"
  std::string serial;    // the certificate it is about
  std::string imsi;
  std::string device_id;
  std::string payload;  // JSON (broker/registry/registry.h DeviceRegistration)
  absl::Time created_at = absl::UnixEpoch();
  // "pending", "done", "cancelled" (sync enrolment refused) or "skipped"
  // (the certificate was revoked before it was registered).
  std::string state = "pending";
  int64_t attempts = 0;
  absl::Time next_attempt_at = absl::UnixEpoch();  // millisecond precision
  std::string last_error;                          // one line, no secrets
  std::string result;  // the adapter's JSON answer (e.g. AWS certificateId)
  absl::Time done_at = absl::UnixEpoch();
};

// For metrics: pending outbox entries and how long the oldest has waited.
struct OutboxStats {
  int64_t depth = 0;
  absl::Duration oldest_age = absl::ZeroDuration();
};

class Store {
 public:
  virtual ~Store() = default;

  virtual absl::StatusOr<std::unique_ptr<SubscriberImport>> BeginImport() = 0;
  virtual absl::StatusOr<SubscriberRecord> GetSubscriber(
      const std::string& imsi) = 0;
  // Calls `fn` for each subscriber in IMSI order (optionally of one group);
  // stops early when fn returns false.
  virtual absl::Status ListSubscribers(
      const std::string& group,
      const std::function<bool(const SubscriberRecord&)>& fn) = 0;

  // Advances the SQN (TS 33.102 Annex C) and returns what a vector needs.
  // NotFound for an unknown IMSI; takes as long as a real one (it goes
  // through the same commit), so timing does not tell them apart.
  virtual absl::StatusOr<ChallengeMaterial> AdvanceSqn(
      const std::string& imsi) = 0;
  // Resynchronises the SQN from the SIM's SQN_MS.
  virtual absl::Status ResyncSqn(const std::string& imsi, uint64_t sqn_ms) = 0;

  // Records an issued certificate, binds the device id on first issuance
  // and appends the audit event, in one transaction. Every other valid
  // certificate of the subscriber not yet superseded is superseded at
  // cert.issued_at (one current certificate per device). FailedPrecondition
  // when the subscriber is no longer active; Aborted when cert.renewed_from
  // is set and that certificate is no longer valid or was superseded (two
  // renewals of one certificate: only the first is recorded).
  virtual absl::Status RecordIssuance(const CertificateRecord& cert,
                                      const AuditEvent& event) = 0;
  virtual absl::Status AppendAudit(const AuditEvent& event) = 0;
  // Appends `event` after the queued ones and returns once it is durable
  // (it joins the group commit of concurrent writes). For the record of an
  // answer the broker must not lose in a crash: an issued token's.
  virtual absl::Status AppendAuditDurable(const AuditEvent& event) = 0;
  virtual absl::StatusOr<std::vector<CertificateRecord>> CertificatesOf(
      const std::string& imsi) = 0;
  // NotFound for a serial this broker never issued.
  virtual absl::StatusOr<CertificateRecord> GetCertificate(
      const std::string& serial) = 0;
  virtual absl::StatusOr<std::vector<AuditEvent>> AuditOf(
      const std::string& imsi) = 0;

  // ---- Fleet lifecycle: groups, lifecycle, revocation, audit.
  // AppendAudit above queues device events: they are written in batches
  // (within a second); every audit read flushes the queue first. Admin
  // actions pass their event to the mutation, which writes it in the same
  // transaction.

  // Creates or replaces every group in one transaction (all or nothing).
  virtual absl::Status PutGroups(const std::vector<GroupRow>& groups,
                                 const AuditEvent& event) = 0;
  // NotFound if there is no stored group of that name.
  virtual absl::StatusOr<GroupRow> GetGroup(const std::string& name) = 0;
  // Groups in name order after `after` (exclusive); at most `limit` (0: all).
  virtual absl::Status ListGroups(
      const std::string& after, size_t limit,
      const std::function<bool(const GroupRow&)>& fn) = 0;
  // FailedPrecondition while subscribers belong to it (the message says
  // how many); NotFound if there is no such group.
  virtual absl::Status DeleteGroup(const std::string& name,
                                   const AuditEvent& event) = 0;
  // Number of subscribers in `group`.
  virtual absl::StatusOr<uint64_t> CountSubscribersInGroup(
      const std::string& group) = 0;
  // Subscribers in IMSI order after `after` (exclusive), optionally of one
  // group and only those with a device id; at most `limit` (0: all).
  virtual absl::Status ListSubscribersPage(
      const SubscriberFilter& filter,
      const std::function<bool(const SubscriberRecord&)>& fn) = 0;
  // NotFound if no subscriber carries that device id.
  virtual absl::StatusOr<SubscriberRecord> GetSubscriberByDeviceId(
      const std::string& device_id) = 0;
  // NotFound for an unknown IMSI or group (the default group always
  // exists).
  virtual absl::Status SetSubscriberGroup(const std::string& imsi,
                                          const std::string& group,
                                          const AuditEvent& event) = 0;
  // Moves the subscriber to `to` if its status is one of `from`;
  // FailedPrecondition naming the current status otherwise. Reactivating a
  // replaced SIM (to "active") clears replaced_by and gives it the device id
  // `reactivated_device_id` (its old one moved to the new SIM).
  virtual absl::Status SetSubscriberStatus(
      const std::string& imsi, const std::vector<std::string>& from,
      const std::string& to, const std::string& reactivated_device_id,
      const AuditEvent& event) = 0;
  // Marks the named certificates revoked (those of `imsi`, or the one
  // `serial` and every certificate renewed from it, transitively); returns
  // the ones newly revoked (already revoked ones are left as they are).
  // NotFound for an unknown IMSI or serial.
  virtual absl::StatusOr<std::vector<CertificateRecord>> RevokeCertificates(
      const RevocationRequest& request, const AuditEvent& event) = 0;
  // ---- Certificate lineage.
  // The certificates renewed from `serial` (its direct renewals), any
  // status, oldest first.
  virtual absl::StatusOr<std::vector<CertificateRecord>> RenewalsOf(
      const std::string& serial) = 0;
  // Visits every valid certificate that was superseded, oldest
  // supersession first; stops early when fn returns false.
  virtual absl::Status ListSuperseded(
      const std::function<bool(const CertificateRecord&)>& fn) = 0;
  // Revokes (reason "superseded", at `at`) those of `serials` that are
  // still valid and superseded; appends `event` once per certificate
  // revoked (its target the certificate's IMSI, "serial=S" added to its
  // reason). Unlike RevokeCertificates it leaves the device's tokens alone:
  // those of its current certificate stay good, and a superseded
  // certificate got none since it was superseded. Returns the ones
  // revoked; unknown serials are skipped.
  virtual absl::StatusOr<std::vector<CertificateRecord>> RevokeSuperseded(
      const std::vector<std::string>& serials, absl::Time at,
      const AuditEvent& event) = 0;
  // Every revoked certificate that has not yet expired at `now` (serial,
  // reason, time), for the CRL.
  virtual absl::StatusOr<std::vector<CertificateRecord>> RevokedCertificates(
      absl::Time now) = 0;
  // The next CRL number (1, 2, ...), durably consumed.
  virtual absl::StatusOr<uint64_t> NextCrlNumber() = 0;
  // The new SIM inherits the old one's device id and group; the old one's
  // valid certificates are revoked (superseded) and it becomes "replaced"
  // with an empty device id. FailedPrecondition when old is not active or
  // suspended, or new is not active or already provisioned. Returns the
  // revoked certificates.
  virtual absl::StatusOr<std::vector<CertificateRecord>> ReplaceDevice(
      const std::string& old_imsi, const std::string& new_imsi, absl::Time at,
      const AuditEvent& event) = 0;
  // Records the IMEI seen with a bootstrap (binding it under imei_lock).
  // With `only_if_unbound`, FailedPrecondition if another IMEI is bound.
  virtual absl::Status SetImei(const std::string& imsi, const std::string& imei,
                               bool only_if_unbound) = 0;
  // Clears the bound IMEI (the next one seen binds).
  virtual absl::Status ClearImei(const std::string& imsi,
                                 const AuditEvent& event) = 0;
  // Audit records matching `query`, in id order.
  virtual absl::Status QueryAudit(
      const AuditQuery& query,
      const std::function<bool(const AuditEvent&)>& fn) = 0;
  // Writes queued audit events now.
  virtual absl::Status FlushAudit() = 0;
  // --- Tokens (broker/store/sqlite/sqlite_store_tokens.cc) ---
  // Applications that may introspect. AlreadyExists when the name is taken.
  virtual absl::Status CreateTokenApp(const std::string& name,
                                      const Bytes& key_hash, absl::Time at) = 0;
  // NotFound for an unknown application.
  virtual absl::StatusOr<Bytes> TokenAppKeyHash(const std::string& name) = 0;
  virtual absl::Status RevokeTokenId(const std::string& jti, absl::Time at) = 0;
  // Revokes every token of the device issued at or before `at`. NotFound
  // for an unknown IMSI.
  virtual absl::Status RevokeDeviceTokens(const std::string& imsi,
                                          absl::Time at) = 0;
  // Whether token `jti` of `imsi`, issued at `iat`, was revoked.
  virtual absl::StatusOr<bool> TokenRevoked(const std::string& jti,
                                            const std::string& imsi,
                                            absl::Time iat) = 0;
  // Forgets jti revocations made before `before` (their tokens expired).
  virtual absl::Status PruneTokenRevocations(absl::Time before) = 0;
  // What token issuance re-checks, in one read: the certificate's status
  // and its subscriber. NotFound for an unknown serial.
  struct TokenSubject {
    std::string cert_status;
    bool superseded = false;  // the certificate's superseded_at is set
    std::string imsi, device_id, group, iccid, imei;
    std::string status;  // the subscriber's
    std::string serial;  // the certificate's
  };
  virtual absl::StatusOr<TokenSubject> GetTokenSubject(
      const std::string& serial) = 0;
  // The same for the certificate whose DER has SHA-256 `cert_sha256` (the
  // certificate a token's cnf x5t#S256 names), read afresh. NotFound when
  // this broker issued no such certificate.
  virtual absl::StatusOr<TokenSubject> GetTokenSubjectByCertHash(
      const Bytes& cert_sha256) = 0;

  // --- Registry outbox (broker/store/sqlite/sqlite_store_registry.cc) ---
  // RecordIssuance plus `intents`, all in the one transaction. An intent
  // whose (registry, kind, serial) is already queued is left out.
  virtual absl::Status RecordIssuanceWithIntents(
      const CertificateRecord& cert, const AuditEvent& event,
      const std::vector<RegistrationIntent>& intents) = 0;
  // Pending entries due at `now` (next_attempt_at <= now), oldest first, at
  // most `limit`. A register entry whose certificate was revoked meanwhile
  // is marked "skipped" instead of returned.
  virtual absl::StatusOr<std::vector<RegistrationIntent>> DueIntents(
      absl::Time now, size_t limit) = 0;
  // Marks a pending entry done (or "cancelled"/"skipped") with `result`,
  // counting the attempt. An entry no longer pending is left as it is.
  virtual absl::Status FinishIntent(int64_t id, const std::string& state,
                                    const std::string& result,
                                    absl::Time at) = 0;
  // Records a failed attempt (the error's first 512 bytes) and when to try
  // again. An entry no longer pending is left as it is.
  virtual absl::Status DeferIntent(int64_t id, const std::string& error,
                                   absl::Time next_attempt_at) = 0;
  // Every entry of a certificate, any state, in id order.
  virtual absl::StatusOr<std::vector<RegistrationIntent>> IntentsOf(
      const std::string& serial) = 0;
  // Pending entries in id order after `after_id`; at most `limit` (0: all).
  virtual absl::Status ListPendingIntents(
      int64_t after_id, size_t limit,
      const std::function<bool(const RegistrationIntent&)>& fn) = 0;
  // Adds a "remove" entry for every delivered registration whose
  // certificate is revoked or whose subscriber is terminated and that has
  // none yet (idempotent). Returns how many were added.
  virtual absl::StatusOr<int64_t> EnqueueRemovals(absl::Time now) = 0;
  virtual absl::StatusOr<OutboxStats> GetOutboxStats(absl::Time now) = 0;
  // Certificates by status and time to expiry, subscribers by status, at
  // `now` (store_stats.h). Reads every certificate: for a cache refreshed
  // on a timer, not for every scrape.
  virtual absl::StatusOr<FleetStats> GetFleetStats(absl::Time now) = 0;
  // Queues registrations again (a group's policy changed). Each entry is a
  // register intent (registry, serial, imsi, device_id, payload,
  // created_at, next_attempt_at): when the certificate has no entry for that
  // registry yet it is inserted; when its register entry is still pending
  // only that entry's payload is replaced; otherwise its "update" entry
  // (kind "update", delivered like a register) is inserted or made pending
  // again with this payload, no attempts and no error. Entries of revoked
  // certificates are left out. One transaction; returns how many were
  // queued.
  virtual absl::StatusOr<int64_t> RequeueRegistrations(
      const std::vector<RegistrationIntent>& intents) = 0;

  // ---- Operations: health and backup.
  // OK when the store answers a read now (the broker's /readyz).
  virtual absl::Status Ping() = 0;
  // Writes a consistent copy of the whole store to `path` while the store
  // keeps serving: a self-contained store of this backend's kind (for
  // SQLite, a database file without a WAL) that holds every write returned
  // before the call, queued audit events included. AlreadyExists, touching
  // nothing, when `path` exists.
  virtual absl::Status Snapshot(const std::string& path) = 0;

  // ---- Operations: KEK rotation (broker/keys/kek_rotation.h).
  // Visits every subscriber's sealed keys in IMSI order, `batch_size` rows
  // per transaction; `rewrap` returns the new box or nullopt to keep the
  // row. Stops at the first error (earlier batches stay committed). When
  // it returns OK, no replaced box is left anywhere in the backend's files
  // (free space, journals); otherwise it fails and a rerun finishes.
  using RewrapFn = std::function<absl::StatusOr<std::optional<Bytes>>(
      const std::string& imsi, const Bytes& sealed)>;
  struct RewrapCounts {
    uint64_t rows = 0;
    uint64_t rewrapped = 0;
  };
  virtual absl::StatusOr<RewrapCounts> RewrapSealedKeys(const RewrapFn& rewrap,
                                                        size_t batch_size) = 0;

  // ---- Shared broker state: what several brokers on one database share
  // beyond the records above (sqlite_store_shared.cc). Times are passed in
  // (each broker's clock) and kept to the millisecond. Each method is one
  // atomic statement or transaction: concurrent callers on any broker see
  // it happen entirely or not at all.

  // Whether several brokers may use this store at once (a database
  // server). A broker keeps its challenge sessions and rate limits in the
  // store when it is (broker/enrol/session_table.h), in memory otherwise.
  virtual bool IsShared() const { return false; }

  // Challenge sessions. Stores `s` and, in the same transaction, deletes
  // the oldest sessions of its IMSI so that at most caps.per_imsi are open
  // (counting `s`), then the oldest of anybody so that at most caps.total
  // are. "Oldest" is insertion order. AlreadyExists for a duplicate id.
  virtual absl::Status PutSession(const StoredSession& s,
                                  const SessionCaps& caps) = 0;
  // Deletes the session with this id and returns it, whatever its age:
  // single-use, so of concurrent calls for one id (on any brokers) exactly
  // one gets it. NotFound when there is none.
  virtual absl::StatusOr<StoredSession> TakeSession(const Bytes& id) = 0;
  // The same for the open session of `imsi` whose RAND is `rand` (the
  // RAND is public, so it is compared as plain data). NotFound when none.
  virtual absl::StatusOr<StoredSession> TakeSessionByRand(
      const std::string& imsi, const Bytes& rand) = 0;
  // Deletes sessions created before `before`; returns how many.
  virtual absl::StatusOr<int64_t> ExpireSessions(absl::Time before) = 0;
  // Open sessions (all, or of one IMSI when `imsi` is not empty).
  virtual absl::StatusOr<int64_t> CountSessions(const std::string& imsi) = 0;

  // Rate limits: a token bucket per key (e.g. an IMSI) holding `burst`
  // tokens, one more every `refill`, kept as its theoretical arrival time
  // (GCRA, equivalent to the bucket). Spends one token if there is one at
  // `now` and returns true, else false and changes nothing. One atomic
  // statement, so concurrent callers on any brokers never spend one token
  // twice; exact up to the skew between the callers' clocks.
  virtual absl::StatusOr<bool> TakeRateToken(const std::string& key, int burst,
                                             absl::Duration refill,
                                             absl::Time now) = 0;
  // Forgets buckets that are full at `now` (idle keys); returns how many.
  virtual absl::StatusOr<int64_t> ForgetIdleRateLimits(absl::Time now) = 0;

  // Registry outbox leases. Like DueIntents (revoked certificates' register
  // entries skipped first), but claims what it returns: each entry pending,
  // due at `now` and not leased to anybody until after `now` gets the lease
  // (holder, now + lease) in the same atomic statement, so one entry is
  // handed to one holder at a time. Oldest due first, at most `limit`. A
  // holder that dies keeps its entries until the lease expires; then any
  // holder claims them. FinishIntent and DeferIntent end the lease.
  virtual absl::StatusOr<std::vector<RegistrationIntent>> ClaimIntents(
      absl::Time now, size_t limit, const std::string& holder,
      absl::Duration lease) = 0;

  // Named leases for work done once per cluster (the broker's periodic
  // jobs). Takes or renews lease `name` for `holder` until now + ttl when
  // it is free, expired at `now`, or already `holder`'s; returns whether
  // `holder` holds it now. Atomic: of concurrent callers with different
  // holders on a free lease exactly one gets it.
  virtual absl::StatusOr<bool> TryAcquireLease(const std::string& name,
                                               const std::string& holder,
                                               absl::Duration ttl,
                                               absl::Time now) = 0;
  // Gives the lease up if `holder` holds it (else changes nothing).
  virtual absl::Status ReleaseLease(const std::string& name,
                                    const std::string& holder) = 0;
  // The lease as stored (holder and expiry); NotFound if never taken or
  // released.
  virtual absl::StatusOr<LeaseRow> GetLease(const std::string& name) = 0;

  // Admin-certificate revocations (broker/admin/admin_auth.h): serials in
  // lower-case hex. Adds `serial`; returns false if it was revoked already.
  virtual absl::StatusOr<bool> RevokeAdminCertificate(const std::string& serial,
                                                      absl::Time at) = 0;
  // Whether `serial` is a revoked admin certificate.
  virtual absl::StatusOr<bool> AdminCertificateRevoked(
      const std::string& serial) = 0;
  // Every revoked admin certificate serial, in order.
  virtual absl::StatusOr<std::vector<std::string>> ListAdminRevocations() = 0;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_STORE_H_
