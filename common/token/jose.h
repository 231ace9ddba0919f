// JOSE building blocks shared by the broker's token signer and the
// application-side TokenVerifier: base64url, strict JSON, JWK import and
// export, and the ES256 signature encodings (raw r||s <-> DER).
//
// Depends only on OpenSSL and nlohmann-json (no Abseil, no gRPC), so that
// the verifier library stays small for applications.
#ifndef SIMPROV_COMMON_TOKEN_JOSE_H_
#define SIMPROV_COMMON_TOKEN_JOSE_H_

#include <openssl/ec.h>
#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace simprov::jose {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

inline constexpr char kAlgEs256[] = "ES256";
inline constexpr char kAlgEdDsa[] = "EdDSA";

// base64url without padding (RFC 7515 section 2).
std::string Base64UrlEncode(std::string_view data);
// Strict: only [A-Za-z0-9_-], no padding, no whitespace, and unused
// trailing bits zero (so that every value has one encoding).
bool Base64UrlDecode(std::string_view in, std::string* out);

// Parses JSON, refusing duplicate object members, nesting deeper than
// `max_depth` and trailing garbage. On failure returns false and sets
// `error`.
bool ParseJsonStrict(std::string_view text, nlohmann::json* out,
                     std::string* error, int max_depth = 16);

// ES256: DER ECDSA-Sig-Value <-> the 64-byte JWS form r||s.
bool EcdsaDerToRaw(const unsigned char* der, size_t len, std::string* raw);
// The same from a parsed signature.
bool EcdsaSigToRaw(const ECDSA_SIG* sig, std::string* raw);
// Refuses anything but exactly 64 bytes with 0 < r < n and 0 < s < n
// (n: the order of P-256).
bool EcdsaRawToDer(std::string_view raw, std::string* der, std::string* error);

// The public JWK of a P-256 or Ed25519 key, with kid, alg and use=sig.
// Returns a null json on an unsupported key.
nlohmann::json PublicJwk(EVP_PKEY* key, const std::string& kid);
// The JWS alg for a key: "ES256" for P-256, "EdDSA" for Ed25519, "" else.
std::string AlgForKey(EVP_PKEY* key);

// A public key from a JWK (EC P-256 or OKP Ed25519). Checks that alg,
// when present, matches the key type and curve. On failure returns null and
// sets `error`.
PkeyPtr PublicKeyFromJwk(const nlohmann::json& jwk, std::string* error);

// Signs `input` with `key` (ES256 or EdDSA) and returns the JWS signature
// bytes (64 for both). Empty on failure.
std::string Sign(EVP_PKEY* key, std::string_view input);
// Verifies a JWS signature; ES256 signatures must pass EcdsaRawToDer.
bool Verify(EVP_PKEY* key, const std::string& alg, std::string_view input,
            std::string_view signature, std::string* error);

// base64url(SHA-256(der)): the RFC 8705 x5t#S256 certificate thumbprint.
std::string CertThumbprintS256(std::string_view der);
// The DER of the first certificate in `pem_or_der` (PEM or raw DER); empty
// if it holds none.
std::string CertificateDer(std::string_view pem_or_der);

}  // namespace simprov::jose

#endif  // SIMPROV_COMMON_TOKEN_JOSE_H_
