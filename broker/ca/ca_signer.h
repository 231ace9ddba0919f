// The seam between the CA and its private keys: a CaSigner signs with one
// key, a CaSignerFactory makes signers from the data dir's key files. The
// software implementation is software_signer.h; an HSM (PKCS#11) one keeps
// the key in the token and only a reference to it in the key file.
#ifndef SIMPROV_BROKER_CA_CA_SIGNER_H_
#define SIMPROV_BROKER_CA_CA_SIGNER_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace simprov {

// Holds (or fronts) a CA private key and signs to-be-signed certificates.
// Implementations must be thread-safe.
class CaSigner {
 public:
  virtual ~CaSigner() = default;
  // The public half of the signing key (owned by the signer).
  virtual EVP_PKEY* public_key() const = 0;
  // Signs `cert` in place (sets signatureAlgorithm and signature). All other
  // fields must already be final. ECDSA/RSA keys sign with SHA-256.
  virtual absl::Status SignCertificate(X509* cert) const = 0;
  // Signs a to-be-signed CRL in place, like SignCertificate.
  virtual absl::Status SignCrl(X509_CRL* crl) const = 0;
};

// A newly generated CA key: its signer and what its key file holds.
struct GeneratedCaKey {
  std::unique_ptr<CaSigner> signer;
  // The key file's content (written with mode 0600, then wiped): the
  // private key itself (PKCS#8 PEM) for the software signer, a reference
  // to the key for an HSM.
  std::string key_file;
};

// Makes the CA's signers. CertificateAuthority asks it for the signer of
// every generation it reads from a data dir (the active one and a staged
// one, which signs once it is activated) and for the keys of a new
// development CA. Implementations must be thread-safe.
class CaSignerFactory {
 public:
  virtual ~CaSignerFactory() = default;
  // The signer for the key file at `key_path` (e.g. DIR/ca/issuing.key or
  // DIR/ca/next/issuing.key). NotFound if the file is missing;
  // FailedPrecondition naming the path if it holds no usable key.
  virtual absl::StatusOr<std::unique_ptr<CaSigner>> Load(
      const std::string& key_path) const = 0;
  // A new key, for a development CA's root or issuing CA (the software
  // factory's are ECDSA P-256).
  virtual absl::StatusOr<GeneratedCaKey> Generate() const = 0;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CA_SIGNER_H_
