#include "broker/ca/leaf_builder.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/x509.h"

namespace simprov {
namespace {

// Serial numbers are exactly this many bytes (RFC 5280 allows up to 20).
constexpr size_t kSerialBytes = 16;
constexpr size_t kMaxCommonNameBytes = 64;  // ub-common-name
constexpr size_t kMaxUriBytes = 1024;
constexpr size_t kMaxDnsNameBytes = 253;

using DistPointPtr =
    std::unique_ptr<DIST_POINT, OpenSslDeleter<DIST_POINT_free>>;
using DistPointsPtr =
    std::unique_ptr<CRL_DIST_POINTS, OpenSslDeleter<CRL_DIST_POINTS_free>>;

}  // namespace

Bytes MakeSerial(Random& random) {
  Bytes serial = random.Generate(kSerialBytes);
  serial[0] = static_cast<uint8_t>((serial[0] & 0x3f) | 0x40);
  return serial;
}

Bytes SkiOf(X509* cert) {
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(cert);
  if (ski == nullptr) return Bytes();
  const unsigned char* p = ASN1_STRING_get0_data(ski);
  return Bytes(p, p + ASN1_STRING_length(ski));
}

absl::Status AddCrlDistributionPoint(X509* cert, const std::string& url) {
  DistPointsPtr points(sk_DIST_POINT_new_null());
  DistPointPtr point(DIST_POINT_new());
  GeneralNamePtr name(GENERAL_NAME_new());
  Asn1StringPtr value(ASN1_IA5STRING_new());
  if (points == nullptr || point == nullptr || name == nullptr ||
      value == nullptr ||
      ASN1_STRING_set(value.get(), url.data(), static_cast<int>(url.size())) !=
          1) {
    return absl::InternalError("allocation failed");
  }
  GENERAL_NAME_set0_value(name.get(), GEN_URI, value.release());
  point->distpoint = DIST_POINT_NAME_new();
  if (point->distpoint == nullptr) {
    return absl::InternalError("allocation failed");
  }
  point->distpoint->type = 0;  // fullName
  point->distpoint->name.fullname = sk_GENERAL_NAME_new_null();
  if (point->distpoint->name.fullname == nullptr ||
      sk_GENERAL_NAME_push(point->distpoint->name.fullname, name.get()) <= 0) {
    return absl::InternalError("allocation failed");
  }
  name.release();  // Now owned by `point`.
  if (sk_DIST_POINT_push(points.get(), point.get()) <= 0) {
    return absl::InternalError("allocation failed");
  }
  point.release();  // Now owned by `points`.
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

absl::StatusOr<Validity> ComputeValidity(absl::Time now,
                                         absl::Duration lifetime,
                                         absl::Duration backdate,
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
  absl::Time nb = std::max(now - backdate, issuer_not_before);
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

}  // namespace simprov
