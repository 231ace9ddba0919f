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
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"

namespace simprov {
namespace {

// sk_X509_free is a macro; the deleter needs a function.
void FreeX509Stack(STACK_OF(X509) * s) { sk_X509_free(s); }
// Shallow owner of a STACK_OF(X509): frees the stack, not the certificates.
using X509StackPtr =
    std::unique_ptr<STACK_OF(X509), OpenSslDeleter<FreeX509Stack>>;

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

}  // namespace

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

namespace internal {

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

}  // namespace internal

CertInfo DescribeCert(X509* cert) {
  if (cert == nullptr) return CertInfo();
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  // basicConstraints read directly: X509_get_extension_flags would decode
  // every extension and hash the certificate (~10 us on a new one).
  std::unique_ptr<BASIC_CONSTRAINTS, OpenSslDeleter<BASIC_CONSTRAINTS_free>> bc(
      static_cast<BASIC_CONSTRAINTS*>(
          X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr)));
  return internal::DescribeParts(
      X509_get_subject_name(cert), X509_get_issuer_name(cert),
      X509_get0_serialNumber(cert), X509_get0_notBefore(cert),
      X509_get0_notAfter(cert), names.get(), bc != nullptr && bc->ca != 0);
}

std::string CertDerToPem(const Bytes& der) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio(bio.get(), "CERTIFICATE", "", der.data(),
                                      static_cast<long>(der.size())) <= 0) {
    return "";
  }
  return BioContents(bio.get());
}
}  // namespace simprov
