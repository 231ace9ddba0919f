#include "broker/ca/ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/digest.h"
#include "common/x509.h"

namespace simprov {
namespace {

// Serial numbers are exactly this many bytes (RFC 5280 allows up to 20).
constexpr size_t kSerialBytes = 16;
constexpr size_t kMaxCommonNameBytes = 64;  // ub-common-name
constexpr size_t kMaxUriBytes = 1024;
constexpr size_t kMaxDnsNameBytes = 253;
constexpr size_t kMaxServerNames = 100;
// Bound on files read by Load(), in bytes.
constexpr size_t kMaxFileBytes = 1024 * 1024;

struct GeneralNameDeleter {
  void operator()(GENERAL_NAME* g) const { GENERAL_NAME_free(g); }
};
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, GeneralNameDeleter>;
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* g) const { GENERAL_NAMES_free(g); }
};
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;
struct Asn1StringDeleter {
  void operator()(ASN1_STRING* s) const { ASN1_STRING_free(s); }
};
using Asn1StringPtr = std::unique_ptr<ASN1_STRING, Asn1StringDeleter>;
struct AuthorityKeyIdDeleter {
  void operator()(AUTHORITY_KEYID* a) const { AUTHORITY_KEYID_free(a); }
};
using AuthorityKeyIdPtr =
    std::unique_ptr<AUTHORITY_KEYID, AuthorityKeyIdDeleter>;

// ---- Files ---------------------------------------------------------------

absl::Status ErrnoError(std::string_view what, const std::string& path,
                        int err) {
  std::string msg =
      absl::StrCat(std::string(what), " ", path, ": ", std::strerror(err));
  if (err == EEXIST) return absl::AlreadyExistsError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

// Writes a secret (0600) and wipes the in-memory copy.
absl::Status WriteSecretFile(const std::string& path, std::string& secret) {
  absl::Status s = WriteFileAtomic(path, secret, 0600);
  OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
  return s;
}

// Creates directory `path` with `mode` unless it exists; an existing
// directory is left as is unless `force_mode`, which chmods it to `mode`.
absl::Status MakeDir(const std::string& path, mode_t mode, bool force_mode) {
  if (::mkdir(path.c_str(), mode) == 0) {
    // mkdir's mode is filtered by the umask; make it exact.
    if (::chmod(path.c_str(), mode) != 0) {
      return ErrnoError("chmod", path, errno);
    }
    return absl::OkStatus();
  }
  if (errno != EEXIST) return ErrnoError("mkdir", path, errno);
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoError("stat", path, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a directory"));
  }
  if (force_mode && (st.st_mode & 07777) != mode &&
      ::chmod(path.c_str(), mode) != 0) {
    return ErrnoError("chmod", path, errno);
  }
  return absl::OkStatus();
}

// ---- Certificate construction --------------------------------------------

// A serial number: kSerialBytes from `random`, top bit cleared (positive)
// and the next bit set (fixed DER length, never zero).
Bytes MakeSerial(Random& random) {
  Bytes serial = random.Generate(kSerialBytes);
  serial[0] = static_cast<uint8_t>((serial[0] & 0x3f) | 0x40);
  return serial;
}

struct DistPointsDeleter {
  void operator()(CRL_DIST_POINTS* d) const { CRL_DIST_POINTS_free(d); }
};
using DistPointsPtr = std::unique_ptr<CRL_DIST_POINTS, DistPointsDeleter>;
struct CrlDeleter {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using CrlPtr = std::unique_ptr<X509_CRL, CrlDeleter>;
struct RevokedDeleter {
  void operator()(X509_REVOKED* r) const { X509_REVOKED_free(r); }
};
using RevokedPtr = std::unique_ptr<X509_REVOKED, RevokedDeleter>;

struct SanEntry {
  int type;           // GEN_DNS, GEN_IPADD or GEN_URI.
  std::string value;  // ASCII text, or 4/16 raw address bytes for GEN_IPADD.
};

// Everything that varies between the certificates this CA creates.
struct CertSpec {
  EVP_PKEY* public_key = nullptr;
  std::string common_name;
  Bytes serial;
  int64_t not_before = 0;  // Unix seconds.
  int64_t not_after = 0;   // Unix seconds.
  // Null for a self-signed certificate (issuer = subject, no AKI).
  const X509_NAME* issuer_name = nullptr;
  const Bytes* issuer_ski = nullptr;
  // X509V3 config values (compile-time constants only: never user input).
  const char* basic_constraints = nullptr;
  const char* key_usage = nullptr;
  const char* ext_key_usage = nullptr;  // Null: no EKU.
  std::vector<SanEntry> sans;
  // If non-empty, replaces CN=common_name (checked by the caller).
  std::vector<std::pair<std::string, std::string>> subject;
  std::string crl_url;  // If non-empty: a CRL Distribution Points URI.
};

// CRL Distribution Points with one full-name URI.
absl::Status AddCrlDistributionPoint(X509* cert, const std::string& url) {
  DistPointsPtr points(sk_DIST_POINT_new_null());
  DIST_POINT* point = DIST_POINT_new();
  GENERAL_NAME* name = GENERAL_NAME_new();
  ASN1_IA5STRING* value = ASN1_IA5STRING_new();
  if (points == nullptr || point == nullptr || name == nullptr ||
      value == nullptr ||
      ASN1_STRING_set(value, url.data(), static_cast<int>(url.size())) != 1) {
    DIST_POINT_free(point);
    GENERAL_NAME_free(name);
    ASN1_IA5STRING_free(value);
    return absl::InternalError("allocation failed");
  }
  GENERAL_NAME_set0_value(name, GEN_URI, value);
  if (sk_DIST_POINT_push(points.get(), point) <= 0) {
    DIST_POINT_free(point);
    GENERAL_NAME_free(name);
    return absl::InternalError("allocation failed");
  }
  point->distpoint = DIST_POINT_NAME_new();
  if (point->distpoint == nullptr) {
    GENERAL_NAME_free(name);
    return absl::InternalError("allocation failed");
  }
  point->distpoint->type = 0;  // fullName
  point->distpoint->name.fullname = sk_GENERAL_NAME_new_null();
  if (point->distpoint->name.fullname == nullptr ||
      sk_GENERAL_NAME_push(point->distpoint->name.fullname, name) <= 0) {
    GENERAL_NAME_free(name);
    return absl::InternalError("allocation failed");
  }
  if (X509_add1_ext_i2d(cert, NID_crl_distribution_points, points.get(), 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return absl::InternalError(absl::StrCat(
        "cannot add CRL distribution points: ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

absl::Status AddConfExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, nullptr, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return absl::InternalError(absl::StrCat("cannot add ", OBJ_nid2sn(nid),
                                            ": ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

absl::Status AddSubjectAltNames(X509* cert, const std::vector<SanEntry>& sans) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return absl::InternalError("allocation failed");
  for (const SanEntry& san : sans) {
    Asn1StringPtr value(san.type == GEN_IPADD ? ASN1_OCTET_STRING_new()
                                              : ASN1_IA5STRING_new());
    GeneralNamePtr name(GENERAL_NAME_new());
    if (value == nullptr || name == nullptr ||
        ASN1_STRING_set(value.get(), san.value.data(),
                        static_cast<int>(san.value.size())) != 1) {
      return absl::InternalError("allocation failed");
    }
    GENERAL_NAME_set0_value(name.get(), san.type, value.release());
    if (sk_GENERAL_NAME_push(names.get(), name.get()) <= 0) {
      return absl::InternalError("allocation failed");
    }
    name.release();  // Now owned by `names`.
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot add subjectAltName: ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

// SKI by RFC 5280 method 1 (SHA-1 of the subjectPublicKey bits) and, when
// there is an issuer, AKI keyid = the issuer's SKI.
absl::Status AddKeyIdentifiers(X509* cert, const Bytes* issuer_ski) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  Asn1StringPtr ski(ASN1_OCTET_STRING_new());
  if (ski == nullptr ||
      X509_pubkey_digest(cert, EVP_sha1(), md, &md_len) != 1 ||
      ASN1_OCTET_STRING_set(ski.get(), md, static_cast<int>(md_len)) != 1 ||
      X509_add1_ext_i2d(cert, NID_subject_key_identifier, ski.get(), 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return absl::InternalError(absl::StrCat("cannot add subjectKeyIdentifier: ",
                                            OpenSslErrorString()));
  }
  if (issuer_ski == nullptr) return absl::OkStatus();
  AuthorityKeyIdPtr akid(AUTHORITY_KEYID_new());
  if (akid == nullptr) return absl::InternalError("allocation failed");
  akid->keyid = ASN1_OCTET_STRING_new();
  if (akid->keyid == nullptr ||
      ASN1_OCTET_STRING_set(akid->keyid, issuer_ski->data(),
                            static_cast<int>(issuer_ski->size())) != 1 ||
      X509_add1_ext_i2d(cert, NID_authority_key_identifier, akid.get(), 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return absl::InternalError(absl::StrCat(
        "cannot add authorityKeyIdentifier: ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

// An unsigned X.509 v3 certificate per `spec`.
// Leaf certificates take the fast path (see SetEcPublicKeyDirect); CA
// certificates keep the cached key that Load() compares against.
bool SetPublicKey(X509* cert, const CertSpec& spec) {
  if (spec.ext_key_usage != nullptr &&
      SetEcPublicKeyDirect(const_cast<X509_PUBKEY*>(X509_get_X509_PUBKEY(cert)),
                           spec.public_key)) {
    return true;
  }
  return X509_set_pubkey(cert, spec.public_key) == 1;
}

absl::StatusOr<X509Ptr> BuildCertificate(const CertSpec& spec) {
  X509Ptr cert(X509_new());
  BignumPtr serial_bn(BN_bin2bn(spec.serial.data(),
                                static_cast<int>(spec.serial.size()), nullptr));
  if (cert == nullptr || serial_bn == nullptr) {
    return absl::InternalError("allocation failed");
  }
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(serial_bn.get(), nullptr));
  X509_NAME* subject = X509_get_subject_name(cert.get());
  bool subject_ok = true;
  if (spec.subject.empty()) {
    subject_ok =
        X509_NAME_add_entry_by_NID(
            subject, NID_commonName, MBSTRING_UTF8,
            reinterpret_cast<const unsigned char*>(spec.common_name.data()),
            static_cast<int>(spec.common_name.size()), -1, 0) == 1;
  }
  for (const auto& [type, value] : spec.subject) {
    if (X509_NAME_add_entry_by_txt(
            subject, type.c_str(), MBSTRING_UTF8,
            reinterpret_cast<const unsigned char*>(value.data()),
            static_cast<int>(value.size()), -1, 0) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("subject attribute ", type, "=", value,
                       " is not acceptable: ", OpenSslErrorString()));
    }
  }
  if (serial == nullptr || X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      X509_set_serialNumber(cert.get(), serial.get()) != 1 || !subject_ok ||
      X509_set_issuer_name(cert.get(), spec.issuer_name != nullptr
                                           ? spec.issuer_name
                                           : subject) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                    static_cast<time_t>(spec.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                    static_cast<time_t>(spec.not_after)) == nullptr ||
      !SetPublicKey(cert.get(), spec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot build certificate: ", OpenSslErrorString()));
  }
  absl::Status s = AddConfExtension(cert.get(), NID_basic_constraints,
                                    spec.basic_constraints);
  if (s.ok()) s = AddConfExtension(cert.get(), NID_key_usage, spec.key_usage);
  if (s.ok() && spec.ext_key_usage != nullptr) {
    s = AddConfExtension(cert.get(), NID_ext_key_usage, spec.ext_key_usage);
  }
  if (s.ok()) s = AddKeyIdentifiers(cert.get(), spec.issuer_ski);
  if (s.ok() && !spec.sans.empty())
    s = AddSubjectAltNames(cert.get(), spec.sans);
  if (s.ok() && !spec.crl_url.empty()) {
    s = AddCrlDistributionPoint(cert.get(), spec.crl_url);
  }
  if (!s.ok()) return s;
  return cert;
}

// ---- Input validation ----------------------------------------------------

absl::Status CheckCommonName(std::string_view cn) {
  if (cn.empty() || cn.size() > kMaxCommonNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("common name must be 1..", kMaxCommonNameBytes, " bytes"));
  }
  for (unsigned char c : cn) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          "common name contains a control character");
    }
  }
  return absl::OkStatus();  // UTF-8 validity is checked by OpenSSL.
}

absl::Status CheckUri(std::string_view uri) {
  if (uri.size() > kMaxUriBytes) {
    return absl::InvalidArgumentError("device id URI is too long");
  }
  for (unsigned char c : uri) {
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(
          "device id URI must be printable ASCII without spaces");
    }
  }
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0 ||
      !std::isalpha(static_cast<unsigned char>(uri[0]))) {
    return absl::InvalidArgumentError("device id URI has no scheme");
  }
  return absl::OkStatus();
}

// A hostname: LDH labels of 1..63 bytes separated by dots, optionally a
// leading "*." wildcard label.
absl::Status CheckDnsName(std::string_view name) {
  if (name.empty() || name.size() > kMaxDnsNameBytes) {
    return absl::InvalidArgumentError("DNS name must be 1..253 bytes");
  }
  std::string_view rest = name;
  if (rest.substr(0, 2) == "*.") rest.remove_prefix(2);
  size_t label_len = 0;
  for (size_t i = 0; i <= rest.size(); ++i) {
    if (i == rest.size() || rest[i] == '.') {
      if (label_len == 0 || label_len > 63) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid DNS name \"", std::string(name), "\""));
      }
      label_len = 0;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(rest[i]);
    if (!std::isalnum(c) && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid DNS name \"", std::string(name), "\""));
    }
    ++label_len;
  }
  return absl::OkStatus();
}

// The 4- or 16-byte binary form of an IPv4/IPv6 literal, or false.
bool ParseIp(const std::string& text, std::string* out) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    out->assign(reinterpret_cast<char*>(buf), 4);
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) {
    out->assign(reinterpret_cast<char*>(buf), 16);
    return true;
  }
  return false;
}

// Validity bounds in Unix seconds for a certificate issued at `now`:
// [now - kBackdate, now + lifetime], clamped into the issuer's validity.
struct Validity {
  int64_t not_before;
  int64_t not_after;
};
absl::StatusOr<Validity> ComputeValidity(absl::Time now,
                                         absl::Duration lifetime,
                                         absl::Time issuer_not_before,
                                         absl::Time issuer_not_after) {
  if (lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("certificate lifetime must be positive");
  }
  if (now < issuer_not_before || now >= issuer_not_after) {
    return absl::FailedPreconditionError(
        absl::StrCat("issuing CA is not valid at ", absl::FormatTime(now),
                     " (valid ", absl::FormatTime(issuer_not_before), " to ",
                     absl::FormatTime(issuer_not_after), ")"));
  }
  absl::Time nb =
      std::max(now - CertificateAuthority::kBackdate, issuer_not_before);
  absl::Time na = std::min(now + lifetime, issuer_not_after);
  // Whole seconds, rounded inwards (never longer than asked).
  Validity v{
      absl::ToUnixSeconds(absl::Ceil(nb - absl::UnixEpoch(), absl::Seconds(1)) +
                          absl::UnixEpoch()),
      absl::ToUnixSeconds(na)};
  if (v.not_after <= v.not_before) {
    return absl::InvalidArgumentError("certificate lifetime is too short");
  }
  return v;
}

}  // namespace

// ---- SoftwareCaSigner ----------------------------------------------------

absl::Status SoftwareCaSigner::SignCertificate(X509* cert) const {
  if (cert == nullptr) return absl::InvalidArgumentError("null certificate");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::InternalError("EVP_MD_CTX_new failed");
  // EVP_DigestSignInit takes its own reference to the shared key; signing
  // with one EVP_PKEY from many threads is safe in OpenSSL 3.
  if (EVP_DigestSignInit(ctx.get(), nullptr, SigningDigestFor(key_.get()),
                         nullptr, key_.get()) != 1 ||
      X509_sign_ctx(cert, ctx.get()) <= 0) {
    return absl::InternalError(
        absl::StrCat("cannot sign certificate: ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

absl::Status SoftwareCaSigner::SignCrl(X509_CRL* crl) const {
  if (crl == nullptr) return absl::InvalidArgumentError("null CRL");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::InternalError("EVP_MD_CTX_new failed");
  if (EVP_DigestSignInit(ctx.get(), nullptr, SigningDigestFor(key_.get()),
                         nullptr, key_.get()) != 1 ||
      X509_CRL_sign_ctx(crl, ctx.get()) <= 0) {
    return absl::InternalError(
        absl::StrCat("cannot sign CRL: ", OpenSslErrorString()));
  }
  return absl::OkStatus();
}

// ---- CertificateAuthority ------------------------------------------------

struct CertificateAuthority::LeafProfile {
  EVP_PKEY* public_key = nullptr;
  std::vector<std::pair<std::string, std::string>> subject;
  std::string crl_url;
  std::string common_name;
  absl::Duration ttl;
  const char* ext_key_usage = nullptr;  // "clientAuth" or "serverAuth".
  std::vector<SanEntry> sans;
};

namespace {
Bytes SkiOf(X509* cert) {
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(cert);
  if (ski == nullptr) return Bytes();
  const unsigned char* p = ASN1_STRING_get0_data(ski);
  return Bytes(p, p + ASN1_STRING_length(ski));
}

bool IsSelfSigned(X509* cert) {
  return X509_check_issued(cert, cert) == X509_V_OK;
}

// Writes files in order; each atomically.
struct PendingFile {
  std::string path;
  std::string data;
  mode_t mode;
};
absl::Status WriteAll(std::vector<PendingFile>& files) {
  for (PendingFile& f : files) {
    absl::Status s = f.mode == 0600 ? WriteSecretFile(f.path, f.data)
                                    : WriteFileAtomic(f.path, f.data, f.mode);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string ChainPemOf(const CaMaterial& m) {
  std::string pem = CertToPem(m.issuing.get());
  for (const X509Ptr& c : m.intermediates) pem += CertToPem(c.get());
  return pem;
}
}  // namespace

struct CertificateAuthority::Generation {
  X509Ptr root;
  X509Ptr issuing;
  std::vector<X509Ptr> intermediates;  // nearest first, root excluded
  std::unique_ptr<CaSigner> signer;    // null for retired generations
  absl::Time not_before;
  absl::Time not_after;
  Bytes ski;
  std::vector<Bytes> chain_der;
  std::string chain_pem;
};

CertificateAuthority::CertificateAuthority(GenerationPtr active, Clock& clock,
                                           Random& random)
    : clock_(clock), random_(random), active_(std::move(active)) {
  absl::MutexLock lock(&mu_);
  RecomputeAnchorsLocked();
}

CertificateAuthority::~CertificateAuthority() = default;

absl::StatusOr<CertificateAuthority::GenerationPtr>
CertificateAuthority::MakeGeneration(X509Ptr root, X509Ptr issuing,
                                     std::vector<X509Ptr> intermediates,
                                     std::unique_ptr<CaSigner> signer,
                                     absl::Time now) {
  if (root == nullptr || issuing == nullptr) {
    return absl::InvalidArgumentError("missing root or issuing CA");
  }
  if (signer != nullptr &&
      !SamePublicKey(X509_get0_pubkey(issuing.get()), signer->public_key())) {
    return absl::FailedPreconditionError(
        "issuing CA key does not match the issuing CA certificate");
  }
  // Also caches each certificate's decoded extensions, so later concurrent
  // reads never race on OpenSSL's lazy caching.
  if (X509_check_ca(root.get()) == 0 || X509_check_ca(issuing.get()) == 0 ||
      !DescribeCert(issuing.get()).is_ca) {
    return absl::FailedPreconditionError(
        "root or issuing certificate is not a CA certificate");
  }
  std::vector<X509*> chain;
  for (const X509Ptr& c : intermediates) {
    if (X509_check_ca(c.get()) == 0) {
      return absl::FailedPreconditionError(
          "an intermediate certificate is not a CA certificate");
    }
    chain.push_back(c.get());
  }
  if (X509_get0_subject_key_id(issuing.get()) == nullptr) {
    return absl::FailedPreconditionError(
        "issuing CA certificate has no subjectKeyIdentifier");
  }
  if (signer != nullptr && X509_cmp(root.get(), issuing.get()) != 0) {
    if (absl::Status s =
            VerifyChain(issuing.get(), chain, {root.get()}, now, "");
        !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("issuing CA does not chain to the root: ", s.message()));
    }
  }
  auto g = std::make_shared<Generation>();
  g->not_before = DescribeCert(issuing.get()).not_before;
  g->not_after = DescribeCert(issuing.get()).not_after;
  g->ski = SkiOf(issuing.get());
  g->chain_der.push_back(CertToDer(issuing.get()));
  g->chain_pem = CertToPem(issuing.get());
  for (const X509Ptr& c : intermediates) {
    g->chain_der.push_back(CertToDer(c.get()));
    g->chain_pem += CertToPem(c.get());
  }
  g->root = std::move(root);
  g->issuing = std::move(issuing);
  g->intermediates = std::move(intermediates);
  g->signer = std::move(signer);
  return GenerationPtr(std::move(g));
}

void CertificateAuthority::RecomputeAnchorsLocked() {
  anchors_der_.clear();
  anchors_pem_.clear();
  auto add = [&](const GenerationPtr& g) {
    if (g == nullptr) return;
    Bytes der = CertToDer(g->root.get());
    if (std::find(anchors_der_.begin(), anchors_der_.end(), der) !=
        anchors_der_.end()) {
      return;
    }
    anchors_der_.push_back(std::move(der));
    anchors_pem_ += CertToPem(g->root.get());
  };
  add(active_);
  add(staged_);
  for (const GenerationPtr& g : retired_) add(g);
}

CertificateAuthority::GenerationPtr CertificateAuthority::Active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>>
CertificateAuthority::Create(X509Ptr root, X509Ptr issuing,
                             std::unique_ptr<CaSigner> signer, Clock& clock,
                             Random& random,
                             std::vector<X509Ptr> intermediates) {
  if (signer == nullptr) return absl::InvalidArgumentError("missing signer");
  auto g =
      MakeGeneration(std::move(root), std::move(issuing),
                     std::move(intermediates), std::move(signer), clock.Now());
  if (!g.ok()) return g.status();
  return std::unique_ptr<CertificateAuthority>(
      new CertificateAuthority(*std::move(g), clock, random));
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>>
CertificateAuthority::CreateDevelopment(const std::string& dir, Clock& clock,
                                        Random& random,
                                        const std::string& name) {
  const std::string ca_dir = dir + "/ca";
  const std::string root_pem_path = dir + "/ca.pem";
  const std::string root_key_path = ca_dir + "/root.key";
  const std::string issuing_key_path = ca_dir + "/issuing.key";
  const std::string issuing_pem_path = ca_dir + "/issuing.pem";
  const std::string chain_pem_path = ca_dir + "/chain.pem";

  if (absl::Status s = MakeDir(dir, 0700, /*force_mode=*/false); !s.ok()) {
    return s;
  }
  for (const std::string& path :
       {root_pem_path, root_key_path, issuing_key_path}) {
    if (PathExists(path)) {
      return absl::AlreadyExistsError(absl::StrCat(
          path, " already exists; refusing to overwrite an existing CA"));
    }
  }
  if (absl::Status s = MakeDir(ca_dir, 0700, /*force_mode=*/true); !s.ok()) {
    return s;
  }

  const absl::Time now = clock.Now();
  EvpPkeyPtr root_key = GenerateP256Key();
  EvpPkeyPtr issuing_key = GenerateP256Key();
  if (root_key == nullptr || issuing_key == nullptr) {
    return absl::InternalError(
        absl::StrCat("key generation failed: ", OpenSslErrorString()));
  }

  // Root: self-signed.
  absl::StatusOr<Validity> root_validity = ComputeValidity(
      now, kRootValidity, absl::InfinitePast(), absl::InfiniteFuture());
  if (!root_validity.ok()) return root_validity.status();
  CertSpec root_spec;
  root_spec.public_key = root_key.get();
  root_spec.common_name = name + " root CA";
  root_spec.serial = MakeSerial(random);
  root_spec.not_before = root_validity->not_before;
  root_spec.not_after = root_validity->not_after;
  root_spec.basic_constraints = "critical,CA:TRUE";
  root_spec.key_usage = "critical,keyCertSign,cRLSign";
  absl::StatusOr<X509Ptr> root = BuildCertificate(root_spec);
  if (!root.ok()) return root.status();
  SoftwareCaSigner root_signer(std::move(root_key));
  if (absl::Status s = root_signer.SignCertificate(root->get()); !s.ok()) {
    return s;
  }
  const Bytes root_ski = SkiOf(root->get());

  // Issuing CA: signed by the root, never valid beyond it.
  absl::StatusOr<Validity> issuing_validity = ComputeValidity(
      now, kIssuingValidity, absl::FromUnixSeconds(root_validity->not_before),
      absl::FromUnixSeconds(root_validity->not_after));
  if (!issuing_validity.ok()) return issuing_validity.status();
  CertSpec issuing_spec;
  issuing_spec.public_key = issuing_key.get();
  issuing_spec.common_name = name + " issuing CA";
  issuing_spec.serial = MakeSerial(random);
  issuing_spec.not_before = issuing_validity->not_before;
  issuing_spec.not_after = issuing_validity->not_after;
  issuing_spec.issuer_name = X509_get_subject_name(root->get());
  issuing_spec.issuer_ski = &root_ski;
  issuing_spec.basic_constraints = "critical,CA:TRUE,pathlen:0";
  issuing_spec.key_usage = "critical,keyCertSign,cRLSign,digitalSignature";
  absl::StatusOr<X509Ptr> issuing = BuildCertificate(issuing_spec);
  if (!issuing.ok()) return issuing.status();
  if (absl::Status s = root_signer.SignCertificate(issuing->get()); !s.ok()) {
    return s;
  }

  // Keys first, certificates next, DIR/ca.pem last: its presence marks a
  // complete CA.
  absl::StatusOr<std::string> root_key_pem =
      PrivateKeyToPkcs8Pem(root_signer.public_key());
  if (!root_key_pem.ok()) return root_key_pem.status();
  if (absl::Status s = WriteSecretFile(root_key_path, *root_key_pem); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> issuing_key_pem =
      PrivateKeyToPkcs8Pem(issuing_key.get());
  if (!issuing_key_pem.ok()) return issuing_key_pem.status();
  if (absl::Status s = WriteSecretFile(issuing_key_path, *issuing_key_pem);
      !s.ok()) {
    return s;
  }
  const std::string issuing_pem = CertToPem(issuing->get());
  const std::string root_pem = CertToPem(root->get());
  for (const std::string* path : {&issuing_pem_path, &chain_pem_path}) {
    if (absl::Status s = WriteFileAtomic(*path, issuing_pem, 0644); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = WriteFileAtomic(root_pem_path, root_pem, 0644);
      !s.ok()) {
    return s;
  }

  auto ca = Create(*std::move(root), *std::move(issuing),
                   std::make_unique<SoftwareCaSigner>(std::move(issuing_key)),
                   clock, random);
  if (ca.ok()) (*ca)->dir_ = dir;
  return ca;
}

absl::Status CertificateAuthority::InstallOperatorCa(const std::string& dir,
                                                     CaMaterial m) {
  const std::string ca_dir = dir + "/ca";
  if (absl::Status s = MakeDir(dir, 0700, /*force_mode=*/false); !s.ok()) {
    return s;
  }
  for (const std::string& path :
       {dir + "/ca.pem", ca_dir + "/issuing.key", ca_dir + "/root.key"}) {
    if (PathExists(path)) {
      return absl::AlreadyExistsError(absl::StrCat(
          path, " already exists; refusing to overwrite an existing CA"));
    }
  }
  if (absl::Status s = MakeDir(ca_dir, 0700, /*force_mode=*/true); !s.ok()) {
    return s;
  }
  // DIR/ca.pem last: its presence marks a complete CA.
  std::vector<PendingFile> files = {
      {ca_dir + "/issuing.key", std::move(m.key_pem), 0600},
      {ca_dir + "/issuing.pem", CertToPem(m.issuing.get()), 0644},
      {ca_dir + "/chain.pem", ChainPemOf(m), 0644},
      {dir + "/ca.pem", CertToPem(m.root.get()), 0644},
  };
  return WriteAll(files);
}

absl::Status CertificateAuthority::StageOperatorCa(const std::string& dir,
                                                   CaMaterial m,
                                                   absl::Time activate_at) {
  const std::string next = dir + "/ca/next";
  if (PathExists(next + "/root.pem")) {
    return absl::AlreadyExistsError(
        absl::StrCat("another CA is already staged in ", next,
                     "; activate it first (simprov ca activate)"));
  }
  if (absl::Status s = MakeDir(next, 0700, /*force_mode=*/true); !s.ok()) {
    return s;
  }
  // root.pem last: its presence marks a complete staged CA.
  std::vector<PendingFile> files = {
      {next + "/issuing.key", std::move(m.key_pem), 0600},
      {next + "/issuing.pem", CertToPem(m.issuing.get()), 0644},
      {next + "/chain.pem", ChainPemOf(m), 0644},
      {next + "/activate-at",
       absl::StrCat(absl::ToUnixSeconds(activate_at), "\n"), 0644},
      {next + "/root.pem", CertToPem(m.root.get()), 0644},
  };
  return WriteAll(files);
}

namespace {
// One generation's files: root, issuing, chain (issuing first), key.
struct GenerationFiles {
  X509Ptr root;
  X509Ptr issuing;
  std::vector<X509Ptr> intermediates;
  EvpPkeyPtr key;
};

absl::StatusOr<X509Ptr> ReadCert(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path, kMaxFileBytes);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<X509Ptr> cert = CertFromPem(*pem);
  if (!cert.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": ", cert.status().message()));
  }
  return cert;
}

absl::StatusOr<GenerationFiles> ReadGeneration(const std::string& root_path,
                                               const std::string& dir) {
  GenerationFiles g;
  auto root = ReadCert(root_path);
  if (!root.ok()) return root.status();
  g.root = *std::move(root);
  auto issuing = ReadCert(dir + "/issuing.pem");
  if (!issuing.ok()) return issuing.status();
  g.issuing = *std::move(issuing);
  // chain.pem: the issuing CA, then intermediates (absent in old dirs).
  if (PathExists(dir + "/chain.pem")) {
    auto pem = ReadFileToString(dir + "/chain.pem", kMaxFileBytes);
    if (!pem.ok()) return pem.status();
    auto certs = CertsFromPem(*pem);
    if (!certs.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, "/chain.pem: ", certs.status().message()));
    }
    for (X509Ptr& c : *certs) {
      if (X509_cmp(c.get(), g.issuing.get()) == 0) continue;
      if (X509_cmp(c.get(), g.root.get()) == 0) continue;
      g.intermediates.push_back(std::move(c));
    }
  }
  absl::StatusOr<std::string> key_pem =
      ReadFileToString(dir + "/issuing.key", kMaxFileBytes);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(*key_pem);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!key.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, "/issuing.key: ", key.status().message()));
  }
  g.key = *std::move(key);
  return g;
}
}  // namespace

namespace {

// Activation of a staged CA (DIR/ca/next/) rewrites five files. It first
// writes the journal DIR/ca/next/activating (the retired.pem it will
// write), then the files, then removes next/. Finishes an activation a
// crash interrupted: every write is redone from next/ and the journal, so
// a half-written switch never stops the broker from starting.
absl::Status FinishActivation(const std::string& dir) {
  const std::string ca_dir = dir + "/ca";
  const std::string next = ca_dir + "/next";
  const std::string journal = next + "/activating";
  if (!PathExists(journal)) return absl::OkStatus();
  // The clean-up below starts with root.pem: if it (or the key or the
  // certificate) is gone, every write was done and only clean-up is left.
  const bool writes_left = PathExists(next + "/root.pem") &&
                           PathExists(next + "/issuing.key") &&
                           PathExists(next + "/issuing.pem");
  auto retired = ReadFileToString(journal, kMaxFileBytes);
  if (!retired.ok()) return retired.status();
  std::vector<PendingFile> files = {{ca_dir + "/retired.pem", *retired, 0644}};
  std::vector<std::tuple<std::string, std::string, mode_t>> copies;
  if (writes_left) {
    copies = {{next + "/issuing.key", ca_dir + "/issuing.key", 0600},
              {next + "/issuing.pem", ca_dir + "/issuing.pem", 0644},
              {next + "/chain.pem", ca_dir + "/chain.pem", 0644},
              {next + "/root.pem", dir + "/ca.pem", 0644}};
  }
  for (const auto& [from, to, mode] : copies) {
    auto data = ReadFileToString(from, kMaxFileBytes);
    // A chain.pem-less staging (issuing CA signed by the root): the chain
    // is the issuing CA alone.
    if (!data.ok() && absl::EndsWith(from, "/chain.pem")) {
      data = ReadFileToString(next + "/issuing.pem", kMaxFileBytes);
    }
    if (!data.ok()) return data.status();
    files.push_back({to, *std::move(data), mode});
  }
  if (writes_left) {
    if (absl::Status s = WriteAll(files); !s.ok()) return s;
  }
  for (PendingFile& f : files) OPENSSL_cleanse(f.data.data(), f.data.size());
  // Clean-up, root.pem first (see writes_left); the journal goes last.
  for (const char* f :
       {"root.pem", "activate-at", "issuing.key", "issuing.pem", "chain.pem"}) {
    ::unlink((next + "/" + f).c_str());
  }
  ::unlink(journal.c_str());
  ::rmdir(next.c_str());
  return FsyncDirectory(ca_dir);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CertificateAuthority>>
CertificateAuthority::Load(const std::string& dir, Clock& clock,
                           Random& random) {
  if (absl::Status s = FinishActivation(dir); !s.ok()) {
    return absl::Status(
        s.code(),
        absl::StrCat("finishing an interrupted CA activation: ", s.message()));
  }
  auto files = ReadGeneration(dir + "/ca.pem", dir + "/ca");
  if (!files.ok()) return files.status();
  auto ca = Create(std::move(files->root), std::move(files->issuing),
                   std::make_unique<SoftwareCaSigner>(std::move(files->key)),
                   clock, random, std::move(files->intermediates));
  if (!ca.ok()) return ca.status();
  CertificateAuthority& self = **ca;
  self.dir_ = dir;
  absl::MutexLock lock(&self.mu_);
  const std::string next = dir + "/ca/next";
  if (PathExists(next + "/root.pem")) {
    auto staged = ReadGeneration(next + "/root.pem", next);
    if (!staged.ok()) return staged.status();
    auto g = MakeGeneration(
        std::move(staged->root), std::move(staged->issuing),
        std::move(staged->intermediates),
        std::make_unique<SoftwareCaSigner>(std::move(staged->key)),
        clock.Now());
    if (!g.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("staged CA in ", next, ": ", g.status().message()));
    }
    auto at = ReadFileToString(next + "/activate-at", 64);
    int64_t seconds = 0;
    if (!at.ok() || !absl::SimpleAtoi(*at, &seconds)) {
      return absl::FailedPreconditionError(
          absl::StrCat(next, "/activate-at does not hold Unix seconds"));
    }
    self.staged_ = *std::move(g);
    self.staged_activate_at_ = absl::FromUnixSeconds(seconds);
  }
  // Retired generations: issuing CAs, intermediates and roots in one bundle;
  // each self-signed certificate starts a new generation's root.
  if (PathExists(dir + "/ca/retired.pem")) {
    auto pem = ReadFileToString(dir + "/ca/retired.pem", kMaxFileBytes);
    if (!pem.ok()) return pem.status();
    auto certs = CertsFromPem(*pem);
    if (!certs.ok()) return certs.status();
    // Layout: per generation, chain (issuing first) then root.
    std::vector<X509Ptr> chain;
    for (X509Ptr& c : *certs) {
      if (!IsSelfSigned(c.get())) {
        chain.push_back(std::move(c));
        continue;
      }
      if (chain.empty()) chain.push_back(X509Ptr(X509_dup(c.get())));
      X509Ptr issuing = std::move(chain.front());
      chain.erase(chain.begin());
      auto g = MakeGeneration(std::move(c), std::move(issuing),
                              std::move(chain), nullptr, clock.Now());
      chain.clear();
      if (!g.ok()) return g.status();
      self.retired_.push_back(*std::move(g));
    }
  }
  self.RecomputeAnchorsLocked();
  return ca;
}

absl::StatusOr<bool> CertificateAuthority::MaybeActivateStaged(bool force) {
  absl::MutexLock lock(&mu_);
  if (staged_ == nullptr) {
    if (force) {
      return absl::FailedPreconditionError(
          "no CA is staged: start the broker with a new --ca-cert/--ca-key "
          "first");
    }
    return false;
  }
  if (!force && clock_.Now() < staged_activate_at_) return false;
  if (!dir_.empty()) {
    // Retire the active generation first: if we stop half-way, the next
    // start still verifies its devices' renewals.
    const std::string ca_dir = dir_ + "/ca";
    const std::string next = ca_dir + "/next";
    std::string retired;
    if (PathExists(ca_dir + "/retired.pem")) {
      auto old = ReadFileToString(ca_dir + "/retired.pem", kMaxFileBytes);
      if (!old.ok()) return old.status();
      retired = *old;
    }
    retired += active_->chain_pem + CertToPem(active_->root.get());
    // next/ already holds the new generation's files (as staged); the
    // journal makes the switch redoable after a crash (FinishActivation).
    if (absl::Status s = WriteFileAtomic(next + "/activating", retired, 0644);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = FinishActivation(dir_); !s.ok()) return s;
  }
  retired_.push_back(std::move(active_));
  active_ = std::move(staged_);
  staged_ = nullptr;
  staged_activate_at_ = absl::InfiniteFuture();
  RecomputeAnchorsLocked();
  return true;
}

CaState CertificateAuthority::State() const {
  absl::MutexLock lock(&mu_);
  CaState st;
  st.active = DescribeCert(active_->issuing.get());
  if (staged_ != nullptr) {
    st.staged = true;
    st.staged_issuing = DescribeCert(staged_->issuing.get());
    st.staged_root_subject = DescribeCert(staged_->root.get()).subject;
    st.activate_at = staged_activate_at_;
  }
  st.retired = retired_.size();
  return st;
}

absl::Status CertificateAuthority::VerifyIssued(
    X509* leaf, absl::Time at, std::string_view purpose) const {
  std::vector<X509*> intermediates;
  std::vector<X509*> anchors;
  absl::MutexLock lock(&mu_);
  auto add = [&](const GenerationPtr& g) {
    if (X509_cmp(g->issuing.get(), g->root.get()) != 0) {
      intermediates.push_back(g->issuing.get());
    }
    for (const X509Ptr& c : g->intermediates) intermediates.push_back(c.get());
    anchors.push_back(g->root.get());
  };
  add(active_);
  for (const GenerationPtr& g : retired_) add(g);
  return VerifyChain(leaf, intermediates, anchors, at, purpose);
}

X509* CertificateAuthority::issuing_cert() const {
  return Active()->issuing.get();
}
X509* CertificateAuthority::root_cert() const { return Active()->root.get(); }

Bytes CertificateAuthority::NewSerial() const {
  absl::MutexLock lock(&random_mu_);
  return MakeSerial(random_);
}

absl::StatusOr<X509Ptr> CertificateAuthority::IssueLeaf(
    const LeafProfile& profile) const {
  if (profile.public_key == nullptr) {
    return absl::InvalidArgumentError("null public key");
  }
  if (absl::Status s = CheckCommonName(profile.common_name); !s.ok()) return s;
  for (const auto& rdn : profile.subject) {
    if (absl::Status s = CheckCommonName(rdn.second); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("subject ", rdn.first, ": ", s.message()));
    }
  }
  const GenerationPtr g = Active();
  absl::StatusOr<Validity> validity =
      ComputeValidity(clock_.Now(), profile.ttl, g->not_before, g->not_after);
  if (!validity.ok()) return validity.status();

  CertSpec spec;
  spec.public_key = profile.public_key;
  spec.common_name = profile.common_name;
  spec.serial = NewSerial();
  spec.not_before = validity->not_before;
  spec.not_after = validity->not_after;
  spec.issuer_name = X509_get_subject_name(g->issuing.get());
  spec.issuer_ski = &g->ski;
  spec.basic_constraints = "critical,CA:FALSE";
  spec.key_usage = "critical,digitalSignature";
  spec.ext_key_usage = profile.ext_key_usage;
  spec.sans = profile.sans;
  spec.subject = profile.subject;
  spec.crl_url = profile.crl_url;
  absl::StatusOr<X509Ptr> cert = BuildCertificate(spec);
  if (!cert.ok()) return cert.status();
  if (absl::Status s = g->signer->SignCertificate(cert->get()); !s.ok()) {
    return s;
  }
  return cert;
}

absl::StatusOr<X509Ptr> CertificateAuthority::IssueDeviceCertificate(
    const DeviceCertRequest& request) const {
  absl::StatusOr<IssuedCertificate> issued = IssueDevice(request);
  if (!issued.ok()) return issued.status();
  return CertFromDer(issued->der);
}

absl::StatusOr<IssuedCertificate> CertificateAuthority::IssueDevice(
    const DeviceCertRequest& request) const {
  LeafProfile profile;
  profile.public_key = request.public_key;
  profile.common_name = request.common_name;
  profile.ttl = request.ttl;
  profile.ext_key_usage = "clientAuth";
  if (!request.device_id_uri.empty()) {
    if (absl::Status s = CheckUri(request.device_id_uri); !s.ok()) return s;
    profile.sans.push_back({GEN_URI, request.device_id_uri});
  }
  for (const std::string& uri : request.uris) {
    if (absl::Status s = CheckUri(uri); !s.ok()) return s;
    profile.sans.push_back({GEN_URI, uri});
  }
  for (const std::string& name : request.dns_names) {
    if (absl::Status s = CheckDnsName(name); !s.ok()) return s;
    profile.sans.push_back({GEN_DNS, name});
  }
  if (!request.crl_url.empty()) {
    if (absl::Status s = CheckUri(request.crl_url); !s.ok()) return s;
    profile.crl_url = request.crl_url;
  }
  profile.subject = request.subject;
  if (!profile.subject.empty() && profile.common_name.empty()) {
    profile.common_name = profile.subject.front().second;  // for the check
  }
  absl::StatusOr<X509Ptr> cert = IssueLeaf(profile);
  if (!cert.ok()) return cert.status();
  // The in-memory object has no cached key (fast path): hand out bytes.
  return IssuedCertificate{CertToDer(cert->get()), DescribeCert(cert->get())};
}

absl::StatusOr<X509Ptr> CertificateAuthority::IssueServerCertificate(
    EVP_PKEY* public_key, const std::vector<std::string>& dns_names,
    const std::vector<std::string>& ip_addresses, absl::Duration ttl) const {
  if (dns_names.empty() && ip_addresses.empty()) {
    return absl::InvalidArgumentError("a server certificate needs a name");
  }
  if (dns_names.size() + ip_addresses.size() > kMaxServerNames) {
    return absl::InvalidArgumentError("too many server names");
  }
  LeafProfile profile;
  profile.public_key = public_key;
  profile.common_name =
      !dns_names.empty() ? dns_names.front() : ip_addresses.front();
  profile.ttl = ttl;
  profile.ext_key_usage = "serverAuth";
  for (const std::string& name : dns_names) {
    std::string ip;
    if (ParseIp(name, &ip)) {
      profile.sans.push_back({GEN_IPADD, std::move(ip)});
      continue;
    }
    if (absl::Status s = CheckDnsName(name); !s.ok()) return s;
    profile.sans.push_back({GEN_DNS, name});
  }
  for (const std::string& address : ip_addresses) {
    std::string ip;
    if (!ParseIp(address, &ip)) {
      return absl::InvalidArgumentError(
          absl::StrCat("not an IPv4/IPv6 address: \"", address, "\""));
    }
    profile.sans.push_back({GEN_IPADD, std::move(ip)});
  }
  absl::StatusOr<X509Ptr> cert = IssueLeaf(profile);
  if (!cert.ok()) return cert.status();
  return CertFromDer(CertToDer(cert->get()));  // a complete object
}

absl::StatusOr<Bytes> CertificateAuthority::IssueCrl(
    const std::vector<RevokedEntry>& revoked, uint64_t crl_number,
    absl::Time this_update, absl::Time next_update) const {
  if (next_update <= this_update) {
    return absl::InvalidArgumentError("nextUpdate must follow thisUpdate");
  }
  const GenerationPtr g = Active();
  CrlPtr crl(X509_CRL_new());
  Asn1TimePtr last(ASN1_TIME_set(nullptr, absl::ToTimeT(this_update)));
  Asn1TimePtr next(ASN1_TIME_set(nullptr, absl::ToTimeT(next_update)));
  if (crl == nullptr || last == nullptr || next == nullptr ||
      X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(),
                               X509_get_subject_name(g->issuing.get())) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot build CRL: ", OpenSslErrorString()));
  }
  for (const RevokedEntry& e : revoked) {
    BIGNUM* bn = nullptr;
    if (e.serial_hex.empty() || e.serial_hex.size() > 64 ||
        BN_hex2bn(&bn, e.serial_hex.c_str()) !=
            static_cast<int>(e.serial_hex.size())) {
      BN_free(bn);
      return absl::InvalidArgumentError(
          absl::StrCat("bad serial \"", e.serial_hex, "\""));
    }
    BignumPtr serial_bn(bn);
    Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(serial_bn.get(), nullptr));
    Asn1TimePtr when(ASN1_TIME_set(nullptr, absl::ToTimeT(e.revoked_at)));
    RevokedPtr entry(X509_REVOKED_new());
    if (serial == nullptr || when == nullptr || entry == nullptr ||
        X509_REVOKED_set_serialNumber(entry.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), when.get()) != 1) {
      return absl::InternalError("allocation failed");
    }
    if (e.reason_code != 0) {
      ASN1_ENUMERATED* code = ASN1_ENUMERATED_new();
      if (code == nullptr || ASN1_ENUMERATED_set(code, e.reason_code) != 1 ||
          X509_REVOKED_add1_ext_i2d(entry.get(), NID_crl_reason, code, 0,
                                    X509V3_ADD_DEFAULT) != 1) {
        ASN1_ENUMERATED_free(code);
        return absl::InternalError(
            absl::StrCat("cannot add reason code: ", OpenSslErrorString()));
      }
      ASN1_ENUMERATED_free(code);
    }
    if (X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) {
      return absl::InternalError("allocation failed");
    }
    entry.release();  // owned by the CRL
  }
  Asn1IntegerPtr number(ASN1_INTEGER_new());
  AuthorityKeyIdPtr akid(AUTHORITY_KEYID_new());
  if (number == nullptr || akid == nullptr ||
      ASN1_INTEGER_set_uint64(number.get(), crl_number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0,
                            X509V3_ADD_DEFAULT) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot add CRL number: ", OpenSslErrorString()));
  }
  akid->keyid = ASN1_OCTET_STRING_new();
  if (akid->keyid == nullptr ||
      ASN1_OCTET_STRING_set(akid->keyid, g->ski.data(),
                            static_cast<int>(g->ski.size())) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, akid.get(),
                            0, X509V3_ADD_DEFAULT) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot add CRL AKI: ", OpenSslErrorString()));
  }
  if (X509_CRL_sort(crl.get()) != 1) {
    return absl::InternalError("cannot sort CRL");
  }
  if (absl::Status s = g->signer->SignCrl(crl.get()); !s.ok()) return s;
  unsigned char* der = nullptr;
  int len = i2d_X509_CRL(crl.get(), &der);
  if (len <= 0) return absl::InternalError("cannot encode CRL");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

std::string CertificateAuthority::ChainPem() const {
  return Active()->chain_pem;
}
std::vector<Bytes> CertificateAuthority::ChainDer() const {
  return Active()->chain_der;
}
std::string CertificateAuthority::TrustAnchorsPem() const {
  absl::MutexLock lock(&mu_);
  return anchors_pem_;
}
std::vector<Bytes> CertificateAuthority::TrustAnchorsDer() const {
  absl::MutexLock lock(&mu_);
  return anchors_der_;
}

}  // namespace simprov
