// simprov::TokenVerifier: verifies the short-lived device tokens that a
// simprov broker issues (JWS compact, typ at+jwt, ES256 or EdDSA) against
// the broker's JWKS. For applications: link the CMake target
// simprov_token_verifier (OpenSSL + nlohmann-json only).
//
//   simprov::TokenVerifierOptions o;
//   o.audience = "billing";                       // this application
//   o.issuer = "https://broker.example.com";      // recommended
//   o.fetch_jwks = [](std::string* jwks, std::string* err) { ... GET
//                     ISSUER/.well-known/jwks.json ... };
//   simprov::TokenVerifier v(o);
//   auto r = v.Verify(token, client_cert_pem);   // cert: "" if not seen
//   if (!r.valid) reject(r.error);
//
// Checks: bounded size; JWS compact form with strict base64url; no
// duplicate JSON members; typ at+jwt; alg ES256 or EdDSA and equal to the
// key's (no "none", no HMAC); unknown crit, jku, x5u, jwk and x5c refused;
// kid known (an unknown kid refetches the JWKS, at most once per
// min_refetch_interval_seconds); ES256 signatures exactly 64 bytes with r
// and s in range; exp required and numeric, nbf and iat within the leeway,
// exp - iat at most max_lifetime_seconds; aud (string or array) names the
// audience exactly; iss when configured; with a client certificate, the
// cnf x5t#S256 binding (RFC 8705). Without the certificate a token is a
// bearer token: keep lifetimes short.
//
// Thread-safe: Verify may run concurrently with SetJwks.
#ifndef SIMPROV_COMMON_TOKEN_TOKEN_VERIFIER_H_
#define SIMPROV_COMMON_TOKEN_TOKEN_VERIFIER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace simprov {

struct TokenVerifierOptions {
  std::string audience;  // required: must appear in aud
  std::string issuer;    // checked when non-empty
  int64_t leeway_seconds = 30;
  int64_t max_lifetime_seconds = 3600;
  size_t max_token_bytes = 8192;
  // Fetches the JWKS document; called for an unknown kid. Optional.
  std::function<bool(std::string* jwks_json, std::string* error)> fetch_jwks;
  int64_t min_refetch_interval_seconds = 30;
  // Unix seconds; defaults to the system clock.
  std::function<int64_t()> now_unix;
};

struct VerifiedToken {
  std::string alg, kid;
  std::string issuer, subject, jti, imsi, group;
  std::vector<std::string> audience;
  std::string scope;  // space-separated, may be empty
  int64_t issued_at = 0, not_before = 0, expires_at = 0;
  std::string cnf_x5t_s256;  // empty if the token is not bound
  std::string claims_json;   // the whole payload
};

struct TokenVerifyResult {
  bool valid = false;
  std::string error;  // why not, when !valid
  VerifiedToken token;
};

class TokenVerifier {
 public:
  explicit TokenVerifier(TokenVerifierOptions options);
  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // Replaces the key set with a JWKS document ({"keys": [...]}). Keys of
  // unsupported types are skipped; keys without kid are refused.
  bool SetJwks(std::string_view jwks_json, std::string* error);
  // Fetches with options.fetch_jwks and installs the result.
  bool Refresh(std::string* error);

  // `client_cert`: PEM or DER of the certificate the client presented over
  // TLS, or empty when the application cannot see it.
  TokenVerifyResult Verify(std::string_view token,
                           std::string_view client_cert = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace simprov

#endif  // SIMPROV_COMMON_TOKEN_TOKEN_VERIFIER_H_
