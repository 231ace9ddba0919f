#include "broker/tokens/token_service.h"

#include <grpc/grpc_security_constants.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "broker/admin/admin_auth.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/imsi.h"
#include "common/log.h"
#include "common/token/jose.h"
#include "common/token/token_verifier.h"
#include "common/x509.h"

namespace simprov {
namespace {

constexpr size_t kMaxAudiences = 8;
constexpr size_t kMaxScopes = 16;
constexpr size_t kMaxNameLength = 128;
constexpr size_t kMaxJtiLength = 64;
constexpr absl::Duration kMinTtl = absl::Seconds(10);

// Printable ASCII without spaces or quotes: safe in claims and audit lines.
bool IsPlainToken(absl::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

bool IsAppName(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

Bytes KeyHash(std::string_view key) { return Sha256(ToBytes(key)); }

// Standard base64 (HTTP Basic), strict; empty on error.
std::string DecodeBase64(absl::string_view in) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > 1024) return "";
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return "";
  size_t len = static_cast<size_t>(n);
  if (absl::EndsWith(in, "==")) {
    len -= 2;
  } else if (absl::EndsWith(in, "=")) {
    len -= 1;
  }
  out.resize(len);
  return out;
}

// RFC 6749 section 2.3.1: OAuth clients form-urlencode the client id and
// secret before HTTP Basic ('-' as %2D, ' ' as '+'). Names and keys never
// hold '%' or '+', so what curl -u sends decodes to itself. False on a bad
// escape.
bool FormUrlDecode(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out->push_back(' ');
    } else if (in[i] != '%') {
      out->push_back(in[i]);
    } else {
      int v = 0;
      if (i + 2 >= in.size()) return false;
      for (size_t k = i + 1; k <= i + 2; ++k) {
        const char c = in[k];
        const int d = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                             : -1;
        if (d < 0) return false;
        v = v * 16 + d;
      }
      out->push_back(static_cast<char>(v));
      i += 2;
    }
  }
  return true;
}

void AppendJsonString(std::string* out, absl::string_view v) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

// Appends `"name":` and the string value, with a leading comma unless first.
void AppendMember(std::string* out, absl::string_view name,
                  absl::string_view value) {
  if (out->size() > 1) out->push_back(',');
  AppendJsonString(out, name);
  out->push_back(':');
  AppendJsonString(out, value);
}

void AppendMember(std::string* out, absl::string_view name, int64_t value) {
  if (out->size() > 1) out->push_back(',');
  AppendJsonString(out, name);
  absl::StrAppend(out, ":", value);
}

}  // namespace

std::string TokenClaimsJson(const TokenClaims& c) {
  std::string out = "{";
  out.reserve(512);
  // Member names in byte order, as std::map keeps them.
  if (c.aud.size() == 1) {
    AppendMember(&out, "aud", c.aud[0]);
  } else {
    out.append("\"aud\":[");  // the first member
    for (size_t i = 0; i < c.aud.size(); ++i) {
      if (i > 0) out.push_back(',');
      AppendJsonString(&out, c.aud[i]);
    }
    out.push_back(']');
  }
  AppendMember(&out, "client_id", c.client_id);
  out.append(",\"cnf\":{");
  AppendJsonString(&out, "x5t#S256");
  out.push_back(':');
  AppendJsonString(&out, c.cnf_x5t_s256);
  out.push_back('}');
  AppendMember(&out, "exp", c.exp);
  AppendMember(&out, "group", c.group);
  AppendMember(&out, "iat", c.iat);
  if (!c.iccid.empty()) AppendMember(&out, "iccid", c.iccid);
  if (!c.imei.empty()) AppendMember(&out, "imei", c.imei);
  if (!c.imsi.empty()) AppendMember(&out, "imsi", c.imsi);
  AppendMember(&out, "iss", c.iss);
  AppendMember(&out, "jti", c.jti);
  AppendMember(&out, "nbf", c.nbf);
  if (!c.scope.empty()) AppendMember(&out, "scope", c.scope);
  AppendMember(&out, "sub", c.sub);
  out.push_back('}');
  return out;
}

TokenService::TokenService(TokenOptions options, Store& store,
                           CertificateAuthority& ca, TokenKeyManager& keys,
                           Clock& clock, Random& random)
    : options_(std::move(options)),
      store_(store),
      ca_(ca),
      keys_(keys),
      clock_(clock),
      random_(random),
      jti_random_(random),
      issuer_(options_.issuer) {}

void TokenService::SetIssuer(const std::string& issuer) {
  std::lock_guard<std::mutex> lock(mu_);
  issuer_ = issuer;
}

std::string TokenService::issuer() const {
  std::lock_guard<std::mutex> lock(mu_);
  return issuer_;
}

absl::Status TokenService::Audit(const std::string& actor,
                                 const std::string& action,
                                 const std::string& target,
                                 const std::string& reason) {
  absl::Status s = store_.AppendAuditDurable(
      {clock_.Now(), actor, action, target, "ok", reason});
  if (!s.ok()) LogError("audit %s: %s", action, s.message());
  return s;
}

absl::StatusOr<TokenService::VerifiedCert> TokenService::VerifyClientCert(
    const std::string& pem, absl::Time now) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = verified_.find(pem);
    if (it != verified_.end() && now < it->second.not_after) return it->second;
  }
  auto leaf = CertFromPem(pem);
  if (!leaf.ok()) {
    return absl::UnauthenticatedError("client certificate does not parse");
  }
  absl::Status chain = ca_.VerifyIssued(leaf->get(), now, "sslclient");
  CertInfo info = DescribeCert(leaf->get());
  if (!chain.ok()) {
    return absl::UnauthenticatedError(
        now >= info.not_after
            ? "certificate has expired: bootstrap again with the SIM"
            : absl::StrCat("client certificate not issued by this broker: ",
                           chain.message()));
  }
  VerifiedCert v;
  v.serial = info.serial_hex;
  v.not_after = info.not_after;
  v.thumbprint = jose::CertThumbprintS256(jose::CertificateDer(pem));
  std::lock_guard<std::mutex> lock(mu_);
  if (verified_.size() >= 100000) verified_.clear();  // bounded
  verified_[pem] = v;
  return v;
}

absl::Status TokenService::CheckPolicy(
    const Store::TokenSubject& sub, const std::vector<std::string>& audiences,
    const std::vector<std::string>& scopes, absl::Duration* ttl,
    std::vector<std::string>* identifiers) const {
  if (!options_.audiences.empty()) {
    for (const std::string& a : audiences) {
      if (!options_.audiences.contains(a)) {
        return absl::PermissionDeniedError(
            absl::StrCat("audience ", a, " is not allowed on this broker"));
      }
    }
  }
  *identifiers = {"imsi", "iccid", "imei"};
  // No policies: every group has the implicit one (no scope allowed).
  const TokenPolicy no_policy;
  const TokenPolicy* tpp = &no_policy;
  std::shared_ptr<const GroupPolicy> policy;
  if (options_.policies != nullptr) {
    auto got = options_.policies->Get(sub.group);
    if (!got.ok()) return absl::UnavailableError(got.status().message());
    policy = *got;
    tpp = &policy->token;
  }
  const TokenPolicy& tp = *tpp;
  // A device asks for scopes; only the group's policy grants them.
  for (const std::string& s : scopes) {
    if (std::find(tp.scopes.begin(), tp.scopes.end(), s) == tp.scopes.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat("scope ", s, " is not allowed for group ", sub.group));
    }
  }
  if (!tp.audiences.empty()) {
    for (const std::string& a : audiences) {
      if (std::find(tp.audiences.begin(), tp.audiences.end(), a) ==
          tp.audiences.end()) {
        return absl::PermissionDeniedError(absl::StrCat(
            "audience ", a, " is not allowed for group ", sub.group));
      }
    }
  }
  if (tp.max_ttl.has_value()) *ttl = std::min(*ttl, *tp.max_ttl);
  if (tp.identifiers.has_value()) *identifiers = *tp.identifiers;
  return absl::OkStatus();
}

absl::StatusOr<v1::IssueTokenResponse> TokenService::Issue(
    const std::string& client_cert_pem, const v1::IssueTokenRequest& req) {
  if (client_cert_pem.empty()) {
    return absl::UnauthenticatedError(
        "no client certificate: tokens need the device certificate over "
        "mutual TLS");
  }
  const std::string iss = issuer();
  if (iss.empty()) {
    return absl::FailedPreconditionError(
        "token issuance needs --http-listen (for the JWKS) or --token-issuer");
  }
  // The request first: cheap, and nothing is looked up for a bad one.
  if (req.audience_size() == 0 ||
      static_cast<size_t>(req.audience_size()) > kMaxAudiences) {
    return absl::InvalidArgumentError("need 1 to 8 audiences");
  }
  std::vector<std::string> audiences(req.audience().begin(),
                                     req.audience().end());
  for (const std::string& a : audiences) {
    if (!IsPlainToken(a, kMaxNameLength)) {
      return absl::InvalidArgumentError(
          "an audience is empty, too long or holds spaces or quotes");
    }
  }
  if (static_cast<size_t>(req.scope_size()) > kMaxScopes) {
    return absl::InvalidArgumentError("at most 16 scopes");
  }
  std::vector<std::string> scopes(req.scope().begin(), req.scope().end());
  for (const std::string& s : scopes) {
    if (!IsPlainToken(s, kMaxNameLength)) {
      return absl::InvalidArgumentError(
          "a scope is empty, too long or holds spaces or quotes");
    }
  }
  if (req.ttl_seconds() < 0) {
    return absl::InvalidArgumentError("ttl must not be negative");
  }
  absl::Duration ttl = req.ttl_seconds() == 0
                           ? options_.default_ttl
                           : absl::Seconds(req.ttl_seconds());
  if (ttl < kMinTtl) {
    return absl::InvalidArgumentError("ttl must be at least 10s");
  }
  ttl = std::min(ttl, options_.max_ttl);

  // The certificate, as for renewal.
  const absl::Time now = clock_.Now();
  auto cert = VerifyClientCert(client_cert_pem, now);
  if (!cert.ok()) return cert.status();
  // Revocation and subscriber status, re-read at every issuance.
  auto subject = store_.GetTokenSubject(cert->serial);
  if (!subject.ok()) {
    if (subject.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError("certificate unknown to this broker");
    }
    return absl::UnavailableError(subject.status().message());
  }
  if (subject->cert_status != "valid" || subject->superseded) {
    // A superseded certificate gets no new token at once (its grace period
    // only keeps existing connections up).
    return absl::PermissionDeniedError(
        absl::StrCat("certificate ", cert->serial, " was ",
                     subject->superseded && subject->cert_status == "valid"
                         ? "superseded"
                         : subject->cert_status));
  }
  if (subject->status != kStatusActive) {
    return absl::PermissionDeniedError(
        absl::StrCat("subscriber is ", subject->status));
  }
  std::vector<std::string> identifiers;
  if (absl::Status s =
          CheckPolicy(*subject, audiences, scopes, &ttl, &identifiers);
      !s.ok()) {
    return s;
  }

  auto key = keys_.Current();
  if (!key.ok()) return key.status();
  const int64_t iat = absl::ToUnixSeconds(now);
  const int64_t exp = iat + absl::ToInt64Seconds(ttl);
  // Hex: a jti never starts with "-", so `simprov tokens revoke JTI` works.
  TokenClaims claims;
  claims.iss = iss;
  claims.sub = subject->device_id;
  claims.client_id = subject->device_id;
  claims.aud = std::move(audiences);
  claims.iat = iat;
  claims.nbf = iat;
  claims.exp = exp;
  // Hex: a jti never starts with "-", so `simprov tokens revoke JTI` works.
  claims.jti = HexEncode(jti_random_.Generate(16));
  claims.group = subject->group;
  claims.cnf_x5t_s256 = cert->thumbprint;
  claims.scope = absl::StrJoin(scopes, " ");
  // Identifiers, when known and the group's policy lets them in.
  const auto wants = [&identifiers](const char* name) {
    return std::find(identifiers.begin(), identifiers.end(), name) !=
           identifiers.end();
  };
  if (wants("imsi")) claims.imsi = subject->imsi;
  if (wants("iccid")) claims.iccid = subject->iccid;
  if (wants("imei")) claims.imei = subject->imei;

  absl::StatusOr<std::string> token =
      SignTokenClaims(**key, TokenClaimsJson(claims));
  if (!token.ok()) {
    LogError("token signing with %s: %s", (*key)->kid,
             token.status().message());
    if (token.status().code() == absl::StatusCode::kUnavailable) {
      // The key's HSM does not answer: the device retries later.
      return absl::UnavailableError("token signing unavailable");
    }
    return absl::InternalError("token signing failed");
  }
  // No token leaves without its audit record.
  if (!Audit(subject->imsi, "token", subject->imsi,
             absl::StrCat("jti=", claims.jti,
                          " aud=", absl::StrJoin(claims.aud, ","), " exp=", exp,
                          " kid=", (*key)->kid))
           .ok()) {
    return absl::UnavailableError("audit unavailable: token not issued");
  }
  v1::IssueTokenResponse resp;
  resp.set_token(std::move(*token));
  resp.set_expires_at_unix(exp);
  resp.set_issued_at_unix(iat);
  resp.set_jti(claims.jti);
  return resp;
}

absl::StatusOr<v1::CreateAppResponse> TokenService::CreateApp(
    const std::string& name, const std::string& actor) {
  if (!IsAppName(name)) {
    return absl::InvalidArgumentError(
        "application name: 1-63 of [a-z0-9._-], starting with a letter or "
        "digit");
  }
  const std::string key = absl::StrCat(
      "sk_", jose::Base64UrlEncode(ToString(random_.Generate(32))));
  if (absl::Status s = store_.CreateTokenApp(name, KeyHash(key), clock_.Now());
      !s.ok()) {
    return s;
  }
  (void)Audit(actor, "app-create", name, "");
  v1::CreateAppResponse resp;
  resp.set_name(name);
  resp.set_key(key);
  return resp;
}

absl::Status TokenService::RevokeToken(const std::string& jti,
                                       const std::string& actor) {
  if (!IsPlainToken(jti, kMaxJtiLength)) {
    return absl::InvalidArgumentError("not a token id (jti)");
  }
  if (absl::Status s = store_.RevokeTokenId(jti, clock_.Now()); !s.ok()) {
    return s;
  }
  (void)Audit(actor, "token-revoke", jti, "");
  return absl::OkStatus();
}

absl::Status TokenService::RevokeDevice(const std::string& imsi,
                                        const std::string& actor) {
  if (!IsValidImsi(imsi)) return absl::InvalidArgumentError("not an IMSI");
  if (absl::Status s = store_.RevokeDeviceTokens(imsi, clock_.Now()); !s.ok()) {
    return s;
  }
  (void)Audit(actor, "token-revoke", imsi,
              "all tokens of the device issued so far");
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenService::Introspect(
    const std::string& authorization, const std::string& token) {
  // The application: HTTP Basic NAME:KEY.
  absl::string_view auth = authorization;
  if (!absl::ConsumePrefix(&auth, "Basic ")) {
    return absl::UnauthenticatedError("need HTTP Basic authentication");
  }
  const std::string pair = DecodeBase64(absl::StripAsciiWhitespace(auth));
  const size_t colon = pair.find(':');
  if (colon == std::string::npos) {
    return absl::UnauthenticatedError("need HTTP Basic authentication");
  }
  std::string app, key;
  if (!FormUrlDecode(absl::string_view(pair).substr(0, colon), &app) ||
      !FormUrlDecode(absl::string_view(pair).substr(colon + 1), &key)) {
    return absl::UnauthenticatedError("need HTTP Basic authentication");
  }
  const Bytes presented = KeyHash(key);
  auto stored = IsAppName(app) ? store_.TokenAppKeyHash(app)
                               : absl::NotFoundError("no such application");
  if (!stored.ok() && stored.status().code() != absl::StatusCode::kNotFound) {
    return absl::UnavailableError(stored.status().message());
  }
  if (!stored.ok() || !ConstantTimeEqual(*stored, presented)) {
    return absl::UnauthenticatedError("unknown application or wrong key");
  }

  const std::string inactive = R"({"active":false})";
  TokenVerifierOptions o;
  o.audience = app;
  o.issuer = issuer();
  o.leeway_seconds = absl::ToInt64Seconds(options_.leeway);
  o.max_lifetime_seconds = absl::ToInt64Seconds(options_.max_ttl);
  Clock& clock = clock_;
  o.now_unix = [&clock] { return absl::ToUnixSeconds(clock.Now()); };
  TokenVerifier verifier(o);
  std::string error;
  if (!verifier.SetJwks(keys_.JwksJson(), &error)) {
    return absl::InternalError(error);
  }
  TokenVerifyResult r = verifier.Verify(token);
  if (!r.valid) {
    LogDebug("introspect for %s: inactive: %s", app, r.error);
    return inactive;
  }
  // The token is bound to the certificate it was issued for (cnf): that
  // certificate, not the device id in sub (which a replacement SIM takes
  // over) nor an identifier (a group may leave them out), names the SIM.
  auto subject = BoundSubject(r.token);
  if (!subject.ok()) return subject.status();
  if (!subject->has_value()) return inactive;
  const Store::TokenSubject& bound = **subject;
  if (bound.cert_status != "valid" || bound.status != kStatusActive) {
    LogDebug("introspect for %s: inactive: certificate %s %s, subscriber %s",
             app, bound.serial, bound.cert_status, bound.status);
    return inactive;
  }
  auto revoked = store_.TokenRevoked(r.token.jti, bound.imsi,
                                     absl::FromUnixSeconds(r.token.issued_at));
  if (!revoked.ok()) return absl::UnavailableError(revoked.status().message());
  if (*revoked) return inactive;
  nlohmann::json out =
      nlohmann::json::parse(r.token.claims_json, nullptr, false);
  if (!out.is_object()) return inactive;
  out["active"] = true;
  out["token_type"] = "Bearer";
  out["client_id"] = r.token.subject;
  return out.dump();
}

absl::StatusOr<std::optional<Store::TokenSubject>> TokenService::BoundSubject(
    const VerifiedToken& token) {
  std::string hash;
  if (!jose::Base64UrlDecode(token.cnf_x5t_s256, &hash) || hash.size() != 32) {
    return std::nullopt;  // not bound to a certificate: not one of ours
  }
  auto subject = store_.GetTokenSubjectByCertHash(ToBytes(hash));
  if (!subject.ok()) {
    if (subject.status().code() == absl::StatusCode::kNotFound) {
      return std::nullopt;
    }
    return absl::UnavailableError(subject.status().message());
  }
  // Identifiers the token carries are those of the certificate's SIM.
  if (!token.imsi.empty() && token.imsi != subject->imsi) return std::nullopt;
  return std::optional<Store::TokenSubject>(std::move(*subject));
}

std::string TokenService::DiscoveryJson() const {
  const std::string iss = issuer();
  const absl::string_view base = absl::StripSuffix(iss, "/");
  nlohmann::json d = {
      {"issuer", iss},
      {"jwks_uri", absl::StrCat(base, "/.well-known/jwks.json")},
      {"introspection_endpoint", absl::StrCat(base, "/v1/introspect")},
      {"introspection_endpoint_auth_methods_supported",
       {"client_secret_basic"}},
      // Devices get tokens over the gRPC device API (mutual TLS), not from
      // an OAuth endpoint: no authorization or token endpoint, no grants.
      {"response_types_supported", nlohmann::json::array()},
      {"grant_types_supported", nlohmann::json::array()},
      {"token_endpoint_auth_methods_supported", nlohmann::json::array()},
      {"access_token_signing_alg_values_supported", {"ES256", "EdDSA"}},
      {"tls_client_certificate_bound_access_tokens", true}};
  return d.dump();
}

void TokenService::Sweep() {
  (void)keys_.Maintain();
  // A jti revocation outlives every token that can carry that jti.
  (void)store_.PruneTokenRevocations(clock_.Now() - options_.max_ttl -
                                     absl::Minutes(5));
}

grpc::Status TokenGrpcService::IssueToken(grpc::ServerContext* ctx,
                                          const v1::IssueTokenRequest* req,
                                          v1::IssueTokenResponse* resp) {
  std::string pem;
  auto auth = ctx->auth_context();
  if (auth) {
    auto values = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (!values.empty()) pem = std::string(values[0].data(), values[0].size());
  }
  auto r = s_.Issue(pem, *req);
  if (BrokerMetrics* m = s_.metrics()) m->TokenRequest(r.status());
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status TokenAdminGrpcService::CreateApp(grpc::ServerContext* ctx,
                                              const v1::CreateAppRequest* req,
                                              v1::CreateAppResponse* resp) {
  auto actor = auth_.Authorize(ctx, "TokenAdmin.CreateApp");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto r = s_.CreateApp(req->name(), *actor);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status TokenAdminGrpcService::RevokeToken(
    grpc::ServerContext* ctx, const v1::RevokeTokenRequest* req,
    v1::RevokeTokenResponse*) {
  auto actor = auth_.Authorize(ctx, "TokenAdmin.RevokeToken");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ToGrpcStatus(s_.RevokeToken(req->jti(), *actor));
}

grpc::Status TokenAdminGrpcService::RevokeDeviceTokens(
    grpc::ServerContext* ctx, const v1::RevokeDeviceTokensRequest* req,
    v1::RevokeTokenResponse*) {
  auto actor = auth_.Authorize(ctx, "TokenAdmin.RevokeDeviceTokens");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ToGrpcStatus(s_.RevokeDevice(req->imsi(), *actor));
}

}  // namespace simprov
