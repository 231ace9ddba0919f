#include "broker/tokens/pkcs11_token_signer.h"

#include <openssl/rand.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "common/token/jose.h"

namespace simprov {

Pkcs11TokenSigner::Pkcs11TokenSigner(std::shared_ptr<pkcs11::Key> key)
    : key_(std::move(key)),
      alg_(key_->type() == pkcs11::KeyType::kEd25519 ? jose::kAlgEdDsa
                                                     : jose::kAlgEs256),
      kid_(JwkThumbprint(jose::PublicJwk(key_->public_key(), ""))),
      jwk_(jose::PublicJwk(key_->public_key(), kid_)) {}

absl::StatusOr<std::string> Pkcs11TokenSigner::Sign(
    std::string_view signing_input) {
  if (key_->type() == pkcs11::KeyType::kEd25519) {
    return key_->Sign(signing_input);
  }
  // JWS ES256 is R || S over SHA-256: what CKM_ECDSA returns.
  const Bytes digest =
      Sha256(absl::string_view(signing_input.data(), signing_input.size()));
  return key_->Sign(std::string_view(
      reinterpret_cast<const char*>(digest.data()), digest.size()));
}

absl::StatusOr<std::shared_ptr<Pkcs11TokenKeyStore>> Pkcs11TokenKeyStore::Open(
    const std::string& uri, const pkcs11::ModuleOptions& options) {
  auto parsed = pkcs11::ParseUri(uri);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-keys: ", parsed.status().message()));
  }
  auto token = pkcs11::Token::Open(*parsed, options);
  if (!token.ok()) return token.status();
  return std::shared_ptr<Pkcs11TokenKeyStore>(
      new Pkcs11TokenKeyStore(*std::move(token)));
}

absl::StatusOr<std::shared_ptr<TokenSigner>> Pkcs11TokenKeyStore::Generate(
    const std::string& alg) {
  pkcs11::KeyType type;
  if (alg == jose::kAlgEs256) {
    type = pkcs11::KeyType::kEcP256;
  } else if (alg == jose::kAlgEdDsa) {
    type = pkcs11::KeyType::kEd25519;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("token alg must be ES256 or EdDSA, not ", alg));
  }
  // Made under a temporary label, then labelled by its kid (known only
  // from the public half).
  unsigned char r[8];
  if (RAND_bytes(r, sizeof r) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  const std::string temp = "simprov-token-new-" + HexEncode(r, sizeof r);
  auto key = token_->GenerateKey(type, temp);
  if (!key.ok()) return key.status();
  auto signer = std::make_shared<Pkcs11TokenSigner>(*key);
  if (absl::Status s = token_->RelabelKey(temp, signer->kid()); !s.ok()) {
    (void)token_->DestroyKey(temp);
    return s;
  }
  return Find(signer->kid());
}

absl::StatusOr<std::shared_ptr<TokenSigner>> Pkcs11TokenKeyStore::Find(
    const std::string& kid) {
  pkcs11::Uri u;
  u.object = kid;
  auto key = token_->FindKey(u);
  if (!key.ok()) return key.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(keys_, [](const auto& k) { return k.expired(); });
    keys_.push_back(*key);
  }
  auto signer = std::make_shared<Pkcs11TokenSigner>(*std::move(key));
  if (signer->kid() != kid) {
    return absl::FailedPreconditionError(
        absl::StrCat("the key labelled ", kid, " in ", token_->name(),
                     " is not that key (its kid is ", signer->kid(), ")"));
  }
  return std::shared_ptr<TokenSigner>(std::move(signer));
}

absl::Status Pkcs11TokenKeyStore::Check() {
  if (absl::Status s = token_->Check(); !s.ok()) return s;
  std::vector<std::shared_ptr<pkcs11::Key>> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& k : keys_) {
      if (auto key = k.lock()) keys.push_back(std::move(key));
    }
  }
  for (const auto& k : keys) {
    if (absl::Status s = k->Check(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Pkcs11TokenKeyStore::Destroy(const std::string& kid) {
  return token_->DestroyKey(kid);
}

}  // namespace simprov
