#include "common/csr.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/der_reader.h"
#include "common/digest.h"
#include "common/x509.h"

namespace simprov {
namespace {

using der::DerReader;
using der::kEcdsaWithSha256;
using der::kP256PointSize;
using der::kP256SpkiPrefix;

// Upper bound on an RSA modulus accepted in a CSR, in bits: verifying with
// larger keys costs the broker more than it costs the client to send.
constexpr int kMaxRsaBits = 8192;
constexpr int kMinRsaBits = 2048;
// ub-common-name (RFC 5280), in characters; we bound bytes, which is
// stricter for non-ASCII names.
constexpr size_t kMaxCommonNameBytes = 64;

// Classifies a CSR's public key: the accepted key type name, or
// InvalidArgument naming the unsupported type.
absl::StatusOr<std::string> ClassifyCsrKey(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
      char group[80] = {0};
      size_t group_len = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1) {
        ERR_clear_error();
        return absl::InvalidArgumentError(
            "unsupported CSR key type: EC with explicit curve parameters");
      }
      int nid = OBJ_txt2nid(group);
      if (nid == NID_X9_62_prime256v1) return std::string("P-256");
      if (nid == NID_secp384r1) return std::string("P-384");
      const char* nist = nid == NID_undef ? nullptr : EC_curve_nid2nist(nid);
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported CSR key type: EC ", nist != nullptr ? nist : group,
          " (accepted: P-256, P-384, Ed25519, RSA-2048..", kMaxRsaBits, ")"));
    }
    case EVP_PKEY_ED25519:
      return std::string("Ed25519");
    case EVP_PKEY_RSA: {
      int bits = EVP_PKEY_get_bits(key);
      std::string type = absl::StrCat("RSA-", bits);
      if (bits < kMinRsaBits || bits > kMaxRsaBits) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unsupported CSR key type: ", type, " (RSA keys must have ",
            kMinRsaBits, " to ", kMaxRsaBits, " bits)"));
      }
      return type;
    }
    default: {
      const char* name = EVP_PKEY_get0_type_name(key);
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported CSR key type: ", name != nullptr ? name : "unknown",
          " (accepted: P-256, P-384, Ed25519, RSA-2048..", kMaxRsaBits, ")"));
    }
  }
}

// Rejects CSR signatures over weak digests (MD5, SHA-1).
absl::Status CheckCsrSignatureAlgorithm(const X509_REQ* req) {
  int sig_nid = X509_REQ_get_signature_nid(req);
  int md_nid = NID_undef;
  int pkey_nid = NID_undef;
  if (!OBJ_find_sigid_algs(sig_nid, &md_nid, &pkey_nid)) {
    return absl::InvalidArgumentError(
        "CSR signature algorithm is not recognised");
  }
  switch (md_nid) {
    case NID_undef:  // EdDSA: no separate digest.
    case NID_sha256:
    case NID_sha384:
    case NID_sha512:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported CSR signature digest: ",
          OBJ_nid2sn(md_nid) != nullptr ? OBJ_nid2sn(md_nid) : "unknown"));
  }
}

// ---- P-256 CSR fast path --------------------------------------------------
//
// OpenSSL 3.0 decodes every public key it meets in DER through its provider
// decoder machinery, which costs several times an ECDSA verification. The
// CSRs devices send are nearly always the same shape: P-256 key, no
// attributes, ecdsa-with-SHA256. For exactly that shape we walk the DER
// ourselves, build the key from its point (checked to be on the curve) and
// verify the signature; anything else, however slightly different, goes
// down the general OpenSSL path. The fast path never accepts what the
// general path refuses (test/common/csr_test.cc compares them on mutated
// input). The DER walking is common/der_reader.h.

// The parts of a fast-path CSR. Pointers into the caller's buffer.
struct P256CsrParts {
  const uint8_t* info = nullptr;  // CertificationRequestInfo, whole DER
  size_t info_len = 0;
  const uint8_t* point = nullptr;  // 04 || X || Y
  const uint8_t* sig = nullptr;    // ECDSA-Sig-Value DER
  size_t sig_len = 0;
};

// True when `der` has exactly the fast path's shape.
bool MatchP256Csr(const Bytes& der, P256CsrParts* out) {
  DerReader top(der.data(), der.data() + der.size());
  const uint8_t* c;
  size_t n;
  if (!top.Next(0x30, &c, &n) || !top.AtEnd()) return false;
  DerReader req(c, c + n);
  const uint8_t* info;
  size_t info_len;
  if (!req.Next(0x30, &c, &n, &out->info, &out->info_len)) return false;
  info = c;
  info_len = n;
  // signatureAlgorithm, then signature BIT STRING with 0 unused bits.
  if (!req.Next(0x30, &c, &n) || n != sizeof kEcdsaWithSha256 ||
      std::memcmp(c, kEcdsaWithSha256, n) != 0) {
    return false;
  }
  if (!req.Next(0x03, &c, &n) || n < 2 || c[0] != 0 || !req.AtEnd()) {
    return false;
  }
  out->sig = c + 1;
  out->sig_len = n - 1;

  DerReader fields(info, info + info_len);
  // version INTEGER 0
  if (!fields.Next(0x02, &c, &n) || n != 1 || c[0] != 0) return false;
  // subject Name: must be a well-formed Name (we do not use it).
  const uint8_t* name;
  size_t name_len;
  if (!fields.Next(0x30, &c, &n, &name, &name_len)) return false;
  const unsigned char* np = name;
  const X509NamePtr parsed(
      d2i_X509_NAME(nullptr, &np, static_cast<long>(name_len)));
  if (parsed == nullptr) {
    ERR_clear_error();
    return false;
  }
  if (np != name + name_len) return false;
  // subjectPKInfo: exactly an uncompressed P-256 point.
  const uint8_t* spki;
  size_t spki_len;
  if (!fields.Next(0x30, &c, &n, &spki, &spki_len) ||
      spki_len != sizeof kP256SpkiPrefix + kP256PointSize - 1 ||
      std::memcmp(spki, kP256SpkiPrefix, sizeof kP256SpkiPrefix) != 0) {
    return false;
  }
  out->point = spki + sizeof kP256SpkiPrefix - 1;
  // attributes [0]: empty.
  if (!fields.Next(0xa0, &c, &n) || n != 0 || !fields.AtEnd()) return false;
  return true;
}

// Builds a P-256 public key from its uncompressed point; null when the
// point is not on the curve.
EvpPkeyPtr P256KeyFromPoint(const uint8_t* point) {
  // One context per thread: fetching the key manager costs a lock each time,
  // and contexts are not documented as safe to share between threads.
  thread_local const EvpPkeyCtxPtr ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  char group[] = "prime256v1";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(
          OSSL_PKEY_PARAM_PUB_KEY, const_cast<uint8_t*>(point), kP256PointSize),
      OSSL_PARAM_construct_end()};
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return EvpPkeyPtr(key);
}

absl::StatusOr<CsrInfo> VerifyP256Csr(const P256CsrParts& parts) {
  EvpPkeyPtr key = P256KeyFromPoint(parts.point);
  if (key == nullptr) {
    return absl::InvalidArgumentError("CSR public key cannot be decoded");
  }
  EvpMdCtxPtr md(EVP_MD_CTX_new());
  if (md == nullptr ||
      EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr,
                           key.get()) != 1 ||
      EVP_DigestVerify(md.get(), parts.sig, parts.sig_len, parts.info,
                       parts.info_len) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "CSR self-signature does not verify (no proof of possession)");
  }
  CsrInfo info;
  info.public_key = std::move(key);
  info.key_type = "P-256";
  return info;
}
}  // namespace

// ---- CSRs ----------------------------------------------------------------

absl::StatusOr<Bytes> CreateCsr(EVP_PKEY* key, std::string_view common_name) {
  if (key == nullptr) return absl::InvalidArgumentError("null key");
  if (common_name.empty() || common_name.size() > kMaxCommonNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("common name must be 1..", kMaxCommonNameBytes, " bytes"));
  }
  X509ReqPtr req(X509_REQ_new());
  if (req == nullptr) return absl::InternalError("X509_REQ_new failed");
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  if (X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_NAME_add_entry_by_NID(
          subject, NID_commonName, MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(common_name.data()),
          static_cast<int>(common_name.size()), -1, 0) != 1 ||
      !(SetEcPublicKeyDirect(X509_REQ_get_X509_PUBKEY(req.get()), key) ||
        X509_REQ_set_pubkey(req.get(), key) == 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot build CSR: ", OpenSslErrorString()));
  }
  EvpMdCtxPtr md_ctx(EVP_MD_CTX_new());
  if (md_ctx == nullptr) return absl::InternalError("EVP_MD_CTX_new failed");
  if (EVP_DigestSignInit(md_ctx.get(), nullptr, SigningDigestFor(key), nullptr,
                         key) != 1 ||
      X509_REQ_sign_ctx(req.get(), md_ctx.get()) <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot sign CSR: ", OpenSslErrorString()));
  }
  int len = i2d_X509_REQ(req.get(), nullptr);
  if (len <= 0) {
    return absl::InternalError(
        absl::StrCat("cannot encode CSR: ", OpenSslErrorString()));
  }
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (i2d_X509_REQ(req.get(), &p) != len) {
    return absl::InternalError(
        absl::StrCat("cannot encode CSR: ", OpenSslErrorString()));
  }
  return out;
}

absl::StatusOr<CsrInfo> ParseAndVerifyCsr(const Bytes& der) {
  if (der.empty()) return absl::InvalidArgumentError("CSR is empty");
  if (der.size() > kMaxCsrDerSize) {
    return absl::InvalidArgumentError(absl::StrCat("CSR is too large (",
                                                   der.size(), " bytes; limit ",
                                                   kMaxCsrDerSize, ")"));
  }
  P256CsrParts parts;
  if (MatchP256Csr(der, &parts)) return VerifyP256Csr(parts);
  return internal::ParseAndVerifyCsrGeneral(der);
}

namespace internal {

absl::StatusOr<CsrInfo> ParseAndVerifyCsrGeneral(const Bytes& der) {
  if (der.empty()) return absl::InvalidArgumentError("CSR is empty");
  if (der.size() > kMaxCsrDerSize) {
    return absl::InvalidArgumentError(absl::StrCat("CSR is too large (",
                                                   der.size(), " bytes; limit ",
                                                   kMaxCsrDerSize, ")"));
  }
  const unsigned char* p = der.data();
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (req == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("CSR is not a DER PKCS#10 request");
  }
  if (p != der.data() + der.size()) {
    return absl::InvalidArgumentError("CSR has trailing bytes after the DER");
  }
  if (X509_REQ_get_version(req.get()) != 0) {
    return absl::InvalidArgumentError("CSR version is not 1");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("CSR public key cannot be decoded");
  }
  // Classify before verifying: never spend a verification on a key type we
  // would refuse anyway.
  absl::StatusOr<std::string> key_type = ClassifyCsrKey(key);
  if (!key_type.ok()) return key_type.status();
  if (absl::Status s = CheckCsrSignatureAlgorithm(req.get()); !s.ok()) {
    return s;
  }
  if (X509_REQ_verify(req.get(), key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "CSR self-signature does not verify (no proof of possession)");
  }
  CsrInfo info;
  if (EVP_PKEY_up_ref(key) != 1) {
    return absl::InternalError("EVP_PKEY_up_ref failed");
  }
  info.public_key.reset(key);
  info.key_type = *std::move(key_type);
  return info;
}

}  // namespace internal

}  // namespace simprov
