// Token signing keys in a PKCS#11 token (`--token-keys pkcs11:token=...`):
// made in the token (non-extractable), labelled by their kid (the JWK
// thumbprint), signing there; the key file keeps only each key's kid, alg,
// schedule and public JWK, and retired keys are destroyed in the token.
#ifndef SIMPROV_BROKER_TOKENS_PKCS11_TOKEN_SIGNER_H_
#define SIMPROV_BROKER_TOKENS_PKCS11_TOKEN_SIGNER_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/tokens/token_keys.h"
#include "broker/tokens/token_signer.h"
#include "common/pkcs11/token.h"

namespace simprov {

// ES256 (SHA-256 here, ECDSA P-256 in the token) or EdDSA (Ed25519 in the
// token, where the module supports it). UNAVAILABLE while the token does
// not answer.
class Pkcs11TokenSigner final : public TokenSigner {
 public:
  explicit Pkcs11TokenSigner(std::shared_ptr<pkcs11::Key> key);
  std::string kid() const override { return kid_; }
  std::string alg() const override { return alg_; }
  nlohmann::json PublicJwk() const override { return jwk_; }
  absl::StatusOr<std::string> Sign(std::string_view signing_input) override;

 private:
  const std::shared_ptr<pkcs11::Key> key_;
  const std::string alg_;
  const std::string kid_;
  const nlohmann::json jwk_;
};

class Pkcs11TokenKeyStore final : public TokenKeyStore {
 public:
  // Opens (logs in to) the token `uri` names; its object is not used.
  static absl::StatusOr<std::shared_ptr<Pkcs11TokenKeyStore>> Open(
      const std::string& uri, const pkcs11::ModuleOptions& options);

  absl::StatusOr<std::shared_ptr<TokenSigner>> Generate(
      const std::string& alg) override;
  absl::StatusOr<std::shared_ptr<TokenSigner>> Find(
      const std::string& kid) override;
  absl::Status Destroy(const std::string& kid) override;
  // Readiness: the token answers and holds the keys found or made through
  // this store that are still in use.
  absl::Status Check();

 private:
  explicit Pkcs11TokenKeyStore(std::shared_ptr<pkcs11::Token> token)
      : token_(std::move(token)) {}
  const std::shared_ptr<pkcs11::Token> token_;
  std::mutex mu_;
  std::vector<std::weak_ptr<pkcs11::Key>> keys_;  // guarded by mu_
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_TOKENS_PKCS11_TOKEN_SIGNER_H_
