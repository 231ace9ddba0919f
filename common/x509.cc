#include "common/x509.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace simprov {
namespace {

// Upper bound on an RSA modulus accepted in a CSR, in bits: verifying with
// larger keys costs the broker more than it costs the client to send.
constexpr int kMaxRsaBits = 8192;
constexpr int kMinRsaBits = 2048;
// ub-common-name (RFC 5280), in characters; we bound bytes, which is
// stricter for non-ASCII names.
constexpr size_t kMaxCommonNameBytes = 64;

// Shallow owner of a STACK_OF(X509): frees the stack, not the certificates.
struct X509StackDeleter {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;

// Passphrase callback that refuses: parsing an encrypted key fails instead
// of prompting on the terminal.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) {
  return -1;
}

// A read-only memory BIO over `data`, or null if too large or on failure.
BioPtr ReadOnlyBio(const void* data, size_t len) {
  if (len > kMaxPemSize || len > static_cast<size_t>(INT_MAX)) return nullptr;
  return BioPtr(BIO_new_mem_buf(data, static_cast<int>(len)));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return std::string();
  return std::string(data, static_cast<size_t>(len));
}

// True iff the most recent OpenSSL error on this thread is "no PEM start
// line", i.e. the reader simply ran out of PEM blocks.
bool LastErrorIsPemEof() {
  unsigned long err = ERR_peek_last_error();
  return ERR_GET_LIB(err) == ERR_LIB_PEM &&
         ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
}

absl::Time Asn1TimeToAbsl(const ASN1_TIME* t) {
  struct tm tm;
  std::memset(&tm, 0, sizeof tm);
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromCivil(
      absl::CivilSecond(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                        tm.tm_hour, tm.tm_min, tm.tm_sec),
      absl::UTCTimeZone());
}

std::string NameToString(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || name == nullptr) return std::string();
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    return std::string();
  }
  return BioContents(bio.get());
}

std::string Asn1StringToString(const ASN1_STRING* s) {
  if (s == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string IpToString(const ASN1_OCTET_STRING* ip) {
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  int len = ASN1_STRING_length(ip);
  char buf[INET6_ADDRSTRLEN];
  int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : AF_UNSPEC;
  if (family == AF_UNSPEC ||
      inet_ntop(family, data, buf, sizeof buf) == nullptr) {
    // Malformed (e.g. a name-constraint style address/mask): show raw hex.
    return HexEncode(data, static_cast<size_t>(len < 0 ? 0 : len));
  }
  return buf;
}

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
// general path refuses (test/common/x509_test.cc compares them on mutated
// input).

// A strict DER reader over [p, end): definite, minimal lengths only.
class DerReader {
 public:
  DerReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}

  // Reads one element with `tag`; `whole` spans tag..end of contents.
  bool Next(uint8_t tag, const uint8_t** contents, size_t* len,
            const uint8_t** whole = nullptr, size_t* whole_len = nullptr) {
    const uint8_t* start = p_;
    if (end_ - p_ < 2 || *p_ != tag) return false;
    ++p_;
    size_t n = *p_++;
    if (n & 0x80) {
      size_t bytes = n & 0x7f;
      if (bytes == 0 || bytes > 2 || static_cast<size_t>(end_ - p_) < bytes) {
        return false;
      }
      n = 0;
      for (size_t i = 0; i < bytes; ++i) n = (n << 8) | *p_++;
      // Minimal encoding: long form only from 128, no leading zero byte.
      if (n < 0x80 || (bytes == 2 && n < 0x100)) return false;
    }
    if (static_cast<size_t>(end_ - p_) < n) return false;
    *contents = p_;
    *len = n;
    p_ += n;
    if (whole != nullptr) {
      *whole = start;
      *whole_len = static_cast<size_t>(p_ - start);
    }
    return true;
  }
  bool AtEnd() const { return p_ == end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// SubjectPublicKeyInfo of an uncompressed P-256 point, up to the point.
constexpr uint8_t kP256SpkiPrefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a,
                                       0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                                       0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
                                       0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
constexpr size_t kP256PointSize = 65;
// AlgorithmIdentifier ecdsa-with-SHA256, no parameters (RFC 5758).
constexpr uint8_t kEcdsaWithSha256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                        0xce, 0x3d, 0x04, 0x03, 0x02};

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
  X509_NAME* parsed = d2i_X509_NAME(nullptr, &np, static_cast<long>(name_len));
  if (parsed == nullptr) {
    ERR_clear_error();
    return false;
  }
  X509_NAME_free(parsed);
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

bool SetEcPublicKeyDirect(X509_PUBKEY* dst, EVP_PKEY* key) {
  if (dst == nullptr || key == nullptr ||
      EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
    return false;
  }
  char group[64];
  size_t group_len = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1) {
    return false;
  }
  int curve = OBJ_sn2nid(group);
  if (curve == NID_undef) curve = EC_curve_nist2nid(group);
  if (curve == NID_undef) return false;
  unsigned char point[133];  // uncompressed P-521 is the largest
  size_t point_len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      point, sizeof point, &point_len) != 1) {
    return false;
  }
  auto* copy = static_cast<unsigned char*>(OPENSSL_memdup(point, point_len));
  if (copy == nullptr) return false;
  if (X509_PUBKEY_set0_param(dst, OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                             V_ASN1_OBJECT, OBJ_nid2obj(curve), copy,
                             static_cast<int>(point_len)) != 1) {
    OPENSSL_free(copy);
    return false;
  }
  return true;
}

// ---- Keys ----------------------------------------------------------------

EvpPkeyPtr GenerateP256Key() {
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
}

namespace {

// PKCS#8 PrivateKeyInfo (RFC 5208) of a P-256 key holding RFC 5915's
// ECPrivateKey without parameters and with the public key: the bytes
// OpenSSL's encoder writes (x509_test compares them), without OpenSSL 3.0's
// encoder look-up (~0.1 ms per key, a tenth of a bootstrap's agent CPU).
constexpr uint8_t kP256Pkcs8Head[] = {
    0x30, 0x81, 0x87,                                      // PrivateKeyInfo
    0x02, 0x01, 0x00,                                      // version 0
    0x30, 0x13,                                            // algorithm
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,  // id-ecPublicKey
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,  // P-256
    0x04, 0x6d,                                                  // privateKey
    0x30, 0x6b,                                                  // ECPrivateKey
    0x02, 0x01, 0x01,                                            // version 1
    0x04, 0x20};  // privateKey: 32 bytes follow
constexpr uint8_t kP256Pkcs8PubHead[] = {0xa1, 0x44,         // [1] publicKey
                                         0x03, 0x42, 0x00};  // 65 bytes follow
constexpr size_t kP256Pkcs8Size =
    sizeof kP256Pkcs8Head + 32 + sizeof kP256Pkcs8PubHead + 65;

// False when `key` is not a P-256 private key with an uncompressed point
// (the caller then takes OpenSSL's encoder).
bool P256Pkcs8Pem(EVP_PKEY* key, std::string* pem) {
  char group[32];
  size_t group_len = 0;
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
      EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1") {
    ERR_clear_error();
    return false;
  }
  uint8_t der[kP256Pkcs8Size];
  uint8_t* priv = der + sizeof kP256Pkcs8Head;
  uint8_t* point = priv + 32 + sizeof kP256Pkcs8PubHead;
  BIGNUM* d_raw = nullptr;
  const bool got_d =
      EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d_raw) == 1;
  const std::unique_ptr<BIGNUM, OpenSslDeleter<BN_clear_free>> d(d_raw);
  size_t point_len = 0;
  const bool got =
      got_d && BN_bn2binpad(d.get(), priv, 32) == 32 &&
      EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      point, 65, &point_len) == 1 &&
      point_len == 65 && point[0] == 0x04;
  ERR_clear_error();
  if (!got) {
    OPENSSL_cleanse(der, sizeof der);
    return false;
  }
  std::memcpy(der, kP256Pkcs8Head, sizeof kP256Pkcs8Head);
  std::memcpy(priv + 32, kP256Pkcs8PubHead, sizeof kP256Pkcs8PubHead);
  // PEM (RFC 7468): base64 in lines of 64 characters.
  uint8_t b64[((kP256Pkcs8Size + 2) / 3) * 4 + 1];
  const int b64_len = EVP_EncodeBlock(b64, der, sizeof der);
  OPENSSL_cleanse(der, sizeof der);
  std::string out = "-----BEGIN PRIVATE KEY-----\n";
  out.reserve(out.size() + b64_len + b64_len / 64 + 1 + 26);
  for (int i = 0; i < b64_len; i += 64) {
    out.append(reinterpret_cast<const char*>(b64) + i,
               std::min(64, b64_len - i));
    out.push_back('\n');
  }
  OPENSSL_cleanse(b64, sizeof b64);
  out += "-----END PRIVATE KEY-----\n";
  *pem = std::move(out);
  return true;
}

}  // namespace

absl::StatusOr<std::string> PrivateKeyToPkcs8Pem(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("null private key");
  if (std::string pem; P256Pkcs8Pem(key, &pem)) return pem;
  // Secure-heap BIO: its buffer is cleansed when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (bio == nullptr) return absl::InternalError("BIO_new failed");
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                    nullptr, nullptr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot encode private key as PKCS#8: ", OpenSslErrorString()));
  }
  return BioContents(bio.get());
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(std::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem.data(), pem.size());
  if (bio == nullptr) {
    return absl::InvalidArgumentError("private key PEM is too large");
  }
  EvpPkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    ERR_clear_error();  // The error text could describe secret material.
    return absl::InvalidArgumentError("not an unencrypted PEM private key");
  }
  return key;
}

absl::StatusOr<Bytes> PublicKeyToDer(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("null public key");
  int len = i2d_PUBKEY(key, nullptr);
  if (len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode public key: ", OpenSslErrorString()));
  }
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (i2d_PUBKEY(key, &p) != len) {
    return absl::InternalError(
        absl::StrCat("cannot encode public key: ", OpenSslErrorString()));
  }
  return out;
}

bool SamePublicKey(EVP_PKEY* a, EVP_PKEY* b) {
  if (a == nullptr || b == nullptr) return false;
  bool same = EVP_PKEY_eq(a, b) == 1;
  ERR_clear_error();  // Type mismatches leave errors on the queue.
  return same;
}

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

// ---- Certificates --------------------------------------------------------

absl::StatusOr<X509Ptr> CertFromPem(std::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem.data(), pem.size());
  if (bio == nullptr) {
    return absl::InvalidArgumentError("certificate PEM is too large");
  }
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  if (cert == nullptr) {
    bool eof = LastErrorIsPemEof();
    std::string err = OpenSslErrorString();
    if (eof) return absl::NotFoundError("no certificate in PEM");
    return absl::InvalidArgumentError(
        absl::StrCat("malformed certificate PEM: ", err));
  }
  return cert;
}

absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(std::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem.data(), pem.size());
  if (bio == nullptr) {
    return absl::InvalidArgumentError("certificate PEM is too large");
  }
  std::vector<X509Ptr> certs;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
    if (cert == nullptr) {
      bool eof = LastErrorIsPemEof();
      std::string err = OpenSslErrorString();
      if (!eof) {
        return absl::InvalidArgumentError(absl::StrCat(
            "malformed certificate #", certs.size() + 1, " in PEM: ", err));
      }
      break;
    }
    certs.push_back(std::move(cert));
  }
  if (certs.empty()) return absl::NotFoundError("no certificate in PEM");
  return certs;
}

absl::StatusOr<X509Ptr> CertFromDer(const Bytes& der) {
  if (der.empty()) return absl::InvalidArgumentError("certificate is empty");
  if (der.size() > kMaxPemSize) {
    return absl::InvalidArgumentError("certificate is too large");
  }
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a DER certificate: ", OpenSslErrorString()));
  }
  if (p != der.data() + der.size()) {
    return absl::InvalidArgumentError(
        "certificate has trailing bytes after the DER");
  }
  return cert;
}

Bytes CertToDer(X509* cert) {
  int len = i2d_X509(cert, nullptr);
  if (len <= 0) return Bytes();
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (i2d_X509(cert, &p) != len) return Bytes();
  return out;
}

std::string CertToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    ERR_clear_error();
    return std::string();
  }
  return BioContents(bio.get());
}

absl::Status VerifyChain(X509* leaf, const std::vector<X509*>& intermediates,
                         const std::vector<X509*>& anchors, absl::Time at,
                         std::string_view purpose) {
  if (leaf == nullptr) return absl::InvalidArgumentError("null certificate");
  if (anchors.empty()) return absl::InvalidArgumentError("no trust anchors");
  int purpose_id = 0;
  if (!purpose.empty()) {
    int index = X509_PURPOSE_get_by_sname(std::string(purpose).c_str());
    X509_PURPOSE* p = index < 0 ? nullptr : X509_PURPOSE_get0(index);
    if (p == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown certificate purpose \"", std::string(purpose), "\""));
    }
    purpose_id = X509_PURPOSE_get_id(p);
  }

  X509StorePtr store(X509_STORE_new());
  X509StackPtr untrusted(sk_X509_new_null());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (store == nullptr || untrusted == nullptr || ctx == nullptr) {
    return absl::InternalError("cannot allocate X509 store");
  }
  for (X509* anchor : anchors) {
    // The store takes its own reference.
    if (anchor == nullptr || X509_STORE_add_cert(store.get(), anchor) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot add trust anchor: ", OpenSslErrorString()));
    }
  }
  for (X509* cert : intermediates) {
    // Shallow: the stack borrows the caller's certificates.
    if (cert == nullptr || sk_X509_push(untrusted.get(), cert) <= 0) {
      return absl::InvalidArgumentError("cannot add intermediate certificate");
    }
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("X509_STORE_CTX_init: ", OpenSslErrorString()));
  }
  // Sets X509_V_FLAG_USE_CHECK_TIME.
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()),
                             absl::ToTimeT(at));
  if (purpose_id != 0 &&
      X509_STORE_CTX_set_purpose(ctx.get(), purpose_id) != 1) {
    return absl::InternalError(
        absl::StrCat("X509_STORE_CTX_set_purpose: ", OpenSslErrorString()));
  }
  int ok = X509_verify_cert(ctx.get());
  if (ok == 1) {
    ERR_clear_error();
    return absl::OkStatus();
  }
  int err = X509_STORE_CTX_get_error(ctx.get());
  int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  ERR_clear_error();
  return absl::UnauthenticatedError(
      absl::StrCat("certificate verification failed at depth ", depth, ": ",
                   X509_verify_cert_error_string(err)));
}

namespace {

CertInfo DescribeParts(const X509_NAME* subject, const X509_NAME* issuer,
                       const ASN1_INTEGER* serial_number,
                       const ASN1_TIME* not_before, const ASN1_TIME* not_after,
                       const GENERAL_NAMES* names, bool is_ca) {
  CertInfo info;
  info.subject = NameToString(subject);
  info.issuer = NameToString(issuer);

  BignumPtr serial(ASN1_INTEGER_to_BN(serial_number, nullptr));
  if (serial != nullptr) {
    Bytes bin(static_cast<size_t>(BN_num_bytes(serial.get())));
    if (!bin.empty()) BN_bn2bin(serial.get(), bin.data());
    // (Prefix built separately: GCC 12 warns falsely on string::insert.)
    const std::string sign = BN_is_negative(serial.get()) ? "-" : "";
    info.serial_hex = sign + (bin.empty() ? "00" : HexEncode(bin));
  }

  info.not_before = Asn1TimeToAbsl(not_before);
  info.not_after = Asn1TimeToAbsl(not_after);

  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      switch (name->type) {
        case GEN_DNS:
          info.dns_sans.push_back(Asn1StringToString(name->d.dNSName));
          break;
        case GEN_URI:
          info.uri_sans.push_back(
              Asn1StringToString(name->d.uniformResourceIdentifier));
          break;
        case GEN_IPADD:
          info.ip_sans.push_back(IpToString(name->d.iPAddress));
          break;
        default:
          break;
      }
    }
  }
  info.is_ca = is_ca;
  ERR_clear_error();
  return info;
}

}  // namespace

CertInfo DescribeCert(X509* cert) {
  if (cert == nullptr) return CertInfo();
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  // basicConstraints read directly: X509_get_extension_flags would decode
  // every extension and hash the certificate (~10 us on a new one).
  std::unique_ptr<BASIC_CONSTRAINTS, OpenSslDeleter<BASIC_CONSTRAINTS_free>> bc(
      static_cast<BASIC_CONSTRAINTS*>(
          X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr)));
  return DescribeParts(X509_get_subject_name(cert), X509_get_issuer_name(cert),
                       X509_get0_serialNumber(cert), X509_get0_notBefore(cert),
                       X509_get0_notAfter(cert), names.get(),
                       bc != nullptr && bc->ca != 0);
}

// ---- The agent's fast check of its new certificate ------------------------

namespace {

// Extensions a fast-path leaf may carry, each at most once.
constexpr int kLeafExtensions[] = {NID_basic_constraints,
                                   NID_key_usage,
                                   NID_ext_key_usage,
                                   NID_subject_key_identifier,
                                   NID_authority_key_identifier,
                                   NID_subject_alt_name,
                                   NID_crl_distribution_points};

// Extensions that make OpenSSL's verdict depend on more than this path
// checks (name constraints, policies): their presence anywhere in the chain
// sends the caller to the general path.
bool HasConstraintExtensions(X509* cert) {
  for (int nid :
       {NID_name_constraints, NID_policy_constraints, NID_inhibit_any_policy,
        NID_certificate_policies, NID_policy_mappings, NID_proxyCertInfo}) {
    if (X509_get_ext_by_NID(cert, nid, -1) >= 0) return true;
  }
  return false;
}

bool ValidAt(X509* cert, time_t t) {
  // As OpenSSL's check_cert_time: notBefore <= t <= notAfter.
  return X509_cmp_time(X509_get0_notBefore(cert), &t) == -1 &&
         X509_cmp_time(X509_get0_notAfter(cert), &t) == 1;
}

// The part of the chain that does not depend on the leaf: `issuer` chains
// to `anchors` (OpenSSL's verdict, remembered; validity re-checked at every
// call) and may issue client certificates.
bool IssuerVerified(X509* issuer, const std::vector<X509*>& anchors,
                    absl::Time at) {
  const time_t t = absl::ToTimeT(at);
  if (!ValidAt(issuer, t) || HasConstraintExtensions(issuer)) return false;
  std::string key = ToString(CertToDer(issuer));
  for (X509* a : anchors) {
    if (a == nullptr || !ValidAt(a, t) || HasConstraintExtensions(a)) {
      return false;
    }
    key += ToString(CertToDer(a));
  }
  static absl::Mutex mu(absl::kConstInit);
  static auto* verified = new std::set<std::string>;
  {
    absl::MutexLock lock(&mu);
    if (verified->contains(key)) return true;
  }
  // As X509_verify_cert checks the issuing CA of a "sslclient" leaf.
  const bool ok =
      X509_check_purpose(issuer, X509_PURPOSE_SSL_CLIENT, 1) > 0 &&
      (X509_get_key_usage(issuer) & KU_KEY_CERT_SIGN) != 0 &&
      X509_get0_subject_key_id(issuer) != nullptr &&
      EVP_PKEY_get_base_id(X509_get0_pubkey(issuer)) == EVP_PKEY_EC &&
      VerifyChain(issuer, {}, anchors, at, "").ok();
  ERR_clear_error();
  if (!ok) return false;
  absl::MutexLock lock(&mu);
  if (verified->size() >= 16) verified->clear();  // bounded
  verified->insert(std::move(key));
  return true;
}

void FreeEku(EXTENDED_KEY_USAGE* eku) {
  sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
}
void FreeExtensions(STACK_OF(X509_EXTENSION) * exts) {
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

// Decodes extension `nid` of `exts`; false when it occurs more than once or
// does not decode (OpenSSL then marks the certificate invalid).
template <typename T, typename D>
bool GetExt(const STACK_OF(X509_EXTENSION) * exts, int nid,
            std::unique_ptr<T, D>* out, int* crit) {
  T* v = static_cast<T*>(X509V3_get_d2i(exts, nid, crit, nullptr));
  out->reset(v);
  if (*crit == -2 || (*crit >= 0 && v == nullptr)) return false;
  return true;
}

}  // namespace

std::optional<CertInfo> VerifyP256LeafFast(const Bytes& der, EVP_PKEY* key,
                                           X509* issuer,
                                           const std::vector<X509*>& anchors,
                                           absl::Time at) {
  if (key == nullptr || issuer == nullptr || anchors.empty() ||
      der.size() > kMaxPemSize) {
    return std::nullopt;
  }
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, BIT STRING }
  DerReader top(der.data(), der.data() + der.size());
  const uint8_t* c;
  size_t n;
  if (!top.Next(0x30, &c, &n) || !top.AtEnd()) return std::nullopt;
  DerReader cert(c, c + n);
  const uint8_t *tbs, *tbs_whole;
  size_t tbs_len, tbs_whole_len;
  if (!cert.Next(0x30, &tbs, &tbs_len, &tbs_whole, &tbs_whole_len) ||
      !cert.Next(0x30, &c, &n) || n != sizeof kEcdsaWithSha256 ||
      std::memcmp(c, kEcdsaWithSha256, n) != 0 || !cert.Next(0x03, &c, &n) ||
      n < 2 || c[0] != 0 || !cert.AtEnd()) {
    return std::nullopt;
  }
  const uint8_t* sig = c + 1;
  const size_t sig_len = n - 1;

  DerReader f(tbs, tbs + tbs_len);
  // version [0] EXPLICIT INTEGER v3
  if (!f.Next(0xa0, &c, &n) || n != 3 || c[0] != 0x02 || c[1] != 0x01 ||
      c[2] != 0x02) {
    return std::nullopt;
  }
  const uint8_t *serial, *issuer_name, *validity, *subject, *spki, *exts;
  size_t serial_len, issuer_len, validity_len, subject_len, spki_len, exts_len;
  if (!f.Next(0x02, &c, &n, &serial, &serial_len) || n < 1 || n > 20 ||
      (c[0] & 0x80) != 0 || (n > 1 && c[0] == 0 && (c[1] & 0x80) == 0) ||
      !f.Next(0x30, &c, &n) || n != sizeof kEcdsaWithSha256 ||
      std::memcmp(c, kEcdsaWithSha256, n) != 0 ||
      !f.Next(0x30, &c, &n, &issuer_name, &issuer_len) ||
      !f.Next(0x30, &validity, &validity_len) ||
      !f.Next(0x30, &c, &n, &subject, &subject_len) ||
      !f.Next(0x30, &c, &n, &spki, &spki_len) || !f.Next(0xa3, &c, &n) ||
      !f.AtEnd()) {
    return std::nullopt;
  }
  DerReader ext_wrapper(c, c + n);
  if (!ext_wrapper.Next(0x30, &c, &n, &exts, &exts_len) ||
      !ext_wrapper.AtEnd()) {
    return std::nullopt;
  }

  // The key this device generated.
  uint8_t point[kP256PointSize];
  size_t point_len = 0;
  char group[32];
  size_t group_len = 0;
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
      EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1" ||
      EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      point, sizeof point, &point_len) != 1 ||
      point_len != kP256PointSize ||
      spki_len != sizeof kP256SpkiPrefix + kP256PointSize - 1 ||
      std::memcmp(spki, kP256SpkiPrefix, sizeof kP256SpkiPrefix - 1) != 0 ||
      std::memcmp(spki + sizeof kP256SpkiPrefix - 1, point, point_len) != 0) {
    ERR_clear_error();
    return std::nullopt;
  }

  // Issued by `issuer`: its exact subject, not self-issued.
  const X509_NAME* issuer_subject = X509_get_subject_name(issuer);
  const unsigned char* issuer_enc = nullptr;
  size_t issuer_enc_len = 0;
  if (X509_NAME_get0_der(issuer_subject, &issuer_enc, &issuer_enc_len) != 1 ||
      issuer_enc_len != issuer_len ||
      std::memcmp(issuer_enc, issuer_name, issuer_len) != 0 ||
      (subject_len == issuer_len &&
       std::memcmp(subject, issuer_name, issuer_len) == 0)) {
    return std::nullopt;
  }

  // The parts OpenSSL decodes, by OpenSSL's own decoders.
  const unsigned char* p = subject;
  X509NamePtr subject_name(
      d2i_X509_NAME(nullptr, &p, static_cast<long>(subject_len)));
  if (subject_name == nullptr || p != subject + subject_len) {
    ERR_clear_error();
    return std::nullopt;
  }
  p = serial;
  Asn1IntegerPtr serial_number(
      d2i_ASN1_INTEGER(nullptr, &p, static_cast<long>(serial_len)));
  DerReader times(validity, validity + validity_len);
  const uint8_t *nb, *na;
  size_t nb_len, na_len;
  const auto next_time = [&times](const uint8_t** whole, size_t* len) {
    const uint8_t* tc;
    size_t tn;
    return times.Next(0x17, &tc, &tn, whole, len) ||
           times.Next(0x18, &tc, &tn, whole, len);
  };
  if (serial_number == nullptr || !next_time(&nb, &nb_len) ||
      !next_time(&na, &na_len) || !times.AtEnd()) {
    ERR_clear_error();
    return std::nullopt;
  }
  p = nb;
  Asn1TimePtr not_before(d2i_ASN1_TIME(nullptr, &p, static_cast<long>(nb_len)));
  p = na;
  Asn1TimePtr not_after(d2i_ASN1_TIME(nullptr, &p, static_cast<long>(na_len)));
  p = exts;
  std::unique_ptr<STACK_OF(X509_EXTENSION), OpenSslDeleter<FreeExtensions>>
      extensions(d2i_X509_EXTENSIONS(nullptr, &p, static_cast<long>(exts_len)));
  time_t t = absl::ToTimeT(at);
  if (not_before == nullptr || not_after == nullptr || extensions == nullptr ||
      p != exts + exts_len || X509_cmp_time(not_before.get(), &t) != -1 ||
      X509_cmp_time(not_after.get(), &t) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }

  // Extensions: only known ones, each once, each decoding; what
  // X509_verify_cert checks of a "sslclient" leaf.
  for (int i = 0; i < sk_X509_EXTENSION_num(extensions.get()); ++i) {
    const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(
        sk_X509_EXTENSION_value(extensions.get(), i)));
    if (std::find(std::begin(kLeafExtensions), std::end(kLeafExtensions),
                  nid) == std::end(kLeafExtensions)) {
      return std::nullopt;
    }
  }
  const STACK_OF(X509_EXTENSION)* e = extensions.get();
  std::unique_ptr<BASIC_CONSTRAINTS, OpenSslDeleter<BASIC_CONSTRAINTS_free>> bc;
  std::unique_ptr<ASN1_BIT_STRING, OpenSslDeleter<ASN1_BIT_STRING_free>> ku;
  std::unique_ptr<EXTENDED_KEY_USAGE, OpenSslDeleter<FreeEku>> eku;
  std::unique_ptr<ASN1_OCTET_STRING, OpenSslDeleter<ASN1_OCTET_STRING_free>>
      ski;
  std::unique_ptr<AUTHORITY_KEYID, OpenSslDeleter<AUTHORITY_KEYID_free>> aki;
  std::unique_ptr<CRL_DIST_POINTS, OpenSslDeleter<CRL_DIST_POINTS_free>> crldp;
  GeneralNamesPtr sans;
  int bc_crit, ku_crit, eku_crit, ski_crit, aki_crit, crldp_crit, san_crit;
  const bool decoded =
      GetExt(e, NID_basic_constraints, &bc, &bc_crit) &&
      GetExt(e, NID_key_usage, &ku, &ku_crit) &&
      GetExt(e, NID_ext_key_usage, &eku, &eku_crit) &&
      GetExt(e, NID_subject_key_identifier, &ski, &ski_crit) &&
      GetExt(e, NID_authority_key_identifier, &aki, &aki_crit) &&
      GetExt(e, NID_crl_distribution_points, &crldp, &crldp_crit) &&
      GetExt(e, NID_subject_alt_name, &sans, &san_crit);
  ERR_clear_error();
  if (!decoded) return std::nullopt;
  // Not a CA; OpenSSL knows no critical SKI or AKI.
  if ((bc != nullptr && (bc->ca != 0 || bc->pathlen != nullptr)) ||
      ski_crit == 1 || aki_crit == 1) {
    return std::nullopt;
  }
  // keyUsage: digitalSignature or keyAgreement; extendedKeyUsage: clientAuth.
  if (ku != nullptr && ASN1_BIT_STRING_get_bit(ku.get(), 0) != 1 &&
      ASN1_BIT_STRING_get_bit(ku.get(), 4) != 1) {
    return std::nullopt;
  }
  if (eku != nullptr) {
    bool client = false;
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
      client |=
          OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.get(), i)) == NID_client_auth;
    }
    if (!client) return std::nullopt;
  }
  // authorityKeyIdentifier: exactly the issuer's key identifier.
  const ASN1_OCTET_STRING* issuer_ski = X509_get0_subject_key_id(issuer);
  if (aki == nullptr || aki->keyid == nullptr || aki->issuer != nullptr ||
      aki->serial != nullptr || issuer_ski == nullptr ||
      ASN1_OCTET_STRING_cmp(aki->keyid, issuer_ski) != 0) {
    return std::nullopt;
  }

  if (!IssuerVerified(issuer, anchors, at)) return std::nullopt;

  // The signature, by the issuer's key.
  EvpMdCtxPtr md(EVP_MD_CTX_new());
  const bool signed_by_issuer =
      md != nullptr &&
      EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr,
                           X509_get0_pubkey(issuer)) == 1 &&
      EVP_DigestVerify(md.get(), sig, sig_len, tbs_whole, tbs_whole_len) == 1;
  ERR_clear_error();
  if (!signed_by_issuer) return std::nullopt;

  return DescribeParts(subject_name.get(), issuer_subject, serial_number.get(),
                       not_before.get(), not_after.get(), sans.get(),
                       /*is_ca=*/false);
}

std::string CertDerToPem(const Bytes& der) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio(bio.get(), "CERTIFICATE", "", der.data(),
                                      static_cast<long>(der.size())) <= 0) {
    return "";
  }
  return BioContents(bio.get());
}

// ---- Digests -------------------------------------------------------------

const EVP_MD* SigningDigestFor(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448")) {
    return nullptr;
  }
  return EVP_sha256();
}

Bytes Sha256(const Bytes& data) {
  Bytes out(32);
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(),
                 nullptr) != 1 ||
      len != out.size()) {
    return Bytes();
  }
  return out;
}

Bytes CertSha256(X509* cert) {
  Bytes out(32);
  unsigned int len = 0;
  if (cert == nullptr ||
      X509_digest(cert, EVP_sha256(), out.data(), &len) != 1 ||
      len != out.size()) {
    return Bytes();
  }
  return out;
}

}  // namespace simprov
