// The software CA signer: the private key in process memory, read from (or
// generated for) a PEM key file in the data dir. The default signer of
// CertificateAuthority.
#ifndef SIMPROV_BROKER_CA_SOFTWARE_SIGNER_H_
#define SIMPROV_BROKER_CA_SOFTWARE_SIGNER_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/ca/ca_signer.h"
#include "common/openssl_ptr.h"

namespace simprov {

// A CaSigner over a private key held in process memory.
class SoftwareCaSigner final : public CaSigner {
 public:
  explicit SoftwareCaSigner(EvpPkeyPtr private_key)
      : key_(std::move(private_key)) {}
  EVP_PKEY* public_key() const override { return key_.get(); }
  absl::Status SignCertificate(X509* cert) const override;
  absl::Status SignCrl(X509_CRL* crl) const override;

 private:
  const EvpPkeyPtr key_;  // Never mutated after construction.
};

// Key files hold the private key as PEM (PKCS#8 or traditional; read into
// memory and wiped there); new keys are ECDSA P-256, written as PKCS#8.
class SoftwareCaSignerFactory final : public CaSignerFactory {
 public:
  absl::StatusOr<std::unique_ptr<CaSigner>> Load(
      const std::string& key_path) const override;
  absl::StatusOr<GeneratedCaKey> Generate() const override;
};

// The factory CertificateAuthority uses when given none (one shared,
// stateless instance).
const CaSignerFactory& SoftwareCaSigners();

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_SOFTWARE_SIGNER_H_
