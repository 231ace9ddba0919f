#include "common/token/jose.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstring>
#include <vector>

#include "common/openssl_ptr.h"

namespace simprov::jose {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// The order n of P-256, big-endian.
constexpr unsigned char kP256Order[32] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17,
    0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51};

// OpenSSL objects this file owns beyond common/openssl_ptr.h's aliases.
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OpenSslDeleter<ECDSA_SIG_free>>;
using ParamBldPtr =
    std::unique_ptr<OSSL_PARAM_BLD, OpenSslDeleter<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, OpenSslDeleter<OSSL_PARAM_free>>;

int DecodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool IsP256(EVP_PKEY* key) {
  if (!EVP_PKEY_is_a(key, "EC")) return false;
  char name[64];
  size_t len = 0;
  if (!EVP_PKEY_get_group_name(key, name, sizeof(name), &len)) return false;
  return std::string_view(name, len) == "prime256v1" ||
         std::string_view(name, len) == "P-256";
}

bool InRange(const unsigned char* v) {
  static const unsigned char kZero[32] = {};
  if (std::memcmp(v, kZero, 32) == 0) return false;
  return std::memcmp(v, kP256Order, 32) < 0;
}

std::string JsonString(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace

std::string Base64UrlEncode(std::string_view data) {
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = p[i] << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

bool Base64UrlDecode(std::string_view in, std::string* out) {
  if (in.size() % 4 == 1) return false;
  out->clear();
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = DecodeChar(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero: one encoding per value.
  return (acc & ((1u << bits) - 1)) == 0;
}

bool ParseJsonStrict(std::string_view text, nlohmann::json* out,
                     std::string* error, int max_depth) {
  std::vector<std::vector<std::string>> keys;
  bool duplicate = false;
  bool too_deep = false;
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev,
                nlohmann::json& parsed) -> bool {
    using E = nlohmann::json::parse_event_t;
    switch (ev) {
      case E::object_start:
        keys.emplace_back();
        if (depth >= max_depth) too_deep = true;
        break;
      case E::array_start:
        if (depth >= max_depth) too_deep = true;
        break;
      case E::key: {
        if (keys.empty() || !parsed.is_string()) break;
        const auto& k = parsed.get_ref<const std::string&>();
        for (const std::string& seen : keys.back()) {
          if (seen == k) duplicate = true;
        }
        keys.back().push_back(k);
        break;
      }
      case E::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), cb,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = "not valid JSON";
    return false;
  }
  if (duplicate) {
    *error = "duplicate JSON member";
    return false;
  }
  if (too_deep) {
    *error = "JSON nested too deeply";
    return false;
  }
  *out = std::move(j);
  return true;
}

bool EcdsaDerToRaw(const unsigned char* der, size_t len, std::string* raw) {
  const unsigned char* p = der;
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len)));
  if (!sig || p != der + len) return false;
  return EcdsaSigToRaw(sig.get(), raw);
}

bool EcdsaSigToRaw(const ECDSA_SIG* sig, std::string* raw) {
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig, &r, &s);
  unsigned char buf[64];
  if (BN_bn2binpad(r, buf, 32) != 32 || BN_bn2binpad(s, buf + 32, 32) != 32) {
    return false;
  }
  raw->assign(reinterpret_cast<char*>(buf), 64);
  return true;
}

bool EcdsaRawToDer(std::string_view raw, std::string* der, std::string* error) {
  if (raw.size() != 64) {
    *error = "ES256 signature is not 64 bytes";
    return false;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  if (!InRange(p) || !InRange(p + 32)) {
    *error = "ES256 signature r or s out of range";
    return false;
  }
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(p, 32, nullptr);
  BIGNUM* s = BN_bin2bn(p + 32, 32, nullptr);
  if (!sig || !r || !s || !ECDSA_SIG_set0(sig.get(), r, s)) {
    BN_free(r);
    BN_free(s);
    *error = "out of memory";
    return false;
  }
  unsigned char* out = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &out);
  if (len <= 0) {
    *error = "cannot encode signature";
    return false;
  }
  der->assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return true;
}

std::string AlgForKey(EVP_PKEY* key) {
  if (IsP256(key)) return kAlgEs256;
  if (EVP_PKEY_is_a(key, "ED25519")) return kAlgEdDsa;
  return "";
}

nlohmann::json PublicJwk(EVP_PKEY* key, const std::string& kid) {
  nlohmann::json jwk;
  if (IsP256(key)) {
    BIGNUM* x = nullptr;
    BIGNUM* y = nullptr;
    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    BignumPtr xo(x), yo(y);
    unsigned char xb[32], yb[32];
    if (!x || !y || BN_bn2binpad(x, xb, 32) != 32 ||
        BN_bn2binpad(y, yb, 32) != 32) {
      return nullptr;
    }
    jwk["kty"] = "EC";
    jwk["crv"] = "P-256";
    jwk["x"] =
        Base64UrlEncode(std::string_view(reinterpret_cast<char*>(xb), 32));
    jwk["y"] =
        Base64UrlEncode(std::string_view(reinterpret_cast<char*>(yb), 32));
    jwk["alg"] = kAlgEs256;
  } else if (EVP_PKEY_is_a(key, "ED25519")) {
    unsigned char pub[32];
    size_t len = sizeof(pub);
    if (!EVP_PKEY_get_raw_public_key(key, pub, &len) || len != 32) {
      return nullptr;
    }
    jwk["kty"] = "OKP";
    jwk["crv"] = "Ed25519";
    jwk["x"] =
        Base64UrlEncode(std::string_view(reinterpret_cast<char*>(pub), 32));
    jwk["alg"] = kAlgEdDsa;
  } else {
    return nullptr;
  }
  jwk["kid"] = kid;
  jwk["use"] = "sig";
  return jwk;
}

PkeyPtr PublicKeyFromJwk(const nlohmann::json& jwk, std::string* error) {
  if (!jwk.is_object()) {
    *error = "JWK is not an object";
    return nullptr;
  }
  const std::string kty = JsonString(jwk, "kty");
  const std::string crv = JsonString(jwk, "crv");
  const std::string alg = JsonString(jwk, "alg");
  std::string x, y;
  if (kty == "EC" && crv == "P-256") {
    if (!alg.empty() && alg != kAlgEs256) {
      *error = "JWK alg does not match its P-256 key";
      return nullptr;
    }
    if (!Base64UrlDecode(JsonString(jwk, "x"), &x) ||
        !Base64UrlDecode(JsonString(jwk, "y"), &y) || x.size() != 32 ||
        y.size() != 32) {
      *error = "JWK x/y are not 32-byte base64url";
      return nullptr;
    }
    std::string point = "\x04" + x + y;
    ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME,
                                         "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY,
                                          point.data(), point.size())) {
      *error = "out of memory";
      return nullptr;
    }
    ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* key = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
        EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) <=
            0) {
      *error = "JWK is not a valid P-256 public key";
      return nullptr;
    }
    PkeyPtr out(key);
    // fromdata decodes the point; check it lies on the curve.
    EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
    if (!check || EVP_PKEY_public_check(check.get()) != 1) {
      *error = "JWK point is not on P-256";
      return nullptr;
    }
    return out;
  }
  if (kty == "OKP" && crv == "Ed25519") {
    if (!alg.empty() && alg != kAlgEdDsa) {
      *error = "JWK alg does not match its Ed25519 key";
      return nullptr;
    }
    if (!Base64UrlDecode(JsonString(jwk, "x"), &x) || x.size() != 32) {
      *error = "JWK x is not 32-byte base64url";
      return nullptr;
    }
    EVP_PKEY* key = EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr,
        reinterpret_cast<const unsigned char*>(x.data()), x.size());
    if (!key) {
      *error = "JWK is not a valid Ed25519 key";
      return nullptr;
    }
    return PkeyPtr(key);
  }
  *error = "unsupported JWK (need EC P-256 or OKP Ed25519)";
  return nullptr;
}

std::string Sign(EVP_PKEY* key, std::string_view input) {
  const std::string alg = AlgForKey(key);
  if (alg.empty()) return "";
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  const EVP_MD* md = alg == kAlgEs256 ? EVP_sha256() : nullptr;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1) {
    return "";
  }
  unsigned char sig[80];
  size_t len = sizeof(sig);
  if (EVP_DigestSign(ctx.get(), sig, &len,
                     reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    return "";
  }
  if (alg == kAlgEdDsa) return std::string(reinterpret_cast<char*>(sig), len);
  std::string raw;
  if (!EcdsaDerToRaw(sig, len, &raw)) return "";
  return raw;
}

bool Verify(EVP_PKEY* key, const std::string& alg, std::string_view input,
            std::string_view signature, std::string* error) {
  std::string der;
  std::string_view sig = signature;
  const EVP_MD* md = nullptr;
  if (alg == kAlgEs256) {
    if (!EcdsaRawToDer(signature, &der, error)) return false;
    sig = der;
    md = EVP_sha256();
  } else if (alg == kAlgEdDsa) {
    if (signature.size() != 64) {
      *error = "EdDSA signature is not 64 bytes";
      return false;
    }
  } else {
    *error = "unsupported alg";
    return false;
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) != 1) {
    *error = "cannot initialise verification";
    return false;
  }
  int rc = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
      reinterpret_cast<const unsigned char*>(input.data()), input.size());
  if (rc != 1) {
    *error = "bad signature";
    return false;
  }
  return true;
}

std::string CertThumbprintS256(std::string_view der) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(der.data()), der.size(), md);
  return Base64UrlEncode(
      std::string_view(reinterpret_cast<char*>(md), sizeof(md)));
}

std::string CertificateDer(std::string_view pem_or_der) {
  X509Ptr cert;
  if (pem_or_der.find("-----BEGIN") != std::string_view::npos) {
    BioPtr bio(BIO_new_mem_buf(pem_or_der.data(),
                               static_cast<int>(pem_or_der.size())));
    if (bio)
      cert.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  } else {
    const auto* p = reinterpret_cast<const unsigned char*>(pem_or_der.data());
    cert.reset(d2i_X509(nullptr, &p, static_cast<long>(pem_or_der.size())));
  }
  if (!cert) return "";
  unsigned char* out = nullptr;
  int len = i2d_X509(cert.get(), &out);
  if (len <= 0) return "";
  std::string der(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return der;
}

}  // namespace simprov::jose
