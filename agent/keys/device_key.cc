#include "agent/keys/device_key.h"

#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/keys/tpm2_key.h"
#include "common/csr.h"
#include "common/x509.h"

namespace simprov {

namespace {

class FileKey final : public DeviceKey {
 public:
  explicit FileKey(EvpPkeyPtr key) : key_(std::move(key)) {}
  EVP_PKEY* public_key() const override { return key_.get(); }
  absl::StatusOr<Bytes> Sign(const Bytes& message) override {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = 0;
    if (ctx == nullptr ||
        EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                           key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, message.data(),
                       message.size()) != 1) {
      return absl::InternalError(
          absl::StrCat("cannot sign: ", OpenSslErrorString()));
    }
    Bytes sig(len);
    if (EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(),
                       message.size()) != 1) {
      return absl::InternalError(
          absl::StrCat("cannot sign: ", OpenSslErrorString()));
    }
    sig.resize(len);
    return sig;
  }
  // Exactly today's CSR.
  absl::StatusOr<Bytes> MakeCsr(std::string_view common_name) override {
    return CreateCsr(key_.get(), common_name);
  }
  absl::StatusOr<std::string> Stored() const override {
    return PrivateKeyToPkcs8Pem(key_.get());
  }
  bool tls_capable() const override { return true; }

 private:
  EvpPkeyPtr key_;
};

class FileKeyStore final : public KeyStore {
 public:
  KeySpec::Kind kind() const override { return KeySpec::Kind::kFile; }
  std::string DescribeJson() const override {
    return R"({"store":"file","file":"device.key"})";
  }
  absl::StatusOr<std::unique_ptr<DeviceKey>> Generate() override {
    EvpPkeyPtr key = GenerateP256Key();
    if (key == nullptr) return absl::InternalError("cannot generate a key");
    return std::make_unique<FileKey>(std::move(key));
  }
  absl::StatusOr<std::unique_ptr<DeviceKey>> Load(
      const std::string& stored) override {
    auto key = PrivateKeyFromPem(stored);
    if (!key.ok()) {
      return absl::FailedPreconditionError(
          "device.key is not a PEM private key (a key in hardware? pass the "
          "--key it was made with)");
    }
    return std::make_unique<FileKey>(std::move(*key));
  }
};

}  // namespace

absl::StatusOr<Bytes> DeviceKey::MakeCsr(std::string_view common_name) {
  if (common_name.empty() || common_name.size() > 64) {
    return absl::InvalidArgumentError("common name must be 1..64 bytes");
  }
  X509ReqPtr req(X509_REQ_new());
  if (req == nullptr) return absl::InternalError("X509_REQ_new failed");
  if (X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_NAME_add_entry_by_NID(
          X509_REQ_get_subject_name(req.get()), NID_commonName, MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(common_name.data()),
          static_cast<int>(common_name.size()), -1, 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), public_key()) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot build CSR: ", OpenSslErrorString()));
  }
  // The signature algorithm is part of what is signed: set it first.
  X509_ALGOR* alg = nullptr;
  X509_REQ_get0_signature(req.get(), nullptr,
                          const_cast<const X509_ALGOR**>(&alg));
  if (X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF,
                      nullptr) != 1) {
    return absl::InternalError("cannot set the CSR's signature algorithm");
  }
  unsigned char* tbs = nullptr;
  int tbs_len = i2d_re_X509_REQ_tbs(req.get(), &tbs);
  if (tbs_len <= 0) {
    return absl::InternalError(
        absl::StrCat("cannot encode CSR: ", OpenSslErrorString()));
  }
  Bytes to_sign(tbs, tbs + tbs_len);
  OPENSSL_free(tbs);
  auto sig = Sign(to_sign);
  if (!sig.ok()) return sig.status();
  ASN1_BIT_STRING* bits = ASN1_BIT_STRING_new();
  if (bits == nullptr ||
      ASN1_BIT_STRING_set(bits, sig->data(), static_cast<int>(sig->size())) !=
          1) {
    ASN1_BIT_STRING_free(bits);
    return absl::InternalError("cannot set the CSR's signature");
  }
  bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
  bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
  X509_REQ_set0_signature(req.get(), bits);
  int len = i2d_X509_REQ(req.get(), nullptr);
  if (len <= 0) return absl::InternalError("cannot encode CSR");
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  i2d_X509_REQ(req.get(), &p);
  return out;
}

absl::StatusOr<KeySpec> ParseKeySpec(absl::string_view spec) {
  KeySpec out;
  const size_t colon = spec.find(':');
  const absl::string_view scheme = spec.substr(0, colon);
  const absl::string_view arg =
      colon == absl::string_view::npos ? "" : spec.substr(colon + 1);
  const bool has_arg = colon != absl::string_view::npos;
  if (scheme == "file") {
    if (has_arg) {
      return absl::InvalidArgumentError(
          "--key file takes no argument (the key is DIR/device.key)");
    }
    out.kind = KeySpec::Kind::kFile;
    return out;
  }
  if (scheme == "tpm2") {
    out.kind = KeySpec::Kind::kTpm2;
    if (has_arg && arg.empty()) {
      return absl::InvalidArgumentError("--key tpm2: empty TCTI after ':'");
    }
    out.tcti = has_arg ? std::string(arg) : kDefaultTcti;
    return out;
  }
  if (scheme == "iotsafe") {
    out.kind = KeySpec::Kind::kIotSafe;
    if (has_arg) {
      int n = 0;
      if (!absl::StartsWith(arg, "container=") ||
          !absl::SimpleAtoi(arg.substr(10), &n) || n < 1 || n > 254) {
        return absl::InvalidArgumentError(
            "--key iotsafe takes container=N (N from 1 to 254)");
      }
      out.container = n;
    }
    return out;
  }
  if (scheme == "pkcs11") {
    return absl::InvalidArgumentError(
        "--key pkcs11: not supported yet (use file, tpm2 or iotsafe)");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--key: unknown key store '", scheme,
                   "' (file, tpm2[:TCTI] or iotsafe[:container=N])"));
}

std::string KeyStoreName(KeySpec::Kind kind) {
  switch (kind) {
    case KeySpec::Kind::kFile:
      return "file";
    case KeySpec::Kind::kTpm2:
      return "tpm2";
    case KeySpec::Kind::kIotSafe:
      return "iotsafe";
  }
  return "file";
}

std::unique_ptr<KeyStore> NewFileKeyStore() {
  return std::make_unique<FileKeyStore>();
}

absl::StatusOr<std::unique_ptr<KeyStore>> OpenKeyStore(const KeySpec& spec) {
  switch (spec.kind) {
    case KeySpec::Kind::kFile:
      return NewFileKeyStore();
    case KeySpec::Kind::kTpm2:
      return OpenTpm2KeyStore(spec.tcti);
    case KeySpec::Kind::kIotSafe:
      return absl::InvalidArgumentError(
          "--key iotsafe: not supported yet (use file or tpm2)");
  }
  return NewFileKeyStore();
}

std::string StoreOfBootstrapJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_object() && j.contains("key") && j["key"].is_object() &&
      j["key"].contains("store") && j["key"]["store"].is_string()) {
    return j["key"]["store"].get<std::string>();
  }
  return "file";
}

}  // namespace simprov
