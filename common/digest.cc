#include "common/digest.h"

#include <openssl/hmac.h>

#include <cstdlib>

namespace simprov {
namespace {

Bytes Sha256Of(const void* data, size_t len) {
  Bytes out(kSha256Size);
  unsigned int out_len = 0;
  if (EVP_Digest(data, len, out.data(), &out_len, EVP_sha256(), nullptr) != 1 ||
      out_len != out.size()) {
    std::abort();
  }
  return out;
}

}  // namespace

Bytes Sha256(const Bytes& data) { return Sha256Of(data.data(), data.size()); }

Bytes Sha256(absl::string_view data) {
  return Sha256Of(data.data(), data.size());
}

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
}

void Sha256Hasher::Update(absl::string_view data) {
  if (EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1) {
    std::abort();
  }
}

Bytes Sha256Hasher::Final() {
  Bytes out(kSha256Size);
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1 ||
      len != out.size()) {
    std::abort();
  }
  return out;
}

Bytes HmacSha256(const Bytes& key, const Bytes& data) {
  Bytes out(kSha256Size);
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(),
           data.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    std::abort();
  }
  return out;
}

const EVP_MD* SigningDigestFor(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448")) {
    return nullptr;
  }
  return EVP_sha256();
}

Bytes CertSha256(X509* cert) {
  Bytes out(kSha256Size);
  unsigned int len = 0;
  if (cert == nullptr ||
      X509_digest(cert, EVP_sha256(), out.data(), &len) != 1 ||
      len != out.size()) {
    return Bytes();
  }
  return out;
}

}  // namespace simprov
