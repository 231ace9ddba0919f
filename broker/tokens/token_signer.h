// What token issuance needs from a signing key, as an interface: its kid,
// its JWS alg, its public JWK (what the JWKS publishes) and signatures.
// The key manager makes one TokenSigner per key through a
// TokenSignerFactory; the default one, MakeSoftwareTokenSigner, signs with
// the private key in memory (ES256 through Es256Signer, EdDSA through
// OpenSSL). Another factory (an HSM-backed signer, a test double) plugs in
// through TokenKeyOptions::make_signer without touching issuance.
#ifndef SIMPROV_BROKER_TOKENS_TOKEN_SIGNER_H_
#define SIMPROV_BROKER_TOKENS_TOKEN_SIGNER_H_

#include <openssl/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "broker/tokens/es256_signer.h"

namespace simprov {

// One signing key. Thread-safe: Sign is called concurrently.
class TokenSigner {
 public:
  virtual ~TokenSigner() = default;

  // The key id: the RFC 7638 thumbprint of the public key (JwkThumbprint).
  virtual std::string kid() const = 0;
  // The JWS alg: "ES256" or "EdDSA".
  virtual std::string alg() const = 0;
  // The public key as the JWKS lists it (jose::PublicJwk: kty, crv, x, y
  // for EC, alg, kid, use=sig).
  virtual nlohmann::json PublicJwk() const = 0;
  // The JWS signature of `signing_input` (the "header.payload" text): for
  // ES256 R || S, for EdDSA the Ed25519 signature, 64 bytes each.
  virtual absl::StatusOr<std::string> Sign(std::string_view signing_input) = 0;
};

// Makes the signer for a key; the key manager's one way to get a signer.
using TokenSignerFactory =
    std::function<absl::StatusOr<std::shared_ptr<TokenSigner>>(
        std::shared_ptr<EVP_PKEY> key)>;

// The signer of `key` in memory: a P-256 key signs ES256 through an
// Es256Signer with `es256_presign` nonce pairs made ahead (0: each
// signature whole), an Ed25519 key EdDSA. InvalidArgument for other keys.
absl::StatusOr<std::shared_ptr<TokenSigner>> MakeSoftwareTokenSigner(
    std::shared_ptr<EVP_PKEY> key,
    size_t es256_presign = Es256Signer::kDefaultPresign);

// The RFC 7638 thumbprint of a public JWK (its required members, sorted,
// compact, SHA-256), base64url: the kid of the key.
std::string JwkThumbprint(const nlohmann::json& jwk);

}  // namespace simprov

#endif  // SIMPROV_BROKER_TOKENS_TOKEN_SIGNER_H_
