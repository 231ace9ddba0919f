#include "common/sealed_box.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "common/openssl_ptr.h"

namespace simprov {

namespace {
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
}  // namespace

Bytes SealBox(const Bytes& kek, const Bytes& plaintext, const Bytes& aad,
              Random& random) {
  if (kek.size() != kKekSize) std::abort();
  Bytes nonce = random.Generate(kNonceSize);
  Bytes out;
  out.reserve(1 + kNonceSize + plaintext.size() + kTagSize);
  out.push_back(kSealedBoxVersion);
  out.insert(out.end(), nonce.begin(), nonce.end());
  out.resize(1 + kNonceSize + plaintext.size() + kTagSize);
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  uint8_t* ct = out.data() + 1 + kNonceSize;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, kek.data(),
                         nonce.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize,
                          ct + plaintext.size()) != 1) {
    std::abort();
  }
  return out;
}

absl::StatusOr<Bytes> OpenBox(const Bytes& kek, const Bytes& box,
                              const Bytes& aad) {
  if (kek.size() != kKekSize) {
    return absl::InvalidArgumentError("key-encryption key must be 32 bytes");
  }
  if (box.size() < 1 + kNonceSize + kTagSize || box[0] != kSealedBoxVersion) {
    return absl::DataLossError("sealed box is malformed");
  }
  const size_t ct_len = box.size() - 1 - kNonceSize - kTagSize;
  const uint8_t* nonce = box.data() + 1;
  const uint8_t* ct = nonce + kNonceSize;
  Bytes tag(ct + ct_len, ct + ct_len + kTagSize);
  Bytes plain(ct_len);
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok = ctx &&
            EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                               kek.data(), nonce) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), plain.data(), &len, ct,
                              static_cast<int>(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize,
                                tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), plain.data() + len, &len) == 1;
  if (!ok) {
    SecureWipe(plain);
    return absl::DataLossError(
        "sealed box does not open (wrong key-encryption key or owner)");
  }
  return plain;
}

}  // namespace simprov
