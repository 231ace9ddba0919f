#include "common/leaf_check.h"

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/der_reader.h"

namespace simprov {
namespace {

using der::DerReader;
using der::kEcdsaWithSha256;
using der::kP256PointSize;
using der::kP256SpkiPrefix;

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
  // As X509_verify_cert checks the issuing CA of a "sslclient" leaf. The
  // key is null when it does not decode (the certificate still parses).
  EVP_PKEY* issuer_key = X509_get0_pubkey(issuer);
  const bool ok = X509_check_purpose(issuer, X509_PURPOSE_SSL_CLIENT, 1) > 0 &&
                  (X509_get_key_usage(issuer) & KU_KEY_CERT_SIGN) != 0 &&
                  X509_get0_subject_key_id(issuer) != nullptr &&
                  issuer_key != nullptr &&
                  EVP_PKEY_get_base_id(issuer_key) == EVP_PKEY_EC &&
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

  return internal::DescribeParts(subject_name.get(), issuer_subject,
                                 serial_number.get(), not_before.get(),
                                 not_after.get(), sans.get(),
                                 /*is_ca=*/false);
}
}  // namespace simprov
