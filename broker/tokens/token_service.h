// Device tokens (docs/tokens.md): issuance over the device API
// (authenticated by the device certificate over mutual TLS), the admin
// side (applications, revocation) and what the HTTP endpoints answer
// (JWKS, discovery, RFC 7662 introspection).
//
// What holds: every issuance re-checks the certificate (chain, 'valid' in
// the store) and the subscriber ('active'); lifetimes are capped; audiences
// are checked against --token-audiences and the per-group policy, scopes
// against the group's token.scopes (CheckPolicy); each token is bound to
// the device certificate (cnf x5t#S256) and audited. Introspection
// authenticates the application by its key (only a SHA-256 hash is
// stored; compared in constant time) and reports a token active only if
// it verifies, names that application in aud, the certificate its cnf
// names is one this broker issued and still valid (not revoked), that
// certificate's subscriber is active, and the token is not revoked (by
// jti, or every token of that certificate's SIM).
#ifndef SIMPROV_BROKER_TOKENS_TOKEN_SERVICE_H_
#define SIMPROV_BROKER_TOKENS_TOKEN_SERVICE_H_

#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/admin/admin_auth.h"
#include "broker/ca/ca.h"
#include "broker/ops/broker_metrics.h"
#include "broker/policy/group_policies.h"
#include "broker/store/store.h"
#include "broker/tokens/token_keys.h"
#include "common/clock.h"
#include "common/token/token_verifier.h"
#include "simprov/v1/token.grpc.pb.h"

namespace simprov {

struct TokenOptions {
  std::string issuer;               // may be set later with SetIssuer
  std::set<std::string> audiences;  // --token-audiences; empty: any
  absl::Duration default_ttl = absl::Minutes(10);
  absl::Duration max_ttl = absl::Hours(1);
  absl::Duration leeway = absl::Seconds(30);  // for introspection
  // Per-group token policy (docs/fleet.md `token`); null: none.
  GroupPolicies* policies = nullptr;
  BrokerMetrics* metrics = nullptr;  // not owned, may be null
};

// The claims of one device token.
struct TokenClaims {
  std::string iss, sub, jti, group;
  // RFC 9068's client_id: the OAuth client the token was issued to, which
  // for a device token is the device itself (its device id, as sub).
  std::string client_id;
  std::vector<std::string> aud;  // one: a string claim; more: an array
  int64_t iat = 0, nbf = 0, exp = 0;
  std::string cnf_x5t_s256;  // RFC 8705 certificate thumbprint
  std::string scope;         // space-separated; empty: no claim
  // Identifiers; empty: no claim.
  std::string imsi, iccid, imei;
};

// The claims as compact JSON, members in name order (what nlohmann::json
// writes for the same object; token_service_test compares the two).
// Strings are escaped as JSON requires; they are expected to be UTF-8.
std::string TokenClaimsJson(const TokenClaims& c);

class TokenService {
 public:
  TokenService(TokenOptions options, Store& store, CertificateAuthority& ca,
               TokenKeyManager& keys, Clock& clock, Random& random);

  void SetIssuer(const std::string& issuer);
  std::string issuer() const;
  BrokerMetrics* metrics() const { return options_.metrics; }

  // `client_cert_pem`: the TLS peer's leaf certificate, empty if none.
  absl::StatusOr<v1::IssueTokenResponse> Issue(
      const std::string& client_cert_pem, const v1::IssueTokenRequest& req);

  // What a device of `sub`'s group may get: --token-audiences and the
  // group's token policy both restrict audiences (PERMISSION_DENIED naming
  // the audience); every scope must be in the group's token.scopes (none
  // by default; PERMISSION_DENIED naming the scope and the group); the
  // group's max_ttl lowers `*ttl`; `*identifiers` is set to the identifier
  // claims to include (imsi, iccid, imei).
  absl::Status CheckPolicy(const Store::TokenSubject& sub,
                           const std::vector<std::string>& audiences,
                           const std::vector<std::string>& scopes,
                           absl::Duration* ttl,
                           std::vector<std::string>* identifiers) const;

  // `actor`: who asks, for the audit trail (Authorize()).
  absl::StatusOr<v1::CreateAppResponse> CreateApp(const std::string& name,
                                                  const std::string& actor);
  absl::Status RevokeToken(const std::string& jti, const std::string& actor);
  absl::Status RevokeDevice(const std::string& imsi, const std::string& actor);

  // RFC 7662: the JSON answer for `token`, for the application that
  // authenticated with `authorization` (an HTTP Authorization header,
  // Basic NAME:KEY). Unauthenticated when the application is not known.
  absl::StatusOr<std::string> Introspect(const std::string& authorization,
                                         const std::string& token);

  std::string JwksJson() { return keys_.JwksJson(); }
  absl::Duration jwks_max_age() const { return keys_.jwks_max_age(); }
  // RFC 8414 authorization server metadata (issuer, jwks_uri,
  // introspection endpoint, signing algorithms).
  std::string DiscoveryJson() const;

  // Key rotation and pruning of old revocations; call periodically.
  void Sweep();

 private:
  // Durable before it returns (Store::AppendAuditDurable): an answered
  // token always has its record, crash or not. Failures are logged and
  // returned.
  absl::Status Audit(const std::string& actor, const std::string& action,
                     const std::string& target, const std::string& reason);
  // A certificate whose chain verified: its serial, expiry and cnf
  // thumbprint. Chain verification (two ECDSA verifies) is remembered per
  // certificate until it expires; its status is read from the store at
  // every issuance.
  struct VerifiedCert {
    std::string serial;
    absl::Time not_after;
    std::string thumbprint;
  };
  absl::StatusOr<VerifiedCert> VerifyClientCert(const std::string& pem,
                                                absl::Time now);
  // The certificate a verified token is bound to (cnf x5t#S256), with its
  // subscriber; nullopt when this broker issued no such certificate or the
  // token's imsi claim names another SIM.
  absl::StatusOr<std::optional<Store::TokenSubject>> BoundSubject(
      const VerifiedToken& token);

  const TokenOptions options_;
  Store& store_;
  CertificateAuthority& ca_;
  TokenKeyManager& keys_;
  Clock& clock_;
  Random& random_;
  BufferedRandom jti_random_;  // token ids, drawn from random_ in chunks
  mutable std::mutex mu_;
  std::string issuer_;                                      // guarded by mu_
  std::unordered_map<std::string, VerifiedCert> verified_;  // guarded by mu_
};

// Device port.
class TokenGrpcService final : public v1::Tokens::Service {
 public:
  explicit TokenGrpcService(TokenService& s) : s_(s) {}
  grpc::Status IssueToken(grpc::ServerContext* ctx,
                          const v1::IssueTokenRequest* req,
                          v1::IssueTokenResponse* resp) override;
  grpc::Status Ping(grpc::ServerContext*, const v1::PingRequest*,
                    v1::PingResponse*) override {
    return grpc::Status::OK;
  }

 private:
  TokenService& s_;
};

// Admin socket.
class TokenAdminGrpcService final : public v1::TokenAdmin::Service {
 public:
  TokenAdminGrpcService(const AdminAuthorizer& auth, TokenService& s)
      : auth_(auth), s_(s) {}
  grpc::Status CreateApp(grpc::ServerContext*, const v1::CreateAppRequest* req,
                         v1::CreateAppResponse* resp) override;
  grpc::Status RevokeToken(grpc::ServerContext*,
                           const v1::RevokeTokenRequest* req,
                           v1::RevokeTokenResponse* resp) override;
  grpc::Status RevokeDeviceTokens(grpc::ServerContext*,
                                  const v1::RevokeDeviceTokensRequest* req,
                                  v1::RevokeTokenResponse* resp) override;

 private:
  const AdminAuthorizer& auth_;
  TokenService& s_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_TOKENS_TOKEN_SERVICE_H_
