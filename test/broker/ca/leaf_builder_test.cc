// The certificate profile (leaf_builder.h): device, server and CA
// certificates as issued, and the builder's own checks.
#include "broker/ca/leaf_builder.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "broker/ca/ca.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
#include "test/broker/ca/ca_test_support.h"

namespace simprov {
namespace ca_test {
namespace {

TEST_F(CaTest, DeviceCertificateProfile) {
  X509Ptr cert = IssueDevice(absl::Hours(24));
  ASSERT_NE(cert, nullptr);
  X509* c = cert.get();

  EXPECT_EQ(X509_get_version(c), 2);  // v3
  EXPECT_EQ(X509_get_signature_nid(c), NID_ecdsa_with_SHA256);
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(c), device_key_.get()));

  // Subject is exactly CN=<imsi>; issuer is the issuing CA.
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(c)), 1);
  CertInfo info = DescribeCert(c);
  EXPECT_EQ(info.subject, std::string("CN=") + kImsi);
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(c),
                          X509_get_subject_name(ca_->issuing_cert())),
            0);
  EXPECT_EQ(info.issuer, "CN=simprov development issuing CA");

  // Validity.
  EXPECT_EQ(info.not_before, kStart - absl::Minutes(5));
  EXPECT_EQ(info.not_after, kStart + absl::Hours(24));

  // basicConstraints critical CA:FALSE.
  auto [bc_present, bc_ca, bc_pathlen] = BasicConstraints(c);
  EXPECT_TRUE(bc_present);
  EXPECT_FALSE(bc_ca);
  EXPECT_EQ(bc_pathlen, -1);
  EXPECT_TRUE(IsCritical(c, NID_basic_constraints));
  EXPECT_FALSE(info.is_ca);

  // keyUsage critical digitalSignature only.
  EXPECT_EQ(X509_get_key_usage(c), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_TRUE(IsCritical(c, NID_key_usage));

  // extendedKeyUsage clientAuth only.
  EXPECT_EQ(EkuNids(c), std::vector<int>{NID_client_auth});
  EXPECT_FALSE(IsCritical(c, NID_ext_key_usage));

  // SKI (method 1) and AKI keyid == issuer SKI.
  ASSERT_NE(X509_get0_subject_key_id(c), nullptr);
  EXPECT_EQ(OctetString(X509_get0_subject_key_id(c)), KeyIdMethod1(c));
  ASSERT_NE(X509_get0_authority_key_id(c), nullptr);
  EXPECT_EQ(OctetString(X509_get0_authority_key_id(c)),
            OctetString(X509_get0_subject_key_id(ca_->issuing_cert())));

  // SAN: exactly the device URI.
  EXPECT_EQ(info.uri_sans, std::vector<std::string>{kDeviceUri});
  EXPECT_TRUE(info.dns_sans.empty());
  EXPECT_TRUE(info.ip_sans.empty());
  EXPECT_FALSE(IsCritical(c, NID_subject_alt_name));

  // Exactly these extensions, each once.
  EXPECT_EQ(X509_get_ext_count(c), 6);
  for (int nid : {NID_basic_constraints, NID_key_usage, NID_ext_key_usage,
                  NID_subject_key_identifier, NID_authority_key_identifier,
                  NID_subject_alt_name}) {
    EXPECT_EQ(CountExtensions(c, nid), 1) << OBJ_nid2sn(nid);
  }

  // Signed by the issuing CA.
  EXPECT_EQ(X509_verify(c, X509_get0_pubkey(ca_->issuing_cert())), 1);
}

TEST_F(CaTest, NoUriSanWhenDeviceIdEmpty) {
  DeviceCertRequest request;
  request.public_key = device_key_.get();
  request.common_name = kImsi;
  request.ttl = absl::Hours(1);
  absl::StatusOr<X509Ptr> cert = ca_->IssueDeviceCertificate(request);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(CountExtensions(cert->get(), NID_subject_alt_name), 0);
  EXPECT_EQ(X509_get_ext_count(cert->get()), 5);
}

TEST_F(CaTest, NotAfterClampedToIssuer) {
  X509Ptr cert = IssueDevice(absl::Hours(24 * 365 * 100));
  ASSERT_NE(cert, nullptr);
  CertInfo issuing = DescribeCert(ca_->issuing_cert());
  EXPECT_EQ(DescribeCert(cert.get()).not_after, issuing.not_after);
  EXPECT_TRUE(Verify(*ca_, cert.get(), "sslclient").ok());
  // Even an infinite TTL is clamped.
  cert = IssueDevice(absl::InfiniteDuration());
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(DescribeCert(cert.get()).not_after, issuing.not_after);
}

TEST_F(CaTest, ServerCertificate) {
  EvpPkeyPtr key = GenerateP256Key();
  absl::StatusOr<X509Ptr> cert =
      ca_->IssueServerCertificate(key.get(), {"broker.example", "127.0.0.1"},
                                  {"::1", "192.0.2.7"}, absl::Hours(24 * 30));
  ASSERT_TRUE(cert.ok()) << cert.status();
  X509* c = cert->get();
  CertInfo info = DescribeCert(c);
  EXPECT_EQ(info.subject, "CN=broker.example");
  EXPECT_EQ(info.dns_sans, std::vector<std::string>{"broker.example"});
  EXPECT_EQ(info.ip_sans,
            (std::vector<std::string>{"127.0.0.1", "::1", "192.0.2.7"}));
  EXPECT_TRUE(info.uri_sans.empty());
  EXPECT_EQ(EkuNids(c), std::vector<int>{NID_server_auth});
  EXPECT_EQ(X509_get_key_usage(c), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  auto [bc_present, bc_ca, bc_pathlen] = BasicConstraints(c);
  EXPECT_TRUE(bc_present);
  EXPECT_FALSE(bc_ca);
  EXPECT_EQ(OctetString(X509_get0_authority_key_id(c)),
            OctetString(X509_get0_subject_key_id(ca_->issuing_cert())));
  EXPECT_EQ(info.not_after, kStart + absl::Hours(24 * 30));

  EXPECT_TRUE(Verify(*ca_, c, "sslserver").ok());
  EXPECT_FALSE(Verify(*ca_, c, "sslclient").ok());
  EXPECT_EQ(X509_check_host(c, "broker.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(c, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(c, "::1", 0), 1);
  EXPECT_NE(X509_check_host(c, "127.0.0.1", 0, 0, nullptr), 1);

  // IP-only server certificate: CN is the address.
  cert =
      ca_->IssueServerCertificate(key.get(), {}, {"127.0.0.1"}, absl::Hours(1));
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(DescribeCert(cert->get()).subject, "CN=127.0.0.1");
  EXPECT_EQ(DescribeCert(cert->get()).ip_sans,
            std::vector<std::string>{"127.0.0.1"});
}

TEST_F(CaTest, ServerCertificateRejectsBadNames) {
  EvpPkeyPtr key = GenerateP256Key();
  const absl::Duration ttl = absl::Hours(1);
  EXPECT_FALSE(ca_->IssueServerCertificate(key.get(), {}, {}, ttl).ok());
  EXPECT_FALSE(
      ca_->IssueServerCertificate(key.get(), {}, {"broker.example"}, ttl).ok());
  EXPECT_FALSE(
      ca_->IssueServerCertificate(key.get(), {"bad name"}, {}, ttl).ok());
  EXPECT_FALSE(
      ca_->IssueServerCertificate(key.get(), {"a,DNS:evil.example"}, {}, ttl)
          .ok());
  EXPECT_FALSE(ca_->IssueServerCertificate(key.get(), {"a..b"}, {}, ttl).ok());
  EXPECT_TRUE(
      ca_->IssueServerCertificate(key.get(), {"*.example.com"}, {}, ttl).ok());
  EXPECT_FALSE(
      ca_->IssueServerCertificate(nullptr, {"broker.example"}, {}, ttl).ok());
}

TEST_F(CaTest, DeviceRequestValidation) {
  DeviceCertRequest ok =
      Request(device_key_.get(), kImsi, kDeviceUri, absl::Hours(1));
  EXPECT_TRUE(ca_->IssueDeviceCertificate(ok).ok());

  DeviceCertRequest r = ok;
  r.public_key = nullptr;
  EXPECT_EQ(ca_->IssueDeviceCertificate(r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r = ok;
  r.common_name = "";
  EXPECT_EQ(ca_->IssueDeviceCertificate(r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r.common_name = std::string(65, '1');
  EXPECT_EQ(ca_->IssueDeviceCertificate(r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r.common_name = "a\nb";
  EXPECT_EQ(ca_->IssueDeviceCertificate(r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r = ok;
  r.ttl = absl::ZeroDuration();
  EXPECT_EQ(ca_->IssueDeviceCertificate(r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r.ttl = -absl::Hours(1);
  EXPECT_EQ(ca_->IssueDeviceCertificate(r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r = ok;
  for (const char* uri : {"urn:x y", "no-scheme", ":x", "urn:\x01"}) {
    r.device_id_uri = uri;
    EXPECT_EQ(ca_->IssueDeviceCertificate(r).status().code(),
              absl::StatusCode::kInvalidArgument)
        << uri;
  }
}

TEST_F(CaTest, CaCertificateProfiles) {
  X509* root = ca_->root_cert();
  X509* issuing = ca_->issuing_cert();
  CertInfo root_info = DescribeCert(root);
  CertInfo issuing_info = DescribeCert(issuing);

  EXPECT_EQ(root_info.subject, "CN=simprov development root CA");
  EXPECT_EQ(root_info.issuer, root_info.subject);
  EXPECT_EQ(X509_get_version(root), 2);
  EXPECT_TRUE(root_info.is_ca);
  EXPECT_TRUE(IsCritical(root, NID_basic_constraints));
  EXPECT_TRUE(IsCritical(root, NID_key_usage));
  EXPECT_EQ(X509_get_key_usage(root),
            static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_EQ(OctetString(X509_get0_subject_key_id(root)), KeyIdMethod1(root));
  EXPECT_EQ(root_info.not_before, kStart - absl::Minutes(5));
  EXPECT_EQ(root_info.not_after, kStart + absl::Hours(24 * 3652));
  EXPECT_EQ(X509_verify(root, X509_get0_pubkey(root)), 1);
  EXPECT_EQ(X509_get_signature_nid(root), NID_ecdsa_with_SHA256);
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(root)), EVP_PKEY_EC);

  EXPECT_EQ(issuing_info.subject, "CN=simprov development issuing CA");
  EXPECT_EQ(issuing_info.issuer, root_info.subject);
  EXPECT_EQ(X509_get_version(issuing), 2);
  auto [bc_present, bc_ca, bc_pathlen] = BasicConstraints(issuing);
  EXPECT_TRUE(bc_present);
  EXPECT_TRUE(bc_ca);
  EXPECT_EQ(bc_pathlen, 0);
  EXPECT_TRUE(IsCritical(issuing, NID_basic_constraints));
  EXPECT_EQ(X509_get_key_usage(issuing),
            static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN |
                                  KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(OctetString(X509_get0_authority_key_id(issuing)),
            OctetString(X509_get0_subject_key_id(root)));
  EXPECT_EQ(issuing_info.not_after, kStart + absl::Hours(24 * 1826));
  EXPECT_EQ(X509_verify(issuing, X509_get0_pubkey(root)), 1);
  EXPECT_FALSE(
      SamePublicKey(X509_get0_pubkey(root), X509_get0_pubkey(issuing)));

  // Accessors.
  EXPECT_EQ(ca_->ChainPem(), CertToPem(issuing));
  EXPECT_EQ(ca_->TrustAnchorsPem(), CertToPem(root));
  EXPECT_EQ(ca_->ChainDer(), std::vector<Bytes>{CertToDer(issuing)});
  EXPECT_EQ(ca_->TrustAnchorsDer(), std::vector<Bytes>{CertToDer(root)});
}

// ---- The builder's parts, directly ----------------------------------------

TEST(LeafBuilderTest, CrlDistributionPointHoldsOneFullNameUri) {
  EvpPkeyPtr key = GenerateP256Key();
  CertSpec spec;
  spec.public_key = key.get();
  spec.common_name = "crl test";
  spec.serial = Bytes(16, 0x41);
  spec.not_before = absl::ToUnixSeconds(kStart);
  spec.not_after = absl::ToUnixSeconds(kStart + absl::Hours(1));
  spec.basic_constraints = "critical,CA:FALSE";
  spec.key_usage = "critical,digitalSignature";
  spec.ext_key_usage = "clientAuth";
  spec.crl_url = "http://pki.example:8080/crl/ca.crl";
  absl::StatusOr<X509Ptr> cert = BuildCertificate(spec);
  ASSERT_TRUE(cert.ok()) << cert.status();
  X509* c = cert->get();
  EXPECT_EQ(CountExtensions(c, NID_crl_distribution_points), 1);
  EXPECT_FALSE(IsCritical(c, NID_crl_distribution_points));
  std::unique_ptr<CRL_DIST_POINTS, OpenSslDeleter<CRL_DIST_POINTS_free>> points(
      static_cast<CRL_DIST_POINTS*>(
          X509_get_ext_d2i(c, NID_crl_distribution_points, nullptr, nullptr)));
  ASSERT_NE(points, nullptr);
  ASSERT_EQ(sk_DIST_POINT_num(points.get()), 1);
  DIST_POINT* point = sk_DIST_POINT_value(points.get(), 0);
  EXPECT_EQ(point->reasons, nullptr);
  EXPECT_EQ(point->CRLissuer, nullptr);
  ASSERT_NE(point->distpoint, nullptr);
  ASSERT_EQ(point->distpoint->type, 0);  // fullName
  GENERAL_NAMES* names = point->distpoint->name.fullname;
  ASSERT_EQ(sk_GENERAL_NAME_num(names), 1);
  GENERAL_NAME* name = sk_GENERAL_NAME_value(names, 0);
  ASSERT_EQ(name->type, GEN_URI);
  const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                  ASN1_STRING_length(uri)),
      spec.crl_url);
  // Extensions in profile order, the CRL Distribution Points last.
  EXPECT_EQ(X509_get_ext_count(c), 5);
  EXPECT_EQ(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(c, 4))),
            NID_crl_distribution_points);
  // Self-signed: no AKI, SKI by method 1.
  EXPECT_EQ(X509_get0_authority_key_id(c), nullptr);
  EXPECT_EQ(OctetString(X509_get0_subject_key_id(c)), KeyIdMethod1(c));
}

TEST(LeafBuilderTest, SubjectAttributesReplaceTheCommonName) {
  EvpPkeyPtr key = GenerateP256Key();
  CertSpec spec;
  spec.public_key = key.get();
  spec.common_name = "ignored";
  spec.serial = Bytes(16, 0x41);
  spec.not_before = absl::ToUnixSeconds(kStart);
  spec.not_after = absl::ToUnixSeconds(kStart + absl::Hours(1));
  spec.basic_constraints = "critical,CA:FALSE";
  spec.key_usage = "critical,digitalSignature";
  spec.subject = {{"CN", "cam-1"}, {"O", "Acme"}};
  absl::StatusOr<X509Ptr> cert = BuildCertificate(spec);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(DescribeCert(cert->get()).subject, "O=Acme,CN=cam-1");
  spec.subject = {{"NOT-AN-ATTRIBUTE", "x"}};
  EXPECT_EQ(BuildCertificate(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LeafBuilderTest, SerialsHaveAFixedLengthAndArePositive) {
  DeterministicRandom random(3);
  for (int i = 0; i < 64; ++i) {
    Bytes serial = MakeSerial(random);
    ASSERT_EQ(serial.size(), 16u);
    EXPECT_EQ(serial[0] & 0xc0, 0x40);
  }
}

TEST(LeafBuilderTest, NameChecks) {
  EXPECT_TRUE(CheckCommonName(std::string(64, 'a')).ok());
  EXPECT_TRUE(CheckCommonName("Zo\xc3\xab").ok());
  EXPECT_EQ(CheckCommonName(""),
            absl::InvalidArgumentError("common name must be 1..64 bytes"));
  EXPECT_FALSE(CheckCommonName(std::string(65, 'a')).ok());
  EXPECT_EQ(
      CheckCommonName("a\x7f"),
      absl::InvalidArgumentError("common name contains a control character"));

  EXPECT_TRUE(CheckUri("urn:x").ok());
  EXPECT_TRUE(CheckUri("u" + std::string(1022, 'r') + ":").ok());
  EXPECT_EQ(CheckUri("u" + std::string(1023, 'r') + ":"),
            absl::InvalidArgumentError("device id URI is too long"));
  EXPECT_EQ(CheckUri("1urn:x"),
            absl::InvalidArgumentError("device id URI has no scheme"));
  EXPECT_EQ(CheckUri("urn:\xc3\xab"),
            absl::InvalidArgumentError(
                "device id URI must be printable ASCII without spaces"));

  for (const char* ok : {"a", "a.b", "*.example.com", "x-1.example"}) {
    EXPECT_TRUE(CheckDnsName(ok).ok()) << ok;
  }
  EXPECT_TRUE(CheckDnsName(std::string(63, 'a') + ".b").ok());
  for (const std::string& bad :
       {std::string(""), std::string("*"), std::string("*."),
        std::string("a..b"), std::string("a."), std::string("a_b"),
        std::string(".a"), std::string(64, 'a') + ".b",
        std::string(254, 'a')}) {
    EXPECT_EQ(CheckDnsName(bad).code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(LeafBuilderTest, ParseIp) {
  std::string out;
  ASSERT_TRUE(ParseIp("192.0.2.7", &out));
  EXPECT_EQ(out, std::string("\xc0\x00\x02\x07", 4));
  ASSERT_TRUE(ParseIp("::1", &out));
  EXPECT_EQ(out, std::string(15, '\0') + "\x01");
  EXPECT_FALSE(ParseIp("broker.example", &out));
  EXPECT_FALSE(ParseIp("1.2.3", &out));
  EXPECT_FALSE(ParseIp("", &out));
}

TEST(LeafBuilderTest, ComputeValidity) {
  const absl::Duration backdate = absl::Minutes(5);
  const absl::Time issuer_nb = kStart - absl::Hours(24);
  const absl::Time issuer_na = kStart + absl::Hours(24);
  const int64_t start = absl::ToUnixSeconds(kStart);
  auto v =
      ComputeValidity(kStart, absl::Hours(1), backdate, issuer_nb, issuer_na);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->not_before, start - 300);
  EXPECT_EQ(v->not_after, start + 3600);
  // Rounded inwards to whole seconds.
  v = ComputeValidity(kStart + absl::Milliseconds(500), absl::Hours(1),
                      backdate, issuer_nb, issuer_na);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->not_before, start - 299);
  EXPECT_EQ(v->not_after, start + 3600);
  // Clamped into the issuer's validity.
  v = ComputeValidity(kStart, absl::Hours(48), backdate,
                      kStart - absl::Minutes(1), issuer_na);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->not_before, start - 60);
  EXPECT_EQ(v->not_after, absl::ToUnixSeconds(issuer_na));

  EXPECT_EQ(
      ComputeValidity(kStart, absl::ZeroDuration(), backdate, issuer_nb,
                      issuer_na)
          .status(),
      absl::InvalidArgumentError("certificate lifetime must be positive"));
  EXPECT_EQ(
      ComputeValidity(issuer_na, absl::Hours(1), backdate, issuer_nb, issuer_na)
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      ComputeValidity(kStart, absl::Nanoseconds(1), backdate, kStart, issuer_na)
          .status(),
      absl::InvalidArgumentError("certificate lifetime is too short"));
}

}  // namespace
}  // namespace ca_test
}  // namespace simprov
