#include "common/renew_proof.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/digest.h"

namespace simprov {

namespace {

void Append(Bytes& out, std::string_view field) {
  const uint32_t n = static_cast<uint32_t>(field.size());
  out.push_back(static_cast<uint8_t>(n >> 24));
  out.push_back(static_cast<uint8_t>(n >> 16));
  out.push_back(static_cast<uint8_t>(n >> 8));
  out.push_back(static_cast<uint8_t>(n));
  out.insert(out.end(), field.begin(), field.end());
}

void Append(Bytes& out, const Bytes& field) {
  Append(out, std::string_view(reinterpret_cast<const char*>(field.data()),
                               field.size()));
}

}  // namespace

Bytes RenewProofMessage(std::string_view broker_identity, const Bytes& nonce,
                        const Bytes& leaf_der, const Bytes& csr_der) {
  Bytes out;
  Append(out, kRenewProofLabel);
  Append(out, broker_identity);
  Append(out, nonce);
  Append(out, Sha256(leaf_der));
  Append(out, Sha256(csr_der));
  return out;
}

absl::Status VerifyRenewProof(EVP_PKEY* public_key, const Bytes& message,
                              const Bytes& signature) {
  if (public_key == nullptr ||
      EVP_PKEY_get_base_id(public_key) != EVP_PKEY_EC) {
    return absl::UnauthenticatedError(
        "proof of possession needs an EC certificate key");
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                           public_key) != 1 ||
      EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                       message.data(), message.size()) != 1) {
    ERR_clear_error();
    return absl::UnauthenticatedError(
        "proof of possession does not verify under the certificate's key");
  }
  return absl::OkStatus();
}

}  // namespace simprov
