// What the CA's tests share: a fixture with a development CA in a fresh
// temporary data dir, and helpers that read certificates' extensions.
#ifndef SIMPROV_TEST_BROKER_CA_CA_TEST_SUPPORT_H_
#define SIMPROV_TEST_BROKER_CA_CA_TEST_SUPPORT_H_

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "broker/ca/ca.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace simprov {
namespace ca_test {

// A request with the core fields set and no group-policy extras.
inline DeviceCertRequest Request(EVP_PKEY* key, std::string common_name,
                                 std::string device_id_uri,
                                 absl::Duration ttl) {
  DeviceCertRequest request;
  request.public_key = key;
  request.common_name = std::move(common_name);
  request.device_id_uri = std::move(device_id_uri);
  request.ttl = ttl;
  return request;
}

inline const absl::Time kStart = absl::FromUnixSeconds(1767225600);  // 2026
inline constexpr char kImsi[] = "001010123456789";
inline constexpr char kDeviceUri[] = "urn:simprov:device:001010123456789";

using BasicConstraintsPtr =
    std::unique_ptr<BASIC_CONSTRAINTS, OpenSslDeleter<BASIC_CONSTRAINTS_free>>;
using ExtendedKeyUsagePtr =
    std::unique_ptr<EXTENDED_KEY_USAGE,
                    OpenSslDeleter<EXTENDED_KEY_USAGE_free>>;

inline bool IsCritical(X509* cert, int nid) {
  int index = X509_get_ext_by_NID(cert, nid, -1);
  return index >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, index));
}

inline int CountExtensions(X509* cert, int nid) {
  int count = 0;
  for (int i = -1; (i = X509_get_ext_by_NID(cert, nid, i)) >= 0;) ++count;
  return count;
}

// The NIDs in the certificate's extendedKeyUsage, in order.
inline std::vector<int> EkuNids(X509* cert) {
  ExtendedKeyUsagePtr eku(static_cast<EXTENDED_KEY_USAGE*>(
      X509_get_ext_d2i(cert, NID_ext_key_usage, nullptr, nullptr)));
  std::vector<int> nids;
  if (eku == nullptr) return nids;
  for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
    nids.push_back(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.get(), i)));
  }
  return nids;
}

// Returns {present, ca, pathlen (-1 if absent)}.
inline std::tuple<bool, bool, long> BasicConstraints(X509* cert) {
  BasicConstraintsPtr bc(static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr)));
  if (bc == nullptr) return {false, false, -1};
  long pathlen = bc->pathlen == nullptr ? -1 : ASN1_INTEGER_get(bc->pathlen);
  return {true, bc->ca != 0, pathlen};
}

inline Bytes OctetString(const ASN1_OCTET_STRING* s) {
  if (s == nullptr) return Bytes();
  const unsigned char* p = ASN1_STRING_get0_data(s);
  return Bytes(p, p + ASN1_STRING_length(s));
}

// SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 method 1).
inline Bytes KeyIdMethod1(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(X509_pubkey_digest(cert, EVP_sha1(), md, &len), 1);
  return Bytes(md, md + len);
}

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline mode_t FileMode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// A development CA created in DIR = a fresh temporary dir + "/data" (which
// also exercises creating DIR), a fake clock at kStart and a device key.
class CaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/simprov_ca_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_dir_ = tmpl;
    dir_ = root_dir_ + "/data";
    absl::StatusOr<std::unique_ptr<CertificateAuthority>> ca =
        CertificateAuthority::CreateDevelopment(dir_, clock_, random_);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    device_key_ = GenerateP256Key();
  }
  void TearDown() override { std::filesystem::remove_all(root_dir_); }

  X509Ptr IssueDevice(absl::Duration ttl = absl::Hours(24)) {
    DeviceCertRequest request;
    request.public_key = device_key_.get();
    request.common_name = kImsi;
    request.device_id_uri = kDeviceUri;
    request.ttl = ttl;
    absl::StatusOr<X509Ptr> cert = ca_->IssueDeviceCertificate(request);
    EXPECT_TRUE(cert.ok()) << cert.status();
    return cert.ok() ? *std::move(cert) : nullptr;
  }

  absl::Status Verify(const CertificateAuthority& ca, X509* leaf,
                      std::string_view purpose) {
    return VerifyChain(leaf, {ca.issuing_cert()}, {ca.root_cert()},
                       clock_.Now(), purpose);
  }

  FakeClock clock_{kStart};
  DeterministicRandom random_{42};
  std::string root_dir_;
  std::string dir_;
  std::unique_ptr<CertificateAuthority> ca_;
  EvpPkeyPtr device_key_;
};

}  // namespace ca_test
}  // namespace simprov

#endif  // SIMPROV_TEST_BROKER_CA_CA_TEST_SUPPORT_H_
