// The broker's token signing keys and their rotation.
//
// Schedule (all times from the injected Clock): a key signs from sign_from
// to sign_until (one rotation period). The next key is created and
// published in the JWKS `lead` before it starts signing (lead = a quarter
// of the period, at most 1 hour; the JWKS Cache-Control max-age is shorter
// still), and a key stays published until every token it signed has
// expired (sign_until + the maximum token lifetime + 2 minutes of leeway).
// After downtime longer than the period the old key keeps signing until
// the new one has been published for `lead`.
//
// Keys are kept in one 0600 file (PKCS#8 PEM inside JSON), written
// atomically before a new key is used; with a TokenKeyStore (an HSM) the
// file holds only their kids and public JWKs, and a retired key is
// destroyed in the store once the file no longer lists it. Each key signs
// through the TokenSigner (token_signer.h) that TokenKeyOptions::make_signer
// makes.
#ifndef SIMPROV_BROKER_TOKENS_TOKEN_KEYS_H_
#define SIMPROV_BROKER_TOKENS_TOKEN_KEYS_H_

#include <openssl/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/tokens/token_signer.h"
#include "common/clock.h"
#include "common/token/jose.h"

namespace simprov {

// Where the keys live when not in the key file (an HSM): the key file then
// keeps each key's kid, alg, schedule and public JWK, not the private key.
class TokenKeyStore {
 public:
  virtual ~TokenKeyStore() = default;
  // A new key for `alg`, kept in the store under its kid; its signer.
  virtual absl::StatusOr<std::shared_ptr<TokenSigner>> Generate(
      const std::string& alg) = 0;
  // The signer of the stored key `kid`.
  virtual absl::StatusOr<std::shared_ptr<TokenSigner>> Find(
      const std::string& kid) = 0;
  // Destroys the key `kid` (every token it signed has expired).
  virtual absl::Status Destroy(const std::string& kid) = 0;
};

struct TokenKeyOptions {
  std::string alg = "ES256";  // for new keys: ES256 or EdDSA
  absl::Duration rotation_period = absl::Hours(24);
  absl::Duration max_token_lifetime = absl::Hours(1);
  std::string path;  // the key file; empty: in memory only (tests)
  // Makes each key's signer; null: MakeSoftwareTokenSigner.
  TokenSignerFactory make_signer;
  // New keys are made in this store (make_signer is then not used for
  // them); null: in memory, saved in the key file.
  std::shared_ptr<TokenKeyStore> store;
};

// A signing key and its schedule. Issuance signs only through `signer`.
struct TokenKey {
  std::string kid;                      // the signer's: RFC 7638 JWK thumbprint
  std::string alg;                      // the signer's
  std::shared_ptr<EVP_PKEY> pkey;       // as kept in the key file (null:
                                        // the key is in options.store)
  std::shared_ptr<TokenSigner> signer;  // signs with pkey
  std::string header_b64;               // the JWS protected header for this key
  absl::Time publish_at, sign_from, sign_until;
};

class TokenKeyManager {
 public:
  static absl::StatusOr<std::unique_ptr<TokenKeyManager>> Open(
      TokenKeyOptions options, Clock& clock);

  // The key to sign with now; rotates first when due.
  absl::StatusOr<std::shared_ptr<const TokenKey>> Current();
  // Every published key, as a JWKS document.
  std::string JwksJson();
  // Rotates and retires keys as due; call periodically.
  absl::Status Maintain();
  // How long before it signs the next key is published.
  absl::Duration lead() const { return lead_; }
  // The JWKS Cache-Control max-age.
  absl::Duration jwks_max_age() const;
  absl::Time DropTime(const TokenKey& k) const;
  // Every key held (published, signing or kept until its tokens expire).
  std::vector<std::shared_ptr<const TokenKey>> Keys();

 private:
  using KeyList = std::vector<std::shared_ptr<const TokenKey>>;
  TokenKeyManager(TokenKeyOptions options, Clock& clock);
  absl::Status MaintainLocked(absl::Time now);
  absl::Status Save(const KeyList& keys) const;
  absl::Status Load();
  // The key for `pkey`, its signer made by options_.make_signer.
  absl::StatusOr<std::shared_ptr<TokenKey>> MakeKey(jose::PkeyPtr pkey) const;
  // The key around `signer` (a key in options_.store).
  static std::shared_ptr<TokenKey> KeyFor(std::shared_ptr<TokenSigner> signer);
  // A new key: in the store when there is one, else in memory.
  absl::StatusOr<std::shared_ptr<TokenKey>> NewKey() const;

  const TokenKeyOptions options_;
  const absl::Duration lead_;
  Clock& clock_;
  std::mutex mu_;
  std::shared_ptr<const KeyList> keys_;  // guarded by mu_
  std::string jwks_;                     // guarded by mu_
  absl::Time next_check_;                // guarded by mu_
};

// The compact JWS of `claims_json` signed by `key`'s signer (header: alg,
// kid, typ at+jwt); the signer's error on failure.
absl::StatusOr<std::string> SignTokenClaims(const TokenKey& key,
                                            const std::string& claims_json);

// A fresh key for `alg` (ES256: P-256; EdDSA: Ed25519).
absl::StatusOr<jose::PkeyPtr> GenerateTokenKey(const std::string& alg);

}  // namespace simprov

#endif  // SIMPROV_BROKER_TOKENS_TOKEN_KEYS_H_
