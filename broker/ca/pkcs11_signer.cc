#include "broker/ca/pkcs11_signer.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "broker/ca/software_signer.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/x509.h"

namespace simprov {
namespace {

constexpr size_t kMaxKeyFileBytes = 1024 * 1024;

// The DER signature value for the key's algorithm from the token's raw
// signature (ECDSA: r || s -> ECDSA-Sig-Value; Ed25519: as is).
absl::StatusOr<std::string> SignatureValue(const pkcs11::Key& key,
                                           std::string_view tbs) {
  if (key.type() == pkcs11::KeyType::kEd25519) return key.Sign(tbs);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(tbs.data()), tbs.size(),
         digest);
  auto raw = key.Sign(
      std::string_view(reinterpret_cast<char*>(digest), sizeof digest));
  if (!raw.ok()) return raw.status();
  const auto* p = reinterpret_cast<const unsigned char*>(raw->data());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(p, 32, nullptr);
  BIGNUM* s = BN_bin2bn(p + 32, 32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr ||
      ECDSA_SIG_set0(sig, r, s) != 1) {
    ECDSA_SIG_free(sig);
    BN_free(r);
    BN_free(s);
    return absl::InternalError("cannot encode the ECDSA signature");
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return absl::InternalError("cannot encode ECDSA signature");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

// Puts `value` into a signature BIT STRING (no unused bits).
absl::Status SetSignature(const ASN1_BIT_STRING* target,
                          const std::string& value) {
  auto* bits = const_cast<ASN1_BIT_STRING*>(target);
  if (bits == nullptr ||
      ASN1_BIT_STRING_set(
          bits,
          reinterpret_cast<unsigned char*>(const_cast<char*>(value.data())),
          static_cast<int>(value.size())) != 1) {
    return absl::InternalError("cannot set the signature");
  }
  bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
  bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
  return absl::OkStatus();
}

// A software key of the signer's algorithm, made once, that only sets a
// CRL's two AlgorithmIdentifiers (OpenSSL has no setter for the CRL's inner
// one): its signature is replaced by the token's.
EVP_PKEY* AlgorithmKey(pkcs11::KeyType type) {
  static EVP_PKEY* const p256 = GenerateP256Key().release();
  static EVP_PKEY* const ed25519 =
      EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  return type == pkcs11::KeyType::kEd25519 ? ed25519 : p256;
}

std::string Hex8() {
  unsigned char b[8];
  if (RAND_bytes(b, sizeof b) != 1) return {};
  return HexEncode(b, sizeof b);
}

// The token's identity in a URI: the cache key of its Token.
std::string TokenKey(const pkcs11::Uri& u, const pkcs11::ModuleOptions& o) {
  pkcs11::Uri t;
  t.token = u.token;
  t.manufacturer = u.manufacturer;
  t.serial = u.serial;
  t.model = u.model;
  t.slot_id = u.slot_id;
  t.module_path = u.module_path.empty() ? o.module_path : u.module_path;
  return pkcs11::FormatUri(t);
}

}  // namespace

absl::Status Pkcs11CaSigner::SignCertificate(X509* cert) const {
  if (cert == nullptr) return absl::InvalidArgumentError("null certificate");
  const int nid = key_->type() == pkcs11::KeyType::kEd25519
                      ? NID_ED25519
                      : NID_ecdsa_with_SHA256;
  const ASN1_BIT_STRING* sig = nullptr;
  const X509_ALGOR* outer = nullptr;
  X509_get0_signature(&sig, &outer, cert);
  for (const X509_ALGOR* a : {X509_get0_tbs_sigalg(cert), outer}) {
    if (a == nullptr ||
        X509_ALGOR_set0(const_cast<X509_ALGOR*>(a), OBJ_nid2obj(nid),
                        V_ASN1_UNDEF, nullptr) != 1) {
      return absl::InternalError("cannot set the signature algorithm");
    }
  }
  if (sk_X509_EXTENSION_num(X509_get0_extensions(cert)) > 0 &&
      X509_set_version(cert, X509_VERSION_3) != 1) {
    return absl::InternalError("cannot set the certificate version");
  }
  unsigned char* tbs = nullptr;
  const int len = i2d_re_X509_tbs(cert, &tbs);
  if (len <= 0) return absl::InternalError("cannot encode the certificate");
  auto value = SignatureValue(
      *key_, std::string_view(reinterpret_cast<char*>(tbs), len));
  OPENSSL_free(tbs);
  if (!value.ok()) return value.status();
  return SetSignature(sig, *value);
}

absl::Status Pkcs11CaSigner::SignCrl(X509_CRL* crl) const {
  if (crl == nullptr) return absl::InvalidArgumentError("null CRL");
  EVP_PKEY* alg_key = AlgorithmKey(key_->type());
  const EVP_MD* md =
      key_->type() == pkcs11::KeyType::kEd25519 ? nullptr : EVP_sha256();
  if (alg_key == nullptr || X509_CRL_sign(crl, alg_key, md) <= 0) {
    return absl::InternalError("cannot set the CRL's signature algorithm");
  }
  unsigned char* tbs = nullptr;
  const int len = i2d_re_X509_CRL_tbs(crl, &tbs);
  if (len <= 0) return absl::InternalError("cannot encode the CRL");
  auto value = SignatureValue(
      *key_, std::string_view(reinterpret_cast<char*>(tbs), len));
  OPENSSL_free(tbs);
  if (!value.ok()) return value.status();
  const ASN1_BIT_STRING* sig = nullptr;
  const X509_ALGOR* alg = nullptr;
  X509_CRL_get0_signature(crl, &sig, &alg);
  return SetSignature(sig, *value);
}

Pkcs11CaSignerFactory::Pkcs11CaSignerFactory(pkcs11::ModuleOptions options,
                                             std::string generate_in)
    : options_(std::move(options)), generate_in_(std::move(generate_in)) {}

absl::StatusOr<std::shared_ptr<pkcs11::Token>> Pkcs11CaSignerFactory::TokenFor(
    const pkcs11::Uri& uri) const {
  const std::string key = TokenKey(uri, options_);
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = tokens_.find(key); it != tokens_.end()) return it->second;
  auto token = pkcs11::Token::Open(uri, options_);
  if (!token.ok()) return token.status();
  tokens_[key] = *token;
  return *token;
}

absl::StatusOr<std::unique_ptr<Pkcs11CaSigner>> Pkcs11CaSignerFactory::LoadUri(
    const std::string& text) const {
  auto uri = pkcs11::ParseUri(text);
  if (!uri.ok()) return uri.status();
  auto token = TokenFor(*uri);
  if (!token.ok()) return token.status();
  auto key = (*token)->FindKey(*uri);
  if (!key.ok()) return key.status();
  if ((*key)->type() != pkcs11::KeyType::kEcP256 &&
      (*key)->type() != pkcs11::KeyType::kEd25519) {
    return absl::FailedPreconditionError("unsupported CA key type in token");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    keys_.push_back(*key);
  }
  return std::make_unique<Pkcs11CaSigner>(*std::move(key));
}

absl::StatusOr<std::unique_ptr<CaSigner>> Pkcs11CaSignerFactory::Load(
    const std::string& key_path) const {
  auto text = ReadFileToString(key_path, kMaxKeyFileBytes);
  if (!text.ok()) return text.status();
  absl::string_view ref = absl::StripAsciiWhitespace(*text);
  if (!pkcs11::IsPkcs11Uri(std::string_view(ref.data(), ref.size()))) {
    OPENSSL_cleanse(text->data(), text->size());
    return SoftwareCaSigners().Load(key_path);
  }
  auto signer = LoadUri(std::string(ref));
  if (!signer.ok()) {
    return absl::Status(
        signer.status().code(),
        absl::StrCat(key_path, ": ", signer.status().message()));
  }
  return std::unique_ptr<CaSigner>(*std::move(signer));
}

absl::StatusOr<GeneratedCaKey> Pkcs11CaSignerFactory::Generate() const {
  if (generate_in_.empty()) return SoftwareCaSigners().Generate();
  auto uri = pkcs11::ParseUri(generate_in_);
  if (!uri.ok()) return uri.status();
  auto token = TokenFor(*uri);
  if (!token.ok()) return token.status();
  const std::string suffix = Hex8();
  if (suffix.empty()) return absl::InternalError("RAND_bytes failed");
  const std::string label = absl::StrCat(
      uri->object.empty() ? "simprov-ca" : uri->object, "-", suffix);
  auto key = (*token)->GenerateKey(pkcs11::KeyType::kEcP256, label);
  if (!key.ok()) return key.status();
  // The key file: the key's URI, keeping where module and PIN come from.
  pkcs11::Uri ref = *uri;
  ref.object = label;
  ref.has_id = false;
  ref.id.clear();
  ref.type = "private";
  {
    std::lock_guard<std::mutex> lock(mu_);
    keys_.push_back(*key);
  }
  GeneratedCaKey out;
  out.key_file = pkcs11::FormatUri(ref) + "\n";
  out.signer = std::make_unique<Pkcs11CaSigner>(*std::move(key));
  return out;
}

absl::Status Pkcs11CaSignerFactory::Check() const {
  std::vector<std::shared_ptr<pkcs11::Token>> tokens;
  std::vector<std::shared_ptr<pkcs11::Key>> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, t] : tokens_) tokens.push_back(t);
    std::erase_if(keys_, [](const auto& k) { return k.expired(); });
    for (const auto& k : keys_) {
      if (auto key = k.lock()) keys.push_back(std::move(key));
    }
  }
  for (const auto& t : tokens) {
    if (absl::Status s = t->Check(); !s.ok()) return s;
  }
  for (const auto& k : keys) {
    if (absl::Status s = k->Check(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

bool Pkcs11CaSignerFactory::uses_tokens() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !tokens_.empty();
}

}  // namespace simprov
