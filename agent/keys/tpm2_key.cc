#include "agent/keys/tpm2_key.h"

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"

namespace simprov {

namespace {

constexpr const char* kTpm2Props = "provider=tpm2";

// The library context the provider lives in; unloading it closes the TCTI.
struct LibCtx {
  OSSL_LIB_CTX* ctx = nullptr;
  OSSL_PROVIDER* base = nullptr;
  OSSL_PROVIDER* tpm2 = nullptr;
  ~LibCtx() {
    if (tpm2 != nullptr) OSSL_PROVIDER_unload(tpm2);
    if (base != nullptr) OSSL_PROVIDER_unload(base);
    OSSL_LIB_CTX_free(ctx);
  }
};

// The public half of a TPM key, re-made in the default library context.
absl::StatusOr<EvpPkeyPtr> PublicHalf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  if (len <= 0) {
    return absl::InternalError(absl::StrCat(
        "cannot read the TPM key's public half: ", OpenSslErrorString()));
  }
  const unsigned char* p = der;
  EvpPkeyPtr pub(d2i_PUBKEY(nullptr, &p, len));
  OPENSSL_free(der);
  if (pub == nullptr) {
    return absl::InternalError("the TPM key's public half does not decode");
  }
  return pub;
}

class Tpm2Key final : public DeviceKey {
 public:
  Tpm2Key(std::shared_ptr<LibCtx> lib, EvpPkeyPtr key, EvpPkeyPtr pub)
      : lib_(std::move(lib)), key_(std::move(key)), pub_(std::move(pub)) {}

  EVP_PKEY* public_key() const override { return pub_.get(); }

  absl::StatusOr<Bytes> Sign(const Bytes& message) override {
    const Bytes digest = Sha256(message);
    EvpPkeyCtxPtr ctx(
        EVP_PKEY_CTX_new_from_pkey(lib_->ctx, key_.get(), kTpm2Props));
    size_t len = 0;
    if (ctx == nullptr || EVP_PKEY_sign_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1 ||
        EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) !=
            1) {
      return absl::UnavailableError(absl::StrCat(
          "the TPM cannot sign with the device key: ", OpenSslErrorString()));
    }
    Bytes sig(len);
    if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(),
                      digest.size()) != 1) {
      return absl::UnavailableError(absl::StrCat(
          "the TPM cannot sign with the device key: ", OpenSslErrorString()));
    }
    sig.resize(len);
    return sig;
  }

  absl::StatusOr<std::string> Stored() const override {
    OSSL_ENCODER_CTX* ectx = OSSL_ENCODER_CTX_new_for_pkey(
        key_.get(), OSSL_KEYMGMT_SELECT_KEYPAIR, "PEM", nullptr, kTpm2Props);
    unsigned char* data = nullptr;
    size_t len = 0;
    const bool ok = ectx != nullptr &&
                    OSSL_ENCODER_CTX_get_num_encoders(ectx) > 0 &&
                    OSSL_ENCODER_to_data(ectx, &data, &len) == 1;
    OSSL_ENCODER_CTX_free(ectx);
    if (!ok) {
      return absl::InternalError(absl::StrCat(
          "cannot encode the TPM key blob: ", OpenSslErrorString()));
    }
    std::string pem(reinterpret_cast<char*>(data), len);
    OPENSSL_free(data);
    return pem;
  }

 private:
  std::shared_ptr<LibCtx> lib_;  // outlives the key
  EvpPkeyPtr key_;
  EvpPkeyPtr pub_;
};

class Tpm2KeyStore final : public KeyStore {
 public:
  Tpm2KeyStore(std::shared_ptr<LibCtx> lib, std::string tcti)
      : lib_(std::move(lib)), tcti_(std::move(tcti)) {}

  KeySpec::Kind kind() const override { return KeySpec::Kind::kTpm2; }

  std::string DescribeJson() const override {
    nlohmann::json j;
    j["store"] = "tpm2";
    j["tcti"] = tcti_;
    j["file"] = "device.key";
    j["format"] = "TSS2 PEM (wrapped by the TPM's storage primary key)";
    return j.dump();
  }

  absl::StatusOr<std::unique_ptr<DeviceKey>> Generate() override {
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(lib_->ctx, "EC", kTpm2Props));
    EVP_PKEY* raw = nullptr;
    if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") != 1 ||
        EVP_PKEY_generate(ctx.get(), &raw) != 1) {
      return absl::UnavailableError(absl::StrCat(
          "the TPM cannot generate a P-256 key: ", OpenSslErrorString()));
    }
    return Wrap(EvpPkeyPtr(raw));
  }

  absl::StatusOr<std::unique_ptr<DeviceKey>> Load(
      const std::string& stored) override {
    if (!absl::StrContains(stored, "-----BEGIN TSS2 PRIVATE KEY-----")) {
      return absl::FailedPreconditionError(
          "device.key is not a TPM key blob (TSS2 PEM): was it made with "
          "another --key?");
    }
    EVP_PKEY* raw = nullptr;
    OSSL_DECODER_CTX* dctx = OSSL_DECODER_CTX_new_for_pkey(
        &raw, "PEM", nullptr, nullptr, OSSL_KEYMGMT_SELECT_KEYPAIR, lib_->ctx,
        kTpm2Props);
    const unsigned char* p =
        reinterpret_cast<const unsigned char*>(stored.data());
    size_t len = stored.size();
    const bool ok = dctx != nullptr && OSSL_DECODER_from_data(dctx, &p, &len);
    OSSL_DECODER_CTX_free(dctx);
    if (!ok || raw == nullptr) {
      ERR_clear_error();
      return absl::FailedPreconditionError(absl::StrCat(
          "the TPM at ", tcti_,
          " cannot load device.key (a key wrapped by another TPM?)"));
    }
    return Wrap(EvpPkeyPtr(raw));
  }

 private:
  absl::StatusOr<std::unique_ptr<DeviceKey>> Wrap(EvpPkeyPtr key) {
    auto pub = PublicHalf(key.get());
    if (!pub.ok()) return pub.status();
    return std::make_unique<Tpm2Key>(lib_, std::move(key), std::move(*pub));
  }

  std::shared_ptr<LibCtx> lib_;
  const std::string tcti_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<KeyStore>> OpenTpm2KeyStore(
    const std::string& tcti) {
  // The provider reads its TCTI from the environment when it starts; the
  // tss2 libraries log to stderr unless told otherwise.
  setenv("TPM2OPENSSL_TCTI", tcti.c_str(), 1);
  setenv("TSS2_LOG", "all+NONE", 0);
  auto lib = std::make_shared<LibCtx>();
  lib->ctx = OSSL_LIB_CTX_new();
  if (lib->ctx == nullptr) return absl::InternalError("OSSL_LIB_CTX_new");
  // The default provider first: digests and everything not a TPM key stay
  // in software; key operations ask for provider=tpm2 explicitly.
  lib->base = OSSL_PROVIDER_load(lib->ctx, "default");
  lib->tpm2 = OSSL_PROVIDER_load(lib->ctx, "tpm2");
  if (lib->base == nullptr || lib->tpm2 == nullptr) {
    ERR_clear_error();
    return absl::FailedPreconditionError(
        absl::StrCat("--key tpm2: TPM not reachable at TCTI ", tcti,
                     " (or the tpm2-openssl provider is not installed)"));
  }
  return std::unique_ptr<KeyStore>(
      std::make_unique<Tpm2KeyStore>(std::move(lib), tcti));
}

}  // namespace simprov
