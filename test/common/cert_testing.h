// Keys and certificates for the common/ X.509 tests, built directly with
// OpenSSL (independent of the CA code under test in ca_test).
#ifndef SIMPROV_TEST_COMMON_CERT_TESTING_H_
#define SIMPROV_TEST_COMMON_CERT_TESTING_H_

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/openssl_ptr.h"

namespace simprov::testing {

inline const absl::Time kNow =
    absl::FromUnixSeconds(1767225600);  // 2026-01-01Z

inline EvpPkeyPtr GenerateKey(const char* type, const char* group) {
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, type, group));
}
inline EvpPkeyPtr GenerateRsaKey(size_t bits) {
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
}

// A minimal certificate signed by `issuer_key` (self-signed when `issuer`
// is null): a client leaf carries EKU clientAuth and DNS, IP and URI SANs.
inline X509Ptr MakeCert(const std::string& cn, EVP_PKEY* key, X509* issuer,
                        EVP_PKEY* issuer_key, bool is_ca, absl::Time not_before,
                        absl::Time not_after, long serial) {
  X509Ptr cert(X509_new());
  EXPECT_EQ(X509_set_version(cert.get(), X509_VERSION_3), 1);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(
      cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(),
                 nullptr, nullptr, 0);
  const std::vector<std::pair<int, const char*>> exts = {
      {NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
      {NID_key_usage,
       is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
      {NID_subject_key_identifier, "hash"},
  };
  for (const auto& [nid, value] : exts) {
    X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
    EXPECT_NE(ext, nullptr);
    X509_add_ext(cert.get(), ext.get(), -1);
  }
  if (issuer != nullptr) {
    // AKI lets the verifier tell apart issuers with the same name.
    X509ExtensionPtr aki(X509V3_EXT_nconf_nid(
        nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
    EXPECT_NE(aki, nullptr);
    X509_add_ext(cert.get(), aki.get(), -1);
  }
  if (!is_ca) {
    X509ExtensionPtr eku(
        X509V3_EXT_nconf_nid(nullptr, &ctx, NID_ext_key_usage, "clientAuth"));
    X509_add_ext(cert.get(), eku.get(), -1);
    X509ExtensionPtr san(X509V3_EXT_nconf_nid(
        nullptr, &ctx, NID_subject_alt_name,
        "DNS:device.example,IP:10.0.0.1,IP:::1,URI:urn:simprov:test"));
    X509_add_ext(cert.get(), san.get(), -1);
  }
  EXPECT_GT(X509_sign(cert.get(), issuer_key, EVP_sha256()), 0);
  return cert;
}

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_COMMON_CERT_TESTING_H_
