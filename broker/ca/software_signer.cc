#include "broker/ca/software_signer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/digest.h"
#include "common/x509.h"

namespace simprov {
namespace {

// Bound on a key file's size, in bytes.
constexpr size_t kMaxKeyFileBytes = 1024 * 1024;

}  // namespace

absl::Status SoftwareCaSigner::SignCertificate(X509* cert) const {
  if (cert == nullptr) return absl::InvalidArgumentError("null certificate");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::InternalError("EVP_MD_CTX_new failed");
  // EVP_DigestSignInit takes its own reference to the shared key; signing
  // with one EVP_PKEY from many threads is safe in OpenSSL 3.
  if (EVP_DigestSignInit(ctx.get(), nullptr, SigningDigestFor(key_.get()),
                         nullptr, key_.get()) != 1 ||
      X509_sign_ctx(cert, ctx.get()) <= 0) {
    return absl::InternalError(
        absl::StrCat("cannot sign certificate: ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

absl::Status SoftwareCaSigner::SignCrl(X509_CRL* crl) const {
  if (crl == nullptr) return absl::InvalidArgumentError("null CRL");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::InternalError("EVP_MD_CTX_new failed");
  if (EVP_DigestSignInit(ctx.get(), nullptr, SigningDigestFor(key_.get()),
                         nullptr, key_.get()) != 1 ||
      X509_CRL_sign_ctx(crl, ctx.get()) <= 0) {
    return absl::InternalError(
        absl::StrCat("cannot sign CRL: ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CaSigner>> SoftwareCaSignerFactory::Load(
    const std::string& key_path) const {
  absl::StatusOr<std::string> key_pem =
      ReadFileToString(key_path, kMaxKeyFileBytes);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(*key_pem);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!key.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(key_path, ": ", key.status().message()));
  }
  return std::make_unique<SoftwareCaSigner>(*std::move(key));
}

absl::StatusOr<GeneratedCaKey> SoftwareCaSignerFactory::Generate() const {
  EvpPkeyPtr key = GenerateP256Key();
  if (key == nullptr) {
    return absl::InternalError(
        absl::StrCat("key generation failed: ", OpenSslErrorString()));
  }
  absl::StatusOr<std::string> pem = PrivateKeyToPkcs8Pem(key.get());
  if (!pem.ok()) return pem.status();
  return GeneratedCaKey{std::make_unique<SoftwareCaSigner>(std::move(key)),
                        *std::move(pem)};
}

const CaSignerFactory& SoftwareCaSigners() {
  static const SoftwareCaSignerFactory* const factory =
      new SoftwareCaSignerFactory();
  return *factory;
}

}  // namespace simprov
