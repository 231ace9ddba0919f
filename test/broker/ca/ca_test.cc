// CertificateAuthority issuance: serials, chains, the agent's fast leaf
// check, key types, expiry and concurrency.
#include "broker/ca/ca.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/leaf_check.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"
#include "test/broker/ca/ca_test_support.h"

namespace simprov {
namespace ca_test {
namespace {

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

// An issuing certificate whose key does not decode (a point off the curve)
// still parses; X509_get0_pubkey is then null. The fast check refuses it
// instead of reading through the null key.
TEST_F(CaTest, AgentFastLeafCheckRefusesIssuerWithUndecodableKey) {
  absl::StatusOr<IssuedCertificate> issued = ca_->IssueDevice(
      Request(device_key_.get(), kImsi, kDeviceUri, absl::Hours(24)));
  ASSERT_TRUE(issued.ok()) << issued.status();
  X509* issuer = ca_->issuing_cert();
  Bytes issuer_der = CertToDer(issuer);
  absl::StatusOr<Bytes> spki = PublicKeyToDer(X509_get0_pubkey(issuer));
  ASSERT_TRUE(spki.ok());
  auto at = std::search(issuer_der.begin(), issuer_der.end(), spki->begin(),
                        spki->end());
  ASSERT_NE(at, issuer_der.end());
  // The last byte of Y: the point leaves the curve.
  issuer_der[static_cast<size_t>(at - issuer_der.begin()) + spki->size() - 1] ^=
      1;
  absl::StatusOr<X509Ptr> broken = CertFromDer(issuer_der);
  ASSERT_TRUE(broken.ok()) << broken.status();
  ASSERT_EQ(X509_get0_pubkey(broken->get()), nullptr);
  EXPECT_FALSE(VerifyP256LeafFast(issued->der, device_key_.get(), broken->get(),
                                  {ca_->root_cert()}, clock_.Now()));
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
}  // namespace ca_test
}  // namespace simprov
