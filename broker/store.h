// The broker's persistent state behind one interface: subscribers (with
// sealed K/OPc and the home-environment SQN), issued certificates and the
// audit trail.
//
// The embedded implementation is SQLite (sqlite_store.h); the SQL is kept
// portable so that a PostgreSQL implementation can serve several brokers on
// one database. Every write that a caller has seen succeed is durable.
// Errors: NotFound (no such subscriber), AlreadyExists, FailedPrecondition
// (state forbids it), Unavailable (retryable store trouble).
#ifndef SIMPROV_BROKER_STORE_H_
#define SIMPROV_BROKER_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
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
};

struct CertificateRecord {
  std::string serial;  // lower-case hex
  std::string imsi;
  std::string device_id;
  absl::Time not_before;
  absl::Time not_after;
  Bytes der;
  std::string status = "valid";
  absl::Time issued_at;
};

struct AuditEvent {
  absl::Time at;
  std::string event;  // e.g. "bootstrap.issued", "bootstrap.refused"
  std::string imsi;
  std::string detail;  // never secrets
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
  // and appends the audit event, in one transaction. FailedPrecondition
  // when the subscriber is no longer active.
  virtual absl::Status RecordIssuance(const CertificateRecord& cert,
                                      const AuditEvent& event) = 0;
  virtual absl::Status AppendAudit(const AuditEvent& event) = 0;
  virtual absl::StatusOr<std::vector<CertificateRecord>> CertificatesOf(
      const std::string& imsi) = 0;
  // NotFound for a serial this broker never issued.
  virtual absl::StatusOr<CertificateRecord> GetCertificate(
      const std::string& serial) = 0;
  virtual absl::StatusOr<std::vector<AuditEvent>> AuditOf(
      const std::string& imsi) = 0;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_H_
