#include "broker/tokens/token_signer.h"

#include <utility>

#include "common/bytes.h"
#include "common/digest.h"
#include "common/token/jose.h"
#include "common/x509.h"

namespace simprov {
namespace {

// The kid, alg and public JWK of a private key held in memory.
class InMemorySigner : public TokenSigner {
 public:
  std::string kid() const override { return kid_; }
  std::string alg() const override { return alg_; }
  nlohmann::json PublicJwk() const override { return jwk_; }

 protected:
  InMemorySigner(std::shared_ptr<EVP_PKEY> key, std::string alg)
      : key_(std::move(key)),
        alg_(std::move(alg)),
        kid_(JwkThumbprint(jose::PublicJwk(key_.get(), ""))),
        jwk_(jose::PublicJwk(key_.get(), kid_)) {}

  const std::shared_ptr<EVP_PKEY> key_;

 private:
  const std::string alg_;
  const std::string kid_;
  const nlohmann::json jwk_;
};

// ES256 with nonce pairs made ahead.
class Es256SoftwareSigner final : public InMemorySigner {
 public:
  Es256SoftwareSigner(std::shared_ptr<EVP_PKEY> key, size_t presign)
      : InMemorySigner(std::move(key), jose::kAlgEs256),
        es256_(key_, presign) {}

  absl::StatusOr<std::string> Sign(std::string_view signing_input) override {
    std::string sig = es256_.Sign(signing_input);
    if (sig.empty()) return absl::InternalError("ES256 signature failed");
    return sig;
  }

 private:
  Es256Signer es256_;
};

// EdDSA (Ed25519), one OpenSSL signature each.
class EdDsaSoftwareSigner final : public InMemorySigner {
 public:
  explicit EdDsaSoftwareSigner(std::shared_ptr<EVP_PKEY> key)
      : InMemorySigner(std::move(key), jose::kAlgEdDsa) {}

  absl::StatusOr<std::string> Sign(std::string_view signing_input) override {
    std::string sig = jose::Sign(key_.get(), signing_input);
    if (sig.empty()) return absl::InternalError("EdDSA signature failed");
    return sig;
  }
};

}  // namespace

absl::StatusOr<std::shared_ptr<TokenSigner>> MakeSoftwareTokenSigner(
    std::shared_ptr<EVP_PKEY> key, size_t es256_presign) {
  const std::string alg = key ? jose::AlgForKey(key.get()) : "";
  if (alg == jose::kAlgEs256) {
    return std::make_shared<Es256SoftwareSigner>(std::move(key), es256_presign);
  }
  if (alg == jose::kAlgEdDsa) {
    return std::make_shared<EdDsaSoftwareSigner>(std::move(key));
  }
  return absl::InvalidArgumentError(
      "a token key must be P-256 (ES256) or Ed25519 (EdDSA)");
}

std::string JwkThumbprint(const nlohmann::json& jwk) {
  nlohmann::json members;  // RFC 7638: required members, sorted, compact
  for (const char* m : {"crv", "kty", "x", "y"}) {
    if (jwk.contains(m)) members[m] = jwk[m];
  }
  const Bytes digest = Sha256(members.dump());
  return jose::Base64UrlEncode(std::string_view(
      reinterpret_cast<const char*>(digest.data()), digest.size()));
}

}  // namespace simprov
