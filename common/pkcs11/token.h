// Keys in a PKCS#11 token (an HSM, a smart card, SoftHSM2): open the token
// a URI names, find, generate and destroy key pairs in it, sign with them.
// The private half never leaves the token; the public half is read from the
// token's public-key object.
//
// Used by the broker (its CA and token signing keys) and meant for the
// agent's device keys too. The API is this header and uri.h:
//
//   auto token = pkcs11::Token::Open(uri, module_options);   // logs in once
//   auto key = (*token)->FindKey(uri);                       // object/id
//   auto sig = (*key)->Sign(sha256_digest);                  // r || s
//
// Module: the URI's module-path, else ModuleOptions::module_path; loaded
// once per process (dlopen, C_Initialize with OS locking) and shared by
// every Token on it. PIN: the URI's pin-source=file:, else
// ModuleOptions::pin_file, else the environment variable pin_env; a
// pin-value in the URI is refused. PIN files must not be readable by group
// or others. The PIN is kept in memory (wiped when the Token goes) to log
// in again after the module comes back; it is never logged.
//
// Sessions: a bounded pool per Token (TokenOptions::max_sessions), logged
// in once (PKCS#11 login is per application, not per session): no login
// per signature. Every method is thread-safe. A module that fails or is
// gone turns calls into UNAVAILABLE (never a crash): the pool is dropped
// and the next call, at most once per TokenOptions::retry_after, finds the
// token again, logs in again (C_Initialize again if the module was
// finalized) and looks the key up again. A call that waits longer than
// TokenOptions::acquire_timeout for a free session is UNAVAILABLE too.
#ifndef SIMPROV_COMMON_PKCS11_TOKEN_H_
#define SIMPROV_COMMON_PKCS11_TOKEN_H_

#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"
#include "common/pkcs11/uri.h"

namespace simprov::pkcs11 {

// What the program adds to a URI: its flags and environment.
struct ModuleOptions {
  std::string module_path;                     // e.g. --pkcs11-module
  std::string pin_file;                        // e.g. --pkcs11-pin-file
  std::string pin_env = "SIMPROV_PKCS11_PIN";  // variable holding the PIN
};

struct TokenOptions {
  size_t max_sessions = 8;  // bound on the pool (and on concurrent calls)
  absl::Duration acquire_timeout = absl::Seconds(2);
  absl::Duration retry_after = absl::Milliseconds(500);
};

enum class KeyType { kEcP256, kEd25519 };

class Session;
class Key;
struct TokenState;

class Token : public std::enable_shared_from_this<Token> {
 public:
  // Loads the module, finds the one token matching the URI's token,
  // manufacturer, serial, model and slot-id, and logs in. InvalidArgument
  // for a bad configuration (no module, no PIN, pin-value, an unreadable
  // or too open PIN file); FailedPrecondition naming the token for a
  // module that does not load, no or several matching tokens, a wrong or
  // locked PIN.
  static absl::StatusOr<std::shared_ptr<Token>> Open(
      const Uri& uri, const ModuleOptions& options, TokenOptions limits = {});
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  // The private key named by the URI's object (CKA_LABEL) and/or id
  // (CKA_ID) and its public-key object. NotFound "no private key ... in
  // token ..." when absent; FailedPrecondition when several match or the
  // key is neither P-256 nor Ed25519.
  absl::StatusOr<std::shared_ptr<Key>> FindKey(const Uri& key_uri);
  // A new key pair labelled `label` in the token: CKA_TOKEN, CKA_PRIVATE,
  // CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_SIGN only. AlreadyExists
  // if a private key with that label exists.
  absl::StatusOr<std::shared_ptr<Key>> GenerateKey(KeyType type,
                                                   const std::string& label);
  // Relabels the private and public key objects labelled `from` (e.g. once
  // a key's name is known from its public half). NotFound if none.
  absl::Status RelabelKey(const std::string& from, const std::string& to);
  // Destroys the private and public key objects labelled `label`.
  // NotFound if there is none.
  absl::Status DestroyKey(const std::string& label);
  // Readiness: a session answers and is logged in (reconnects if needed).
  absl::Status Check();

  // "token LABEL" as errors name it.
  const std::string& name() const;
  // pkcs11:token=...;object=LABEL;type=private (no module, no PIN source).
  std::string KeyUri(const std::string& label) const;

 private:
  friend class Key;
  explicit Token(std::unique_ptr<TokenState> state);
  std::unique_ptr<TokenState> s_;
};

// A private key in a token. Thread-safe.
class Key {
 public:
  ~Key();
  KeyType type() const { return type_; }
  const std::string& label() const { return label_; }
  // The public half (owned by the Key).
  EVP_PKEY* public_key() const { return public_key_.get(); }
  // P-256: the ECDSA signature of a 32-byte digest, r || s (64 bytes).
  // Ed25519: the signature of the message itself (64 bytes).
  // UNAVAILABLE when the token does not answer.
  absl::StatusOr<std::string> Sign(std::string_view input) const;
  // Readiness: the key is in the token (after a reconnect if needed).
  absl::Status Check() const;
  // CKA_EXTRACTABLE and CKA_SENSITIVE as the module reports them.
  absl::StatusOr<bool> Extractable() const;
  absl::StatusOr<bool> Sensitive() const;
  std::string uri() const { return token_->KeyUri(label_); }

 private:
  friend class Token;
  Key(std::shared_ptr<Token> token, KeyType type, std::string label,
      std::string id, EvpPkeyPtr public_key);
  absl::StatusOr<bool> BoolAttribute(unsigned long attribute) const;

  const std::shared_ptr<Token> token_;
  const KeyType type_;
  const std::string label_;
  const std::string id_;  // CKA_ID, raw
  const EvpPkeyPtr public_key_;
  struct Cache;
  std::unique_ptr<Cache> cache_;  // the object handle, per connection
};

}  // namespace simprov::pkcs11

#endif  // SIMPROV_COMMON_PKCS11_TOKEN_H_
