// The CA's keys in a PKCS#11 token (an HSM): the CaSigner signs
// certificates and CRLs with a key that never leaves the token, and the
// data dir's key file holds only the key's PKCS#11 URI (one line, e.g.
// `pkcs11:token=simprov;object=issuing-ca;type=private`).
//
// The factory reads both kinds of key file: a PEM key goes to the software
// signer, a URI to the token. So a data dir can roll over from a file CA to
// an HSM CA (the staged generation's issuing.key holds a URI) and back.
// Development CAs made through it (Generate) get their root and issuing
// keys generated in the token named by `generate_in`.
#ifndef SIMPROV_BROKER_CA_PKCS11_SIGNER_H_
#define SIMPROV_BROKER_CA_PKCS11_SIGNER_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/ca/ca_signer.h"
#include "common/openssl_ptr.h"
#include "common/pkcs11/token.h"

namespace simprov {

// Signs with a key in a token: SHA-256 and ECDSA P-256 (or Ed25519) in the
// token, the signature placed into the certificate or CRL here. A token
// that does not answer makes signing UNAVAILABLE.
class Pkcs11CaSigner final : public CaSigner {
 public:
  explicit Pkcs11CaSigner(std::shared_ptr<pkcs11::Key> key)
      : key_(std::move(key)) {}
  EVP_PKEY* public_key() const override { return key_->public_key(); }
  absl::Status SignCertificate(X509* cert) const override;
  absl::Status SignCrl(X509_CRL* crl) const override;
  const pkcs11::Key& key() const { return *key_; }

 private:
  const std::shared_ptr<pkcs11::Key> key_;
};

class Pkcs11CaSignerFactory final : public CaSignerFactory {
 public:
  // `generate_in`: a pkcs11: URI naming the token (and optionally an
  // object label prefix) for Generate; empty: Generate makes software keys.
  Pkcs11CaSignerFactory(pkcs11::ModuleOptions options, std::string generate_in);

  // PEM: the software signer; "pkcs11:...": the key in the token.
  absl::StatusOr<std::unique_ptr<CaSigner>> Load(
      const std::string& key_path) const override;
  // A P-256 key pair generated in the token (labelled
  // "<object or simprov-ca>-<16 hex digits>"); the key file is its URI.
  absl::StatusOr<GeneratedCaKey> Generate() const override;

  // The signer of the key a URI names (e.g. the operator's --ca-key).
  // InvalidArgument/FailedPrecondition/NotFound with one line naming it.
  absl::StatusOr<std::unique_ptr<Pkcs11CaSigner>> LoadUri(
      const std::string& uri) const;
  // Readiness: every key a signer was made for (still in use) is in its
  // token, and the token answers.
  absl::Status Check() const;
  // Whether any signer came from a token.
  bool uses_tokens() const;

 private:
  absl::StatusOr<std::shared_ptr<pkcs11::Token>> TokenFor(
      const pkcs11::Uri& uri) const;

  const pkcs11::ModuleOptions options_;
  const std::string generate_in_;
  mutable std::mutex mu_;
  // One Token (session pool, login) per module and token.
  mutable std::map<std::string, std::shared_ptr<pkcs11::Token>> tokens_;
  mutable std::vector<std::weak_ptr<pkcs11::Key>> keys_;  // signers' keys
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_PKCS11_SIGNER_H_
