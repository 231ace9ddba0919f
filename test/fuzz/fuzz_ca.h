// A fixed two-level CA (root, issuing) from fuzz_keys.h in simprov's
// certificate profile (broker/ca/leaf_builder.h), and device leaves it
// issues: the shape the agent's fast leaf check walks.
#ifndef SIMPROV_TEST_FUZZ_FUZZ_CA_H_
#define SIMPROV_TEST_FUZZ_FUZZ_CA_H_

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "broker/ca/leaf_builder.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
#include "test/fuzz/fuzz_keys.h"
#include "test/fuzz/fuzz_support.h"

namespace simprov::fuzz {

// The time the targets verify at; every fixed certificate is valid then.
inline const absl::Time kFuzzNow = absl::FromUnixSeconds(1767225600);  // 2026

struct FixedCa {
  EvpPkeyPtr root_key = LoadKey(kRootKeyPem);
  EvpPkeyPtr issuing_key = LoadKey(kIssuingKeyPem);
  EvpPkeyPtr device_key = LoadKey(kDeviceKeyPem);
  X509Ptr root, issuing;
  Bytes issuing_ski;

  FixedCa() {
    const int64_t now = absl::ToUnixSeconds(kFuzzNow);
    CertSpec r;
    r.public_key = root_key.get();
    r.common_name = "simprov fuzz root";
    r.serial = Bytes(16, 0x11);
    r.not_before = now - 86400 * 365;
    r.not_after = now + 86400 * 365 * 20;
    r.basic_constraints = "critical,CA:TRUE";
    r.key_usage = "critical,keyCertSign,cRLSign";
    root = Sign(r, root_key.get());
    Bytes root_ski = SkiOf(root.get());
    CertSpec i;
    i.public_key = issuing_key.get();
    i.common_name = "simprov fuzz issuing";
    i.serial = Bytes(16, 0x22);
    i.not_before = r.not_before;
    i.not_after = now + 86400 * 365 * 10;
    i.issuer_name = X509_get_subject_name(root.get());
    i.issuer_ski = &root_ski;
    i.basic_constraints = "critical,CA:TRUE,pathlen:0";
    i.key_usage = "critical,keyCertSign,cRLSign,digitalSignature";
    issuing = Sign(i, root_key.get());
    issuing_ski = SkiOf(issuing.get());
  }

  // A device leaf as the CA issues it, for `key` (default: device_key).
  Bytes Leaf(std::vector<SanEntry> sans, const std::string& crl_url = "",
             EVP_PKEY* key = nullptr, const char* eku = "clientAuth") const {
    const int64_t now = absl::ToUnixSeconds(kFuzzNow);
    CertSpec l;
    l.public_key = key != nullptr ? key : device_key.get();
    l.common_name = "001010123456789";
    l.serial = Bytes(16, 0x33);
    l.serial[0] = 0x43;
    l.not_before = now - 300;
    l.not_after = now + 86400;
    l.issuer_name = X509_get_subject_name(issuing.get());
    l.issuer_ski = &issuing_ski;
    l.basic_constraints = "critical,CA:FALSE";
    l.key_usage = "critical,digitalSignature";
    l.ext_key_usage = eku;
    l.sans = std::move(sans);
    l.crl_url = crl_url;
    return CertToDer(Sign(l, issuing_key.get()).get());
  }

 private:
  static X509Ptr Sign(const CertSpec& spec, EVP_PKEY* key) {
    absl::StatusOr<X509Ptr> cert = BuildCertificate(spec);
    SIMPROV_FUZZ_CHECK(cert.ok());
    SIMPROV_FUZZ_CHECK(X509_sign(cert->get(), key, EVP_sha256()) > 0);
    return std::move(*cert);
  }
};

}  // namespace simprov::fuzz

#endif  // SIMPROV_TEST_FUZZ_FUZZ_CA_H_
