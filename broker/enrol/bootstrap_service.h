// The device API: AKA challenge and enrolment (proto/simprov/v1/bootstrap).
//
// What holds (see docs/security.md): unknown and inactive IMSIs get decoy
// challenges; challenges are rate-limited per IMSI; a session is used up by
// the first Enrol whatever its outcome and expires after session_ttl; RES
// and MAC are compared in constant time; the certificate's names come from
// policy, never from the CSR; the answer is sealed under keys derived from
// CK||IK and bound to the request. Nothing secret is logged.
#ifndef SIMPROV_BROKER_ENROL_BOOTSTRAP_SERVICE_H_
#define SIMPROV_BROKER_ENROL_BOOTSTRAP_SERVICE_H_

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "broker/ca/ca.h"
#include "broker/ca/crl_publisher.h"
#include "broker/enrol/issuance_hooks.h"
#include "broker/enrol/renew_nonce.h"
#include "broker/enrol/session_table.h"
#include "broker/keys/kek_rotation.h"
#include "broker/ops/broker_metrics.h"
#include "broker/policy/group_policies.h"
#include "broker/store/store.h"
#include "common/clock.h"
#include "simprov/v1/bootstrap.grpc.pb.h"

namespace simprov {

struct BootstrapOptions {
  // The names the broker answers to: its listen host and every
  // --public-name. An agent's broker identity must be one of them.
  std::set<std::string> names;
  absl::Duration session_ttl = absl::Seconds(60);
  absl::Duration cert_ttl = absl::Hours(24 * 30);
  int rate_burst = 10;
  absl::Duration rate_refill = absl::Seconds(2);
  size_t max_sessions_per_imsi = 4;
  size_t max_sessions = 1 << 20;
  // Challenge sessions and per-IMSI rate limits in the store
  // (StoreSessionTable, StoreRateLimiter) instead of in memory, so that any
  // broker on a shared store can complete a challenge another answered.
  // Also on when the store says it is shared (Store::IsShared).
  bool shared_state = false;
  // Fleet lifecycle; not owned, may be null. Without policies
  // every group gets ImplicitPolicy (CN=IMSI, cert_ttl); without a CRL
  // publisher (or with an empty URL) certificates carry no CRL
  // Distribution Points.
  GroupPolicies* policies = nullptr;
  const CrlPublisher* crl = nullptr;
  // Registries and the issue hook; not owned, may be null.
  IssuanceHooks* issuance = nullptr;
  // Operations; not owned, may be null.
  BrokerMetrics* metrics = nullptr;
};

// The largest CSR an Enrol or Renew carries (DER bytes).
inline constexpr size_t kMaxCsrSize = 16 * 1024;

// How long a renewal whose answer was lost may be asked again with the
// certificate it superseded (docs/fleet.md, "Lineage").
inline constexpr absl::Duration kRenewalRetryWindow = absl::Minutes(10);

// Stateless apart from the session table and rate limiter (in memory, or
// in the store when shared); thread-safe.
class Bootstrapper {
 public:
  Bootstrapper(BootstrapOptions options, Store& store, CertificateAuthority& ca,
               Bytes kek, Clock& clock, Random& random);
  // With a KEK ring that a rotation may switch (broker/keys/kek_rotation.h).
  Bootstrapper(BootstrapOptions options, Store& store, CertificateAuthority& ca,
               KekRing& kek, Clock& clock, Random& random);

  absl::StatusOr<v1::ChallengeResponse> Challenge(
      const v1::ChallengeRequest& req);
  absl::StatusOr<v1::EnrolResponse> Enrol(const v1::EnrolRequest& req);
  // The same AKA check as Enrol; answers with the server's time only.
  absl::StatusOr<v1::EnrolResponse> Time(const v1::EnrolRequest& req);
  // `client_cert_pem`: the TLS peer's leaf certificate, empty if none;
  // without one, the request's in-band proof (renew_nonce.h) stands for it.
  absl::StatusOr<v1::RenewResponse> Renew(const std::string& client_cert_pem,
                                          const v1::RenewRequest& req);
  v1::RenewNonceResponse RenewNonce();
  // Drops expired sessions and idle rate-limit buckets; call periodically.
  void Sweep();

  static std::string DeviceIdUri(const std::string& device_id);

 private:
  absl::StatusOr<v1::ChallengeResponse> NewChallenge(const std::string& imsi);
  absl::Status Resynchronise(const std::string& imsi, const Bytes& rand,
                             const Bytes& auts);
  absl::StatusOr<v1::EnrolResponse> Finish(const v1::EnrolRequest& req,
                                           bool time_only);
  // Audits a refused device `action` ("bootstrap", "renew", "time").
  absl::Status Refuse(absl::string_view action, const std::string& imsi,
                      absl::Status status, absl::string_view reason);
  // The IMEI lock of `policy`: binds the first IMEI, refuses others.
  absl::Status CheckImei(const SubscriberRecord& sub, const GroupPolicy& policy,
                         const std::string& imei);
  // Verifies the CSR, applies the subscriber's group policy (subject, SANs,
  // lifetime, key types), signs, and records the certificate durably (a
  // renewal with the certificate it was renewed from, which must still be
  // current when it is recorded).
  absl::StatusOr<CertificateRecord> Issue(
      const SubscriberRecord& sub, const std::string& device_id,
      const std::string& imei, const Bytes& csr_der, absl::string_view action,
      absl::string_view detail, const std::string& renewed_from = "");
  // A renewal presented with a superseded certificate: the renewal already
  // made from it if this is the same request retried (within
  // kRenewalRetryWindow, same CSR public key), else PERMISSION_DENIED
  // "superseded", audited and counted as a suspected clone.
  absl::StatusOr<CertificateRecord> RenewSuperseded(
      const CertificateRecord& presented, const Bytes& csr_der);
  absl::Status RefuseSuperseded(const std::string& imsi,
                                const std::string& serial);
  // Renew once the caller's certificate is known to be its own.
  absl::StatusOr<v1::RenewResponse> RenewWithCertificate(
      const std::string& client_cert_pem, const v1::RenewRequest& req);

  const BootstrapOptions options_;
  Store& store_;
  CertificateAuthority& ca_;
  std::unique_ptr<KekRing> owned_kek_;  // set by the Bytes constructor
  KekRing& kek_;
  Clock& clock_;
  Random& random_;
  const bool shared_;
  std::unique_ptr<SessionTable> sessions_;
  RateLimiter limiter_;              // when !shared_
  StoreRateLimiter shared_limiter_;  // when shared_
  RenewNonces nonces_;
};

class BootstrapGrpcService final : public v1::Bootstrap::Service {
 public:
  explicit BootstrapGrpcService(Bootstrapper& b) : b_(b) {}
  grpc::Status Challenge(grpc::ServerContext*, const v1::ChallengeRequest* req,
                         v1::ChallengeResponse* resp) override;
  grpc::Status Enrol(grpc::ServerContext*, const v1::EnrolRequest* req,
                     v1::EnrolResponse* resp) override;
  grpc::Status Renew(grpc::ServerContext* ctx, const v1::RenewRequest* req,
                     v1::RenewResponse* resp) override;
  grpc::Status Time(grpc::ServerContext*, const v1::EnrolRequest* req,
                    v1::EnrolResponse* resp) override;
  grpc::Status RenewNonce(grpc::ServerContext*, const v1::RenewNonceRequest*,
                          v1::RenewNonceResponse* resp) override;

 private:
  Bootstrapper& b_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_ENROL_BOOTSTRAP_SERVICE_H_
