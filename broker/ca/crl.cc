#include "broker/ca/crl.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"

namespace simprov {
namespace {

using X509RevokedPtr =
    std::unique_ptr<X509_REVOKED, OpenSslDeleter<X509_REVOKED_free>>;
using Asn1EnumeratedPtr =
    std::unique_ptr<ASN1_ENUMERATED, OpenSslDeleter<ASN1_ENUMERATED_free>>;

}  // namespace

absl::StatusOr<X509CrlPtr> BuildCrl(const X509_NAME* issuer,
                                    const Bytes& issuer_ski,
                                    const std::vector<RevokedEntry>& revoked,
                                    uint64_t crl_number, absl::Time this_update,
                                    absl::Time next_update) {
  if (next_update <= this_update) {
    return absl::InvalidArgumentError("nextUpdate must follow thisUpdate");
  }
  X509CrlPtr crl(X509_CRL_new());
  Asn1TimePtr last(ASN1_TIME_set(nullptr, absl::ToTimeT(this_update)));
  Asn1TimePtr next(ASN1_TIME_set(nullptr, absl::ToTimeT(next_update)));
  if (crl == nullptr || last == nullptr || next == nullptr ||
      X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), issuer) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot build CRL: ", OpenSslErrorString()));
  }
  for (const RevokedEntry& e : revoked) {
    BIGNUM* bn = nullptr;
    const bool parsed = !e.serial_hex.empty() && e.serial_hex.size() <= 64 &&
                        BN_hex2bn(&bn, e.serial_hex.c_str()) ==
                            static_cast<int>(e.serial_hex.size());
    BignumPtr serial_bn(bn);
    if (!parsed) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad serial \"", e.serial_hex, "\""));
    }
    Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(serial_bn.get(), nullptr));
    Asn1TimePtr when(ASN1_TIME_set(nullptr, absl::ToTimeT(e.revoked_at)));
    X509RevokedPtr entry(X509_REVOKED_new());
    if (serial == nullptr || when == nullptr || entry == nullptr ||
        X509_REVOKED_set_serialNumber(entry.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), when.get()) != 1) {
      return absl::InternalError("allocation failed");
    }
    if (e.reason_code != 0) {
      Asn1EnumeratedPtr code(ASN1_ENUMERATED_new());
      if (code == nullptr ||
          ASN1_ENUMERATED_set(code.get(), e.reason_code) != 1 ||
          X509_REVOKED_add1_ext_i2d(entry.get(), NID_crl_reason, code.get(), 0,
                                    X509V3_ADD_DEFAULT) != 1) {
        return absl::InternalError(
            absl::StrCat("cannot add reason code: ", OpenSslErrorString()));
      }
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
      ASN1_OCTET_STRING_set(akid->keyid, issuer_ski.data(),
                            static_cast<int>(issuer_ski.size())) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, akid.get(),
                            0, X509V3_ADD_DEFAULT) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot add CRL AKI: ", OpenSslErrorString()));
  }
  if (X509_CRL_sort(crl.get()) != 1) {
    return absl::InternalError("cannot sort CRL");
  }
  return crl;
}

absl::StatusOr<Bytes> CrlToDer(X509_CRL* crl) {
  unsigned char* der = nullptr;
  int len = i2d_X509_CRL(crl, &der);
  if (len <= 0) return absl::InternalError("cannot encode CRL");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

}  // namespace simprov
