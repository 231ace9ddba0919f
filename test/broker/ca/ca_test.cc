#include "broker/ca/ca.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/leaf_check.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace simprov {
namespace {

// A request with the core fields set and no group-policy extras.
DeviceCertRequest Request(EVP_PKEY* key, std::string common_name,
                          std::string device_id_uri, absl::Duration ttl) {
  DeviceCertRequest request;
  request.public_key = key;
  request.common_name = std::move(common_name);
  request.device_id_uri = std::move(device_id_uri);
  request.ttl = ttl;
  return request;
}

const absl::Time kStart = absl::FromUnixSeconds(1767225600);  // 2026-01-01Z
constexpr char kImsi[] = "001010123456789";
constexpr char kDeviceUri[] = "urn:simprov:device:001010123456789";

struct BasicConstraintsDeleter {
  void operator()(BASIC_CONSTRAINTS* b) const { BASIC_CONSTRAINTS_free(b); }
};
struct EkuDeleter {
  void operator()(EXTENDED_KEY_USAGE* e) const { EXTENDED_KEY_USAGE_free(e); }
};

bool IsCritical(X509* cert, int nid) {
  int index = X509_get_ext_by_NID(cert, nid, -1);
  return index >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, index));
}

int CountExtensions(X509* cert, int nid) {
  int count = 0;
  for (int i = -1; (i = X509_get_ext_by_NID(cert, nid, i)) >= 0;) ++count;
  return count;
}

// The NIDs in the certificate's extendedKeyUsage, in order.
std::vector<int> EkuNids(X509* cert) {
  std::unique_ptr<EXTENDED_KEY_USAGE, EkuDeleter> eku(
      static_cast<EXTENDED_KEY_USAGE*>(
          X509_get_ext_d2i(cert, NID_ext_key_usage, nullptr, nullptr)));
  std::vector<int> nids;
  if (eku == nullptr) return nids;
  for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
    nids.push_back(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.get(), i)));
  }
  return nids;
}

// Returns {present, ca, pathlen (-1 if absent)}.
std::tuple<bool, bool, long> BasicConstraints(X509* cert) {
  std::unique_ptr<BASIC_CONSTRAINTS, BasicConstraintsDeleter> bc(
      static_cast<BASIC_CONSTRAINTS*>(
          X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr)));
  if (bc == nullptr) return {false, false, -1};
  long pathlen = bc->pathlen == nullptr ? -1 : ASN1_INTEGER_get(bc->pathlen);
  return {true, bc->ca != 0, pathlen};
}

Bytes OctetString(const ASN1_OCTET_STRING* s) {
  if (s == nullptr) return Bytes();
  const unsigned char* p = ASN1_STRING_get0_data(s);
  return Bytes(p, p + ASN1_STRING_length(s));
}

// SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 method 1).
Bytes KeyIdMethod1(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(X509_pubkey_digest(cert, EVP_sha1(), md, &len), 1);
  return Bytes(md, md + len);
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t FileMode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class CaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/simprov_ca_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_dir_ = tmpl;
    dir_ = root_dir_ + "/data";  // Also exercises creating DIR.
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

TEST_F(CaTest, SerialsArePositiveLargeAndDistinct) {
  std::set<std::string> serials;
  for (int i = 0; i < 32; ++i) {
    X509Ptr cert = IssueDevice();
    ASSERT_NE(cert, nullptr);
    BignumPtr serial(
        ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
    ASSERT_NE(serial, nullptr);
    EXPECT_FALSE(BN_is_negative(serial.get()));
    EXPECT_FALSE(BN_is_zero(serial.get()));
    EXPECT_GE(BN_num_bits(serial.get()), 64);
    EXPECT_LE(BN_num_bytes(serial.get()), 20);  // RFC 5280 limit.
    serials.insert(DescribeCert(cert.get()).serial_hex);
  }
  EXPECT_EQ(serials.size(), 32u);
}

TEST_F(CaTest, SerialsUseInjectedRandom) {
  // Two CAs over identical inputs issue identical serials: nothing but the
  // injected Random feeds the serial.
  FakeClock clock(kStart);
  DeterministicRandom r1(7), r2(7);
  std::string d1 = root_dir_ + "/a", d2 = root_dir_ + "/b";
  auto ca1 = CertificateAuthority::CreateDevelopment(d1, clock, r1);
  auto ca2 = CertificateAuthority::CreateDevelopment(d2, clock, r2);
  ASSERT_TRUE(ca1.ok() && ca2.ok());
  DeviceCertRequest request =
      Request(device_key_.get(), kImsi, "", absl::Hours(1));
  auto c1 = (*ca1)->IssueDeviceCertificate(request);
  auto c2 = (*ca2)->IssueDeviceCertificate(request);
  ASSERT_TRUE(c1.ok() && c2.ok());
  EXPECT_EQ(DescribeCert(c1->get()).serial_hex,
            DescribeCert(c2->get()).serial_hex);
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

TEST_F(CaTest, ChainVerifiesForClientNotServer) {
  X509Ptr cert = IssueDevice();
  ASSERT_NE(cert, nullptr);
  EXPECT_TRUE(Verify(*ca_, cert.get(), "sslclient").ok());
  absl::Status server = Verify(*ca_, cert.get(), "sslserver");
  EXPECT_EQ(server.code(), absl::StatusCode::kUnauthenticated) << server;
  // Without the intermediate the leaf does not verify.
  EXPECT_FALSE(
      VerifyChain(cert.get(), {}, {ca_->root_cert()}, kStart, "sslclient")
          .ok());
  // Not valid after its notAfter.
  EXPECT_FALSE(VerifyChain(cert.get(), {ca_->issuing_cert()},
                           {ca_->root_cert()}, kStart + absl::Hours(25),
                           "sslclient")
                   .ok());
}

// The agent's fast check of its new certificate (VerifyP256LeafFast) says
// yes only where CertFromDer + SamePublicKey + VerifyChain("sslclient") say
// yes, with the same description.
bool GeneralPathAccepts(const Bytes& der, EVP_PKEY* key, X509* issuer,
                        X509* anchor, absl::Time at, CertInfo* info) {
  absl::StatusOr<X509Ptr> leaf = CertFromDer(der);
  if (!leaf.ok() || !SamePublicKey(X509_get0_pubkey(leaf->get()), key) ||
      !VerifyChain(leaf->get(), {issuer}, {anchor}, at, "sslclient").ok()) {
    return false;
  }
  *info = DescribeCert(leaf->get());
  return true;
}

void ExpectSameInfo(const CertInfo& a, const CertInfo& b) {
  EXPECT_EQ(a.subject, b.subject);
  EXPECT_EQ(a.issuer, b.issuer);
  EXPECT_EQ(a.serial_hex, b.serial_hex);
  EXPECT_EQ(a.not_before, b.not_before);
  EXPECT_EQ(a.not_after, b.not_after);
  EXPECT_EQ(a.dns_sans, b.dns_sans);
  EXPECT_EQ(a.ip_sans, b.ip_sans);
  EXPECT_EQ(a.uri_sans, b.uri_sans);
  EXPECT_EQ(a.is_ca, b.is_ca);
}

TEST_F(CaTest, AgentFastLeafCheckAgreesWithOpenSsl) {
  DeviceCertRequest request =
      Request(device_key_.get(), kImsi, kDeviceUri, absl::Hours(24));
  request.dns_names = {"cam-1.devices.example"};
  request.uris = {"spiffe://example/device/cam-1"};
  request.crl_url = "http://crl.example/simprov.crl";
  absl::StatusOr<IssuedCertificate> issued = ca_->IssueDevice(request);
  ASSERT_TRUE(issued.ok()) << issued.status();
  const Bytes& der = issued->der;
  X509* issuer = ca_->issuing_cert();
  X509* root = ca_->root_cert();
  const absl::Time now = clock_.Now();

  std::optional<CertInfo> fast =
      VerifyP256LeafFast(der, device_key_.get(), issuer, {root}, now);
  ASSERT_TRUE(fast.has_value());
  CertInfo general;
  ASSERT_TRUE(
      GeneralPathAccepts(der, device_key_.get(), issuer, root, now, &general));
  ExpectSameInfo(*fast, general);
  EXPECT_EQ(fast->uri_sans, (std::vector<std::string>{
                                kDeviceUri, "spiffe://example/device/cam-1"}));
  EXPECT_EQ(CertDerToPem(der), CertToPem(CertFromDer(der)->get()));

  // Each of these fails both ways.
  EvpPkeyPtr other_key = GenerateP256Key();
  EXPECT_FALSE(VerifyP256LeafFast(der, other_key.get(), issuer, {root}, now));
  EXPECT_FALSE(VerifyP256LeafFast(der, device_key_.get(), issuer, {root},
                                  issued->info.not_before - absl::Seconds(1)));
  EXPECT_FALSE(VerifyP256LeafFast(der, device_key_.get(), issuer, {root},
                                  issued->info.not_after + absl::Seconds(1)));
  // Another CA of the same name (a fresh development CA has the same
  // subjects): neither its issuing CA nor its root will do.
  FakeClock clock2{kStart};
  DeterministicRandom random2{7};
  auto other = CertificateAuthority::CreateDevelopment(root_dir_ + "/other",
                                                       clock2, random2);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(VerifyP256LeafFast(der, device_key_.get(),
                                  (*other)->issuing_cert(), {root}, now));
  EXPECT_FALSE(VerifyP256LeafFast(der, device_key_.get(), issuer,
                                  {(*other)->root_cert()}, now));
  EXPECT_FALSE(GeneralPathAccepts(der, device_key_.get(), issuer,
                                  (*other)->root_cert(), now, &general));
  // A server certificate for the same key is not a client certificate.
  absl::StatusOr<X509Ptr> server = ca_->IssueServerCertificate(
      device_key_.get(), {"cam-1.example"}, {}, absl::Hours(1));
  ASSERT_TRUE(server.ok());
  const Bytes server_der = CertToDer(server->get());
  EXPECT_FALSE(
      VerifyP256LeafFast(server_der, device_key_.get(), issuer, {root}, now));
  EXPECT_FALSE(GeneralPathAccepts(server_der, device_key_.get(), issuer, root,
                                  now, &general));
  // Other key types take the general path.
  EvpPkeyPtr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  absl::StatusOr<IssuedCertificate> p384_cert =
      ca_->IssueDevice(Request(p384.get(), kImsi, kDeviceUri, absl::Hours(1)));
  ASSERT_TRUE(p384_cert.ok());
  EXPECT_FALSE(
      VerifyP256LeafFast(p384_cert->der, p384.get(), issuer, {root}, now));
  EXPECT_TRUE(GeneralPathAccepts(p384_cert->der, p384.get(), issuer, root, now,
                                 &general));

  // Mutated certificates: whatever the fast check accepts, OpenSSL accepts.
  std::mt19937 rng(20261129);
  int fast_accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    Bytes m = der;
    switch (i % 4) {
      case 0:
        m[rng() % m.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        m[rng() % m.size()] = static_cast<uint8_t>(rng());
        break;
      case 2:
        m.resize(rng() % m.size());
        break;
      case 3:
        m.insert(m.begin() + static_cast<long>(rng() % (m.size() + 1)),
                 static_cast<uint8_t>(rng()));
        break;
    }
    if (m == der) continue;
    std::optional<CertInfo> f =
        VerifyP256LeafFast(m, device_key_.get(), issuer, {root}, now);
    if (!f.has_value()) continue;
    ++fast_accepted;
    CertInfo g;
    ASSERT_TRUE(GeneralPathAccepts(m, device_key_.get(), issuer, root, now, &g))
        << "mutation " << i << ": " << HexEncode(m);
    ExpectSameInfo(*f, g);
  }
  // The signature covers every byte the check reads.
  EXPECT_EQ(fast_accepted, 0);
}

TEST_F(CaTest, OtherDeviceKeyTypes) {
  for (EVP_PKEY* raw : {EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"),
                        EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"),
                        EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA",
                                          static_cast<size_t>(2048))}) {
    EvpPkeyPtr key(raw);
    ASSERT_NE(key, nullptr);
    DeviceCertRequest request =
        Request(key.get(), kImsi, kDeviceUri, absl::Hours(1));
    absl::StatusOr<X509Ptr> cert = ca_->IssueDeviceCertificate(request);
    ASSERT_TRUE(cert.ok()) << cert.status();
    EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(cert->get()), key.get()));
    EXPECT_EQ(X509_get_signature_nid(cert->get()), NID_ecdsa_with_SHA256);
    EXPECT_TRUE(Verify(*ca_, cert->get(), "sslclient").ok());
  }
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

TEST_F(CaTest, FilesAndModes) {
  EXPECT_EQ(FileMode(dir_ + "/ca"), 0700u);
  EXPECT_EQ(FileMode(dir_ + "/ca/root.key"), 0600u);
  EXPECT_EQ(FileMode(dir_ + "/ca/issuing.key"), 0600u);
  EXPECT_EQ(FileMode(dir_ + "/ca.pem"), 0644u);
  EXPECT_EQ(ReadWholeFile(dir_ + "/ca.pem"), ca_->TrustAnchorsPem());
  EXPECT_EQ(ReadWholeFile(dir_ + "/ca/issuing.pem"), ca_->ChainPem());
  EXPECT_EQ(ReadWholeFile(dir_ + "/ca/chain.pem"), ca_->ChainPem());

  // No temporary files are left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/ca")) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos);
    ++entries;
  }
  EXPECT_EQ(entries, 4);

  // The key files hold the matching PKCS#8 private keys.
  absl::StatusOr<EvpPkeyPtr> issuing_key =
      PrivateKeyFromPem(ReadWholeFile(dir_ + "/ca/issuing.key"));
  ASSERT_TRUE(issuing_key.ok());
  EXPECT_TRUE(
      SamePublicKey(issuing_key->get(), X509_get0_pubkey(ca_->issuing_cert())));
  absl::StatusOr<EvpPkeyPtr> root_key =
      PrivateKeyFromPem(ReadWholeFile(dir_ + "/ca/root.key"));
  ASSERT_TRUE(root_key.ok());
  EXPECT_TRUE(
      SamePublicKey(root_key->get(), X509_get0_pubkey(ca_->root_cert())));
}

TEST_F(CaTest, CreateDevelopmentRefusesToOverwrite) {
  auto again = CertificateAuthority::CreateDevelopment(dir_, clock_, random_);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  // The existing CA is untouched.
  auto loaded = CertificateAuthority::Load(dir_, clock_, random_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(CertToDer((*loaded)->root_cert()), CertToDer(ca_->root_cert()));
}

TEST_F(CaTest, LoadIssuesCertificatesVerifyingToSameRoot) {
  clock_.Advance(absl::Hours(24 * 30));
  auto loaded = CertificateAuthority::Load(dir_, clock_, random_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  CertificateAuthority& ca = **loaded;
  EXPECT_EQ(CertToDer(ca.root_cert()), CertToDer(ca_->root_cert()));
  EXPECT_EQ(CertToDer(ca.issuing_cert()), CertToDer(ca_->issuing_cert()));
  EXPECT_EQ(ca.ChainPem(), ca_->ChainPem());
  EXPECT_EQ(ca.TrustAnchorsPem(), ca_->TrustAnchorsPem());

  DeviceCertRequest request =
      Request(device_key_.get(), kImsi, kDeviceUri, absl::Hours(24));
  absl::StatusOr<X509Ptr> cert = ca.IssueDeviceCertificate(request);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(DescribeCert(cert->get()).not_before,
            clock_.Now() - absl::Minutes(5));
  // Verify against the original CA's root, parsed from the PEM on disk.
  absl::StatusOr<X509Ptr> anchor = CertFromPem(ReadWholeFile(dir_ + "/ca.pem"));
  absl::StatusOr<std::vector<X509Ptr>> chain =
      CertsFromPem(ReadWholeFile(dir_ + "/ca/chain.pem"));
  ASSERT_TRUE(anchor.ok() && chain.ok());
  ASSERT_EQ(chain->size(), 1u);
  EXPECT_TRUE(VerifyChain(cert->get(), {(*chain)[0].get()}, {anchor->get()},
                          clock_.Now(), "sslclient")
                  .ok());
}

TEST_F(CaTest, LoadRejectsMismatchedKeyAndMissingFiles) {
  const std::string original_key = ReadWholeFile(dir_ + "/ca/issuing.key");
  // Replace the issuing key with an unrelated one.
  EvpPkeyPtr other = GenerateP256Key();
  {
    std::ofstream out(dir_ + "/ca/issuing.key", std::ios::trunc);
    out << *PrivateKeyToPkcs8Pem(other.get());
  }
  auto loaded = CertificateAuthority::Load(dir_, clock_, random_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition)
      << loaded.status();

  {
    std::ofstream out(dir_ + "/ca/issuing.key", std::ios::trunc);
    out << original_key;
  }
  ASSERT_TRUE(CertificateAuthority::Load(dir_, clock_, random_).ok());

  // An issuing certificate that does not chain to ca.pem is refused.
  std::string other_dir = root_dir_ + "/other";
  auto other_ca =
      CertificateAuthority::CreateDevelopment(other_dir, clock_, random_);
  ASSERT_TRUE(other_ca.ok());
  std::filesystem::copy_file(other_dir + "/ca.pem", dir_ + "/ca.pem",
                             std::filesystem::copy_options::overwrite_existing);
  loaded = CertificateAuthority::Load(dir_, clock_, random_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition)
      << loaded.status();

  EXPECT_EQ(CertificateAuthority::Load(root_dir_ + "/missing", clock_, random_)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CaTest, ExpiredIssuingCaRefusesToIssue) {
  clock_.Advance(absl::Hours(24 * 1827));
  DeviceCertRequest request =
      Request(device_key_.get(), kImsi, kDeviceUri, absl::Hours(1));
  EXPECT_EQ(ca_->IssueDeviceCertificate(request).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CertificateAuthority::Load(dir_, clock_, random_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CaTest, ConcurrentIssuance) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 16;
  std::vector<std::vector<X509Ptr>> issued(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &issued] {
      EvpPkeyPtr key = GenerateP256Key();
      for (int i = 0; i < kPerThread; ++i) {
        DeviceCertRequest request =
            Request(key.get(), kImsi, kDeviceUri, absl::Hours(1));
        absl::StatusOr<X509Ptr> cert = ca_->IssueDeviceCertificate(request);
        if (cert.ok()) issued[t].push_back(*std::move(cert));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::string> serials;
  for (const auto& certs : issued) {
    ASSERT_EQ(certs.size(), static_cast<size_t>(kPerThread));
    for (const X509Ptr& cert : certs) {
      EXPECT_TRUE(Verify(*ca_, cert.get(), "sslclient").ok());
      serials.insert(DescribeCert(cert.get()).serial_hex);
    }
  }
  EXPECT_EQ(serials.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(CaRealRandomTest, SerialsWithRealRandom) {
  char tmpl[] = "/tmp/simprov_ca_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  {
    auto ca = CertificateAuthority::CreateDevelopment(dir, Clock::Real(),
                                                      Random::Real());
    ASSERT_TRUE(ca.ok()) << ca.status();
    EvpPkeyPtr key = GenerateP256Key();
    std::set<std::string> serials;
    for (int i = 0; i < 16; ++i) {
      DeviceCertRequest request = Request(key.get(), kImsi, "", absl::Hours(1));
      auto cert = (*ca)->IssueDeviceCertificate(request);
      ASSERT_TRUE(cert.ok()) << cert.status();
      BignumPtr serial(
          ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert->get()), nullptr));
      EXPECT_FALSE(BN_is_negative(serial.get()));
      EXPECT_GE(BN_num_bits(serial.get()), 64);
      serials.insert(DescribeCert(cert->get()).serial_hex);
    }
    EXPECT_EQ(serials.size(), 16u);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace simprov

namespace simprov {
namespace {

// A data dir with a development CA and, staged to sign from `activate_at`,
// another development CA handed over as operator material ("CN=next ...").
void MakeDirWithStagedCa(const std::string& dir, const std::string& other,
                         Clock& clock, Random& random, absl::Time activate_at) {
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
  auto old_ca = CertificateAuthority::CreateDevelopment(dir, clock, random);
  ASSERT_TRUE(old_ca.ok()) << old_ca.status();
  auto next =
      CertificateAuthority::CreateDevelopment(other, clock, random, "next");
  ASSERT_TRUE(next.ok());
  CaMaterial m;
  m.root = X509Ptr(X509_dup((*next)->root_cert()));
  m.issuing = X509Ptr(X509_dup((*next)->issuing_cert()));
  std::ifstream key_in(other + "/ca/issuing.key");
  std::stringstream key;
  key << key_in.rdbuf();
  m.key_pem = key.str();
  ASSERT_TRUE(
      CertificateAuthority::StageOperatorCa(dir, std::move(m), activate_at)
          .ok());
}

// Rollover in one process: staged = anchor only; activation moves signing
// and keeps the old generation verifying.
TEST(CaRolloverTest, StagedAnchorFirstThenSigningAndOldLeavesStillVerify) {
  const std::string dir =
      ::testing::TempDir() + "/ca-rollover-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(7);
  ASSERT_NO_FATAL_FAILURE(MakeDirWithStagedCa(dir, other, clock, random,
                                              clock.Now() + absl::Hours(1)));
  auto ca = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ((*ca)->TrustAnchorsDer().size(), 2u);
  EvpPkeyPtr key1 = GenerateP256Key();
  DeviceCertRequest req;
  req.public_key = key1.get();
  req.common_name = "001010000000001";
  req.ttl = absl::Hours(24);
  auto before = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(DescribeCert(before->get()).issuer,
            "CN=simprov development issuing CA");
  EXPECT_FALSE(*(*ca)->MaybeActivateStaged(false));  // not yet
  clock.Advance(absl::Hours(2));
  EXPECT_TRUE(*(*ca)->MaybeActivateStaged(false));
  auto after = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(DescribeCert(after->get()).issuer, "CN=next issuing CA");
  EXPECT_TRUE(
      (*ca)->VerifyIssued(before->get(), clock.Now(), "sslclient").ok());
  EXPECT_TRUE((*ca)->VerifyIssued(after->get(), clock.Now(), "sslclient").ok());
  EXPECT_EQ((*ca)->TrustAnchorsDer().size(), 2u);
  // Persisted: a reload has the same state.
  auto reloaded = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ((*reloaded)->State().retired, 1u);
  EXPECT_FALSE((*reloaded)->State().staged);
  EXPECT_TRUE(
      (*reloaded)->VerifyIssued(before->get(), clock.Now(), "sslclient").ok());
  EXPECT_FALSE((*reloaded)->MaybeActivateStaged(true).ok());
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
}

// A crash in the middle of an activation: the new issuing key is in place,
// its certificate not yet. Without the journal the data dir would not load;
// with it, the next Load finishes the switch.
TEST(CaRolloverTest, ActivationInterruptedByACrashIsFinishedAtTheNextLoad) {
  const std::string dir =
      ::testing::TempDir() + "/ca-crash-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(8);
  ASSERT_NO_FATAL_FAILURE(
      MakeDirWithStagedCa(dir, other, clock, random, clock.Now()));
  EvpPkeyPtr device_key = GenerateP256Key();
  DeviceCertRequest req;
  req.public_key = device_key.get();
  req.common_name = "001010000000002";
  req.ttl = absl::Hours(24);
  X509Ptr before;
  std::string old_issuing;
  {
    auto ca = CertificateAuthority::Load(dir, clock, random);
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto issued = (*ca)->IssueDeviceCertificate(req);
    ASSERT_TRUE(issued.ok());
    before = *std::move(issued);
    old_issuing =
        CertToPem((*ca)->issuing_cert()) + CertToPem((*ca)->root_cert());
  }
  const std::string next = dir + "/ca/next";
  std::filesystem::copy_file(next + "/issuing.key", dir + "/ca/issuing.key",
                             std::filesystem::copy_options::overwrite_existing);
  auto broken = CertificateAuthority::Load(dir, clock, random);
  ASSERT_FALSE(broken.ok());  // key and certificate disagree

  // The journal the activation writes first: retired.pem's new content.
  {
    std::ofstream journal(next + "/activating");
    journal << old_issuing;
  }
  auto ca = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_FALSE((*ca)->State().staged);
  EXPECT_EQ((*ca)->State().retired, 1u);
  EXPECT_FALSE(std::filesystem::exists(next));
  auto after = (*ca)->IssueDeviceCertificate(req);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(DescribeCert(after->get()).issuer, "CN=next issuing CA");
  EXPECT_TRUE((*ca)->VerifyIssued(before.get(), clock.Now(), "sslclient").ok());
  EXPECT_TRUE((*ca)->VerifyIssued(after->get(), clock.Now(), "sslclient").ok());
  struct stat st;
  ASSERT_EQ(stat((dir + "/ca/issuing.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
}

// A crash during the clean-up after the writes: next/ has lost root.pem
// but still holds the key and the journal. The next Load only cleans up.
TEST(CaRolloverTest, ActivationInterruptedDuringCleanUpIsFinishedToo) {
  const std::string dir =
      ::testing::TempDir() + "/ca-cleanup-" + std::to_string(::getpid());
  const std::string other = dir + "-next";
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(9);
  ASSERT_NO_FATAL_FAILURE(
      MakeDirWithStagedCa(dir, other, clock, random, clock.Now()));
  const std::string next = dir + "/ca/next";
  const std::string saved = dir + "-saved-next";
  std::filesystem::remove_all(saved);
  std::filesystem::copy(next, saved);
  {
    auto ca = CertificateAuthority::Load(dir, clock, random);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ASSERT_TRUE(*(*ca)->MaybeActivateStaged(true));
  }
  ASSERT_FALSE(std::filesystem::exists(next));
  const std::string retired =
      ReadFileToString(dir + "/ca/retired.pem", 1 << 20).value_or("");
  ASSERT_FALSE(retired.empty());
  // Put back what a crash after unlinking root.pem would have left.
  std::filesystem::copy(saved, next);
  std::filesystem::remove(next + "/root.pem");
  {
    std::ofstream journal(next + "/activating");
    journal << "not read: every write was done";
  }
  auto ca = CertificateAuthority::Load(dir, clock, random);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_FALSE((*ca)->State().staged);
  EXPECT_EQ((*ca)->State().retired, 1u);
  EXPECT_EQ(DescribeCert((*ca)->issuing_cert()).subject, "CN=next issuing CA");
  EXPECT_FALSE(std::filesystem::exists(next));
  EXPECT_EQ(ReadFileToString(dir + "/ca/retired.pem", 1 << 20).value_or(""),
            retired);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(other);
  std::filesystem::remove_all(saved);
}

}  // namespace
}  // namespace simprov
