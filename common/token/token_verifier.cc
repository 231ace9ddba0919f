#include "common/token/token_verifier.h"

#include <openssl/crypto.h>

#include <cmath>
#include <ctime>
#include <map>
#include <mutex>

#include "common/token/jose.h"

namespace simprov {
namespace {

constexpr size_t kMaxJwksBytes = 64 << 10;
constexpr size_t kMaxJwksKeys = 32;

struct Key {
  std::string alg;
  jose::PkeyPtr pkey;
};
using KeySet = std::map<std::string, Key>;

TokenVerifyResult Invalid(std::string why) {
  TokenVerifyResult r;
  r.error = std::move(why);
  return r;
}

// A NumericDate (RFC 7519): a JSON number, truncated to whole seconds.
bool NumericDate(const nlohmann::json& claims, const char* name, int64_t* out) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_number()) return false;
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (!std::isfinite(d) || d < 0 || d > 1e15) return false;
    *out = static_cast<int64_t>(d);
  } else if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(1e15)) return false;
    *out = static_cast<int64_t>(u);
  } else {
    *out = it->get<int64_t>();
    if (*out < 0) return false;
  }
  return true;
}

std::string StringClaim(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

struct TokenVerifier::Impl {
  TokenVerifierOptions options;
  mutable std::mutex mu;
  std::shared_ptr<const KeySet> keys;          // guarded by mu
  mutable int64_t last_fetch = INT64_MIN / 2;  // guarded by mu
  mutable std::mutex fetch_mu;

  int64_t Now() const {
    return options.now_unix ? options.now_unix()
                            : static_cast<int64_t>(std::time(nullptr));
  }
  std::shared_ptr<const KeySet> Keys() const {
    std::lock_guard<std::mutex> lock(mu);
    return keys;
  }
  bool Install(std::string_view jwks_json, std::string* error) {
    if (jwks_json.size() > kMaxJwksBytes) {
      *error = "JWKS larger than 64 KiB";
      return false;
    }
    nlohmann::json doc;
    if (!jose::ParseJsonStrict(jwks_json, &doc, error)) {
      *error = "JWKS: " + *error;
      return false;
    }
    auto it = doc.is_object() ? doc.find("keys") : doc.end();
    if (it == doc.end() || !it->is_array()) {
      *error = "JWKS has no keys array";
      return false;
    }
    if (it->size() > kMaxJwksKeys) {
      *error = "JWKS has too many keys";
      return false;
    }
    auto set = std::make_shared<KeySet>();
    for (const nlohmann::json& jwk : *it) {
      const std::string kid = jwk.is_object() ? StringClaim(jwk, "kid") : "";
      if (kid.empty()) {
        *error = "JWKS key without kid";
        return false;
      }
      std::string why;
      jose::PkeyPtr pkey = jose::PublicKeyFromJwk(jwk, &why);
      if (!pkey) continue;  // unsupported or malformed keys are never used
      Key k;
      k.alg = jose::AlgForKey(pkey.get());
      k.pkey = std::move(pkey);
      (*set)[kid] = std::move(k);
    }
    std::lock_guard<std::mutex> lock(mu);
    keys = std::move(set);
    return true;
  }
  // Refetches for an unknown kid, at most once per interval.
  bool MaybeRefetch() const {
    if (!options.fetch_jwks) return false;
    std::lock_guard<std::mutex> fetch_lock(fetch_mu);
    const int64_t now = Now();
    {
      std::lock_guard<std::mutex> lock(mu);
      if (now - last_fetch < options.min_refetch_interval_seconds) {
        return false;
      }
      last_fetch = now;
    }
    std::string jwks, error;
    if (!options.fetch_jwks(&jwks, &error)) return false;
    return const_cast<Impl*>(this)->Install(jwks, &error);
  }
};

TokenVerifier::TokenVerifier(TokenVerifierOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->keys = std::make_shared<KeySet>();
}

TokenVerifier::~TokenVerifier() = default;

bool TokenVerifier::SetJwks(std::string_view jwks_json, std::string* error) {
  return impl_->Install(jwks_json, error);
}

bool TokenVerifier::Refresh(std::string* error) {
  if (!impl_->options.fetch_jwks) {
    *error = "no JWKS source configured";
    return false;
  }
  std::string jwks;
  if (!impl_->options.fetch_jwks(&jwks, error)) return false;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->last_fetch = impl_->Now();
  }
  return impl_->Install(jwks, error);
}

TokenVerifyResult TokenVerifier::Verify(std::string_view token,
                                        std::string_view client_cert) const {
  const TokenVerifierOptions& o = impl_->options;
  if (token.size() > o.max_token_bytes) {
    return Invalid("token larger than " + std::to_string(o.max_token_bytes) +
                   " bytes");
  }
  const size_t dot1 = token.find('.');
  const size_t dot2 =
      dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos ||
      token.find('.', dot2 + 1) != std::string_view::npos) {
    return Invalid("not a JWS compact token (need three parts)");
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view sig_b64 = token.substr(dot2 + 1);
  std::string header_json, payload_json, signature, error;
  if (!jose::Base64UrlDecode(header_b64, &header_json)) {
    return Invalid("header is not base64url");
  }
  if (!jose::Base64UrlDecode(payload_b64, &payload_json)) {
    return Invalid("payload is not base64url");
  }
  if (!jose::Base64UrlDecode(sig_b64, &signature)) {
    return Invalid("signature is not base64url");
  }
  nlohmann::json header;
  if (!jose::ParseJsonStrict(header_json, &header, &error, 4)) {
    return Invalid("header: " + error);
  }
  if (!header.is_object()) return Invalid("header is not a JSON object");
  for (const char* banned : {"jku", "x5u", "jwk", "x5c"}) {
    if (header.contains(banned)) {
      return Invalid(std::string("header ") + banned + " not allowed");
    }
  }
  if (header.contains("crit")) {
    return Invalid("unknown crit header parameter");
  }
  const std::string alg = StringClaim(header, "alg");
  if (alg == "none" || alg.empty()) return Invalid("alg none refused");
  if (alg != jose::kAlgEs256 && alg != jose::kAlgEdDsa) {
    return Invalid("alg " + alg + " not allowed (only ES256 and EdDSA)");
  }
  const std::string typ = StringClaim(header, "typ");
  if (typ != "at+jwt" && typ != "application/at+jwt") {
    return Invalid("typ is not at+jwt");
  }
  const std::string kid = StringClaim(header, "kid");
  if (kid.empty()) return Invalid("no kid");
  std::shared_ptr<const KeySet> keys = impl_->Keys();
  auto key = keys->find(kid);
  if (key == keys->end()) {
    if (impl_->MaybeRefetch()) {
      keys = impl_->Keys();
      key = keys->find(kid);
    }
    if (key == keys->end()) return Invalid("unknown kid " + kid);
  }
  if (key->second.alg != alg) {
    return Invalid("alg " + alg + " does not match the key's alg " +
                   key->second.alg);
  }
  const std::string_view signing_input = token.substr(0, dot2);
  if (!jose::Verify(key->second.pkey.get(), alg, signing_input, signature,
                    &error)) {
    return Invalid(error);
  }

  nlohmann::json claims;
  if (!jose::ParseJsonStrict(payload_json, &claims, &error, 8)) {
    return Invalid("claims: " + error);
  }
  if (!claims.is_object()) return Invalid("claims are not a JSON object");
  TokenVerifyResult r;
  VerifiedToken& t = r.token;
  const int64_t now = impl_->Now();
  const int64_t leeway = o.leeway_seconds;
  if (!NumericDate(claims, "exp", &t.expires_at)) {
    return Invalid("exp missing or not a number");
  }
  if (!NumericDate(claims, "iat", &t.issued_at)) {
    return Invalid("iat missing or not a number");
  }
  if (claims.contains("nbf")) {
    if (!NumericDate(claims, "nbf", &t.not_before)) {
      return Invalid("nbf not a number");
    }
  } else {
    t.not_before = t.issued_at;
  }
  if (now >= t.expires_at + leeway) return Invalid("token expired");
  if (now + leeway < t.not_before) return Invalid("token not yet valid");
  if (now + leeway < t.issued_at) return Invalid("iat in the future");
  if (t.expires_at <= t.issued_at ||
      t.expires_at - t.issued_at > o.max_lifetime_seconds) {
    return Invalid("lifetime (exp - iat) out of range");
  }
  auto aud = claims.find("aud");
  if (aud != claims.end() && aud->is_string()) {
    t.audience.push_back(aud->get<std::string>());
  } else if (aud != claims.end() && aud->is_array()) {
    for (const auto& a : *aud) {
      if (!a.is_string()) return Invalid("aud holds a non-string");
      t.audience.push_back(a.get<std::string>());
    }
  } else {
    return Invalid("aud missing");
  }
  bool aud_ok = false;
  for (const std::string& a : t.audience) aud_ok |= (a == o.audience);
  if (o.audience.empty() || !aud_ok) {
    return Invalid("wrong audience (token is not for " + o.audience + ")");
  }
  t.issuer = StringClaim(claims, "iss");
  if (!o.issuer.empty() && t.issuer != o.issuer) {
    return Invalid("wrong issuer " + t.issuer);
  }
  t.subject = StringClaim(claims, "sub");
  if (t.subject.empty()) return Invalid("sub missing");
  t.jti = StringClaim(claims, "jti");
  t.imsi = StringClaim(claims, "imsi");
  t.group = StringClaim(claims, "group");
  t.scope = StringClaim(claims, "scope");
  auto cnf = claims.find("cnf");
  if (cnf != claims.end() && cnf->is_object()) {
    t.cnf_x5t_s256 = StringClaim(*cnf, "x5t#S256");
  }
  if (!client_cert.empty()) {
    const std::string der = jose::CertificateDer(client_cert);
    if (der.empty()) return Invalid("client certificate does not parse");
    const std::string thumb = jose::CertThumbprintS256(der);
    if (t.cnf_x5t_s256.size() != thumb.size() ||
        CRYPTO_memcmp(t.cnf_x5t_s256.data(), thumb.data(), thumb.size()) != 0) {
      return Invalid("cnf mismatch: the token is bound to another certificate");
    }
  }
  t.alg = alg;
  t.kid = kid;
  t.claims_json = std::move(payload_json);
  r.valid = true;
  return r;
}

}  // namespace simprov
