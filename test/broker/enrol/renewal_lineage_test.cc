// Renewal and certificate lineage, in-process with a fake clock: a
// superseded certificate renews no more (PERMISSION_DENIED "superseded",
// audited and counted) except for the same renewal retried within
// kRenewalRetryWindow; revoking a certificate takes its renewals with it;
// SupersededRevoker revokes superseded certificates once their group's
// supersede_grace has passed.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/ca/ca.h"
#include "broker/ca/crl_publisher.h"
#include "broker/enrol/bootstrap_service.h"
#include "broker/fleet/supersede_job.h"
#include "broker/ops/broker_metrics.h"
#include "broker/ops/metrics.h"
#include "broker/policy/group_policies.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/clock.h"
#include "common/csr.h"
#include "common/sealed_box.h"
#include "common/x509.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RemoveTree;

constexpr char kImsi[] = "001010000019001";
constexpr char kOtherImsi[] = "001010000019002";

// The serials on a DER CRL and their reason codes (-1: none).
std::map<std::string, int> CrlEntries(const Bytes& der) {
  std::map<std::string, int> out;
  const unsigned char* p = der.data();
  X509_CRL* crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size()));
  if (crl == nullptr) return out;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    X509_REVOKED* r = sk_X509_REVOKED_value(revoked, i);
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(r), nullptr);
    char* hex = BN_bn2hex(bn);
    std::string serial = absl::AsciiStrToLower(hex);
    OPENSSL_free(hex);
    BN_free(bn);
    int reason = -1;
    auto* e = static_cast<ASN1_ENUMERATED*>(
        X509_REVOKED_get_ext_d2i(r, NID_crl_reason, nullptr, nullptr));
    if (e != nullptr) {
      reason = static_cast<int>(ASN1_ENUMERATED_get(e));
      ASN1_ENUMERATED_free(e);
    }
    out[serial] = reason;
  }
  X509_CRL_free(crl);
  return out;
}

// Serials as the CRL prints them: without leading zeros.
std::string CrlSerial(const std::string& serial) {
  size_t i = serial.find_first_not_of('0');
  return i == std::string::npos ? "0" : serial.substr(i);
}

class RenewalLineageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    auto store = SqliteStore::Open(dir_ + "/simprov.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto ca = CertificateAuthority::CreateDevelopment(dir_, clock_, random_);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
    ASSERT_TRUE(
        store_
            ->PutGroups(
                {{"fast", R"({"name":"fast","supersede_grace":"2s"})",
                  clock_.Now()}},
                {clock_.Now(), "local", "group-apply", "fast", "ok", ""})
            .ok());
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok());
    for (const char* imsi : {kImsi, kOtherImsi}) {
      NewSubscriber s;
      s.imsi = imsi;
      s.sealed_keys = random_.Generate(64);
      s.amf = {0x80, 0x00};
      s.group = imsi == std::string(kImsi) ? "default" : "fast";
      ASSERT_TRUE((*import)->Add(s).ok());
    }
    ASSERT_TRUE((*import)->Commit().ok());
    policies_ = std::make_unique<GroupPolicies>(*store_);
    crl_ = std::make_unique<CrlPublisher>(*store_, *ca_, clock_,
                                          dir_ + "/ca.crl", absl::Hours(24));
    metrics_ = std::make_unique<BrokerMetrics>(registry_);
    BootstrapOptions options;
    options.names = {"broker.test"};
    options.policies = policies_.get();
    options.crl = crl_.get();
    options.metrics = metrics_.get();
    bootstrapper_ = std::make_unique<Bootstrapper>(
        options, *store_, *ca_, random_.Generate(32), clock_, random_);
    revoker_ = std::make_unique<SupersededRevoker>(
        *store_, *policies_, *crl_, clock_,
        [this](const DeviceRevocation& r) { notified_.push_back(r); });
  }
  void TearDown() override {
    revoker_.reset();
    bootstrapper_.reset();
    crl_.reset();
    policies_.reset();
    store_.reset();
    RemoveTree(dir_);
  }

  // A certificate recorded as a SIM bootstrap would: its PEM and key.
  struct Held {
    std::string serial;
    std::string pem;
    EvpPkeyPtr key;
  };
  Held Bootstrap(const std::string& imsi) {
    Held h;
    h.key = GenerateP256Key();
    DeviceCertRequest req;
    req.public_key = h.key.get();
    req.common_name = imsi;
    req.device_id_uri = Bootstrapper::DeviceIdUri(imsi);
    req.ttl = absl::Hours(24);
    auto issued = ca_->IssueDevice(req);
    EXPECT_TRUE(issued.ok()) << issued.status();
    CertificateRecord c;
    c.serial = issued->info.serial_hex;
    c.imsi = imsi;
    c.device_id = imsi;
    c.not_before = issued->info.not_before;
    c.not_after = issued->info.not_after;
    c.der = issued->der;
    c.issued_at = clock_.Now();
    absl::Status s = store_->RecordIssuance(
        c, {clock_.Now(), imsi, "bootstrap", imsi, "ok", ""});
    EXPECT_TRUE(s.ok()) << s;
    h.serial = c.serial;
    h.pem = CertDerToPem(c.der);
    return h;
  }

  // Renews `with`, asking for `key` (a new one if null).
  absl::StatusOr<Held> Renew(const Held& with, EVP_PKEY* key = nullptr) {
    Held out;
    if (key == nullptr) {
      out.key = GenerateP256Key();
      key = out.key.get();
    }
    v1::RenewRequest req;
    req.set_csr(ToString(*CreateCsr(key, "ignored")));
    auto resp = bootstrapper_->Renew(with.pem, req);
    if (!resp.ok()) return resp.status();
    auto leaf = CertFromDer(ToBytes(resp->chain(0)));
    if (!leaf.ok()) return leaf.status();
    out.serial = DescribeCert(leaf->get()).serial_hex;
    out.pem = CertToPem(leaf->get());
    return out;
  }

  std::string Metrics() { return registry_.Render(); }

  std::string dir_;
  FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  DeterministicRandom random_{7};
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<CertificateAuthority> ca_;
  std::unique_ptr<GroupPolicies> policies_;
  std::unique_ptr<CrlPublisher> crl_;
  MetricsRegistry registry_;
  std::unique_ptr<BrokerMetrics> metrics_;
  std::unique_ptr<Bootstrapper> bootstrapper_;
  std::unique_ptr<SupersededRevoker> revoker_;
  std::vector<DeviceRevocation> notified_;
};

TEST_F(RenewalLineageTest, SupersededCertificateIsRefusedExceptTheSameRetry) {
  Held original = Bootstrap(kImsi);
  // A copy of the key renews first: the original is superseded.
  clock_.Advance(absl::Minutes(1));
  auto copy = Renew(original);
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto record = store_->GetCertificate(copy->serial);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->renewed_from, original.serial);
  EXPECT_EQ(store_->GetCertificate(original.serial)->superseded_at,
            clock_.Now());
  EXPECT_TRUE(absl::StrContains(
      Metrics(), "simprov_renewals_refused_total{reason=\"superseded\"} 0"))
      << Metrics();

  // The original's own renewal (another key) is refused, audited, counted.
  clock_.Advance(absl::Seconds(30));
  auto refused = Renew(original);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.status().message(), "superseded");
  auto audit = store_->AuditOf(kImsi);
  ASSERT_TRUE(audit.ok());
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().actor, kImsi);
  EXPECT_EQ(audit->back().action, "renew");
  EXPECT_EQ(audit->back().target, kImsi);
  EXPECT_EQ(audit->back().result, "refused");
  EXPECT_EQ(audit->back().reason, "superseded");
  EXPECT_TRUE(absl::StrContains(
      Metrics(), "simprov_renewals_refused_total{reason=\"superseded\"} 1"))
      << Metrics();
  EXPECT_EQ(store_->RenewalsOf(original.serial)->size(), 1u);

  // The same renewal asked again (its answer lost): the same certificate.
  auto again = Renew(original, copy->key.get());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->serial, copy->serial);
  EXPECT_EQ(store_->RenewalsOf(original.serial)->size(), 1u);
  // ... but not once the window has passed.
  clock_.Set(record->issued_at + kRenewalRetryWindow + absl::Seconds(1));
  again = Renew(original, copy->key.get());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(again.status().message(), "superseded");
  EXPECT_TRUE(absl::StrContains(
      Metrics(), "simprov_renewals_refused_total{reason=\"superseded\"} 2"));

  // Once the copy's certificate renewed itself it is no longer current:
  // the retry of the first renewal gets nothing either.
  clock_.Set(record->issued_at + absl::Minutes(1));
  auto next = Renew(*copy);
  ASSERT_TRUE(next.ok()) << next.status();
  again = Renew(original, copy->key.get());
  EXPECT_EQ(again.status().message(), "superseded");
}

TEST_F(RenewalLineageTest, RevokingTheOriginalRevokesTheCopysLineage) {
  Held original = Bootstrap(kImsi);
  clock_.Advance(absl::Minutes(1));
  auto c1 = Renew(original);
  ASSERT_TRUE(c1.ok()) << c1.status();
  clock_.Advance(absl::Minutes(1));
  auto c2 = Renew(*c1);
  ASSERT_TRUE(c2.ok()) << c2.status();

  RevocationRequest r;
  r.serial = original.serial;
  r.reason = "keyCompromise";
  r.at = clock_.Now();
  auto revoked = store_->RevokeCertificates(
      r, {r.at, "local", "revoke", r.serial, "ok", "reason=keyCompromise"});
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  ASSERT_EQ(revoked->size(), 3u);
  ASSERT_TRUE(crl_->Regenerate().ok());
  auto entries = CrlEntries(crl_->Der());
  for (const std::string& s : {original.serial, c1->serial, c2->serial}) {
    ASSERT_TRUE(entries.contains(CrlSerial(s))) << s;
    EXPECT_EQ(entries[CrlSerial(s)], 1) << s;  // keyCompromise
  }
  auto refused = Renew(*c2);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                "was revoked (keyCompromise)"))
      << refused.status();
  // Not even the retry exception: its renewal is revoked.
  EXPECT_EQ(Renew(original, c1->key.get()).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(RenewalLineageTest, ARenewalThatLosesTheRaceIsRefusedAsSuperseded) {
  Held original = Bootstrap(kImsi);
  // Both read the certificate as current; the other renewal is recorded
  // between this one's check and its record.
  CertificateRecord rival;
  rival.serial = "7fff01";
  rival.imsi = kImsi;
  rival.device_id = kImsi;
  rival.issued_at = clock_.Now();
  rival.not_before = rival.issued_at;
  rival.not_after = rival.issued_at + absl::Hours(1);
  rival.der = {0x30, 0x00};
  rival.renewed_from = original.serial;

  class Racer : public IssuanceHooks {
   public:
    Racer(Store& store, CertificateRecord rival)
        : store_(store), rival_(std::move(rival)) {}
    absl::StatusOr<std::string> BeforeSigning(const IssuanceContext&) override {
      EXPECT_TRUE(store_
                      .RecordIssuance(rival_, {rival_.issued_at, rival_.imsi,
                                               "renew", rival_.imsi, "ok", ""})
                      .ok());
      return "";
    }
    absl::StatusOr<std::vector<RegistrationIntent>> Intents(
        const IssuanceContext&, const CertificateRecord&,
        const std::string&) override {
      return std::vector<RegistrationIntent>{};
    }
    absl::Status AfterRecorded(const IssuanceContext&,
                               const CertificateRecord&) override {
      return absl::OkStatus();
    }
    std::string RegistryInfo(const CertificateRecord&) override { return ""; }

   private:
    Store& store_;
    CertificateRecord rival_;
  } racer(*store_, rival);
  BootstrapOptions options;
  options.names = {"broker.test"};
  options.policies = policies_.get();
  options.metrics = metrics_.get();
  options.issuance = &racer;
  bootstrapper_ = std::make_unique<Bootstrapper>(
      options, *store_, *ca_, random_.Generate(32), clock_, random_);
  auto lost = Renew(original);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(lost.status().message(), "superseded");
  EXPECT_EQ(store_->RenewalsOf(original.serial)->size(), 1u);  // the rival
  EXPECT_EQ(store_->AuditOf(kImsi)->back().reason, "superseded");
}

TEST_F(RenewalLineageTest, SupersededIsRevokedWhenItsGroupsGraceHasPassed) {
  Held a = Bootstrap(kImsi);       // group default: 10m
  Held b = Bootstrap(kOtherImsi);  // group fast: 2s
  const absl::Time t0 = clock_.Now();
  ASSERT_TRUE(Renew(a).ok());
  ASSERT_TRUE(Renew(b).ok());
  ASSERT_TRUE(crl_->Regenerate().ok());
  EXPECT_TRUE(CrlEntries(crl_->Der()).empty());

  clock_.Set(t0 + absl::Seconds(1));
  EXPECT_EQ(*revoker_->RunOnce(), 0);
  clock_.Set(t0 + absl::Seconds(2));
  EXPECT_EQ(*revoker_->RunOnce(), 1);
  auto entries = CrlEntries(crl_->Der());
  EXPECT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[CrlSerial(b.serial)], 4);  // superseded
  auto cert = store_->GetCertificate(b.serial);
  EXPECT_EQ(cert->status, "revoked");
  EXPECT_EQ(cert->revocation_reason, "superseded");
  ASSERT_EQ(notified_.size(), 1u);
  EXPECT_EQ(notified_[0].imsi, kOtherImsi);
  EXPECT_EQ(notified_[0].reason, "superseded");
  EXPECT_EQ(notified_[0].serials, std::vector<std::string>{b.serial});
  auto audit = store_->AuditOf(kOtherImsi);
  EXPECT_EQ(audit->back().actor, "broker");
  EXPECT_EQ(audit->back().action, "revoke");
  EXPECT_EQ(audit->back().reason, "reason=superseded serial=" + b.serial);

  clock_.Set(t0 + absl::Minutes(10) - absl::Seconds(1));
  EXPECT_EQ(*revoker_->RunOnce(), 0);
  EXPECT_EQ(store_->GetCertificate(a.serial)->status, "valid");
  clock_.Set(t0 + absl::Minutes(10));
  EXPECT_EQ(*revoker_->RunOnce(), 1);
  EXPECT_EQ(store_->GetCertificate(a.serial)->revocation_reason, "superseded");
  EXPECT_EQ(CrlEntries(crl_->Der())[CrlSerial(a.serial)], 4);
  EXPECT_EQ(*revoker_->RunOnce(), 0);  // nothing left
  // Revoked, it is refused as revoked.
  EXPECT_TRUE(absl::StrContains(Renew(a).status().message(),
                                "was revoked (superseded)"));
}

}  // namespace
}  // namespace simprov
