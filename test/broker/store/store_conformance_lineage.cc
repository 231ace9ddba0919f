// Conformance: certificate lineage. A renewal records the certificate it
// was made from; a newer certificate supersedes the subscriber's others;
// revoking a serial revokes its renewals; superseded certificates are
// listed and revoked once their grace has passed.
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;
using Strings = std::vector<std::string>;

// A renewal of `from` by subscriber 1 (device "dev-1", as Issue binds it).
CertificateRecord Renewal(const std::string& serial, const std::string& from,
                          const std::string& imsi, absl::Time at) {
  CertificateRecord c = Cert(serial, imsi, "dev-1", at);
  c.renewed_from = from;
  return c;
}

TEST_P(StoreConformanceTest, NewCertificateSupersedesTheSubscribersOthers) {
  Import(1, 2);
  const absl::Time t1 = kT0 + absl::Hours(1);
  const absl::Time t2 = kT0 + absl::Hours(2);
  Issue("1a01", Imsi(1), "dev-1", kT0);
  Issue("1a02", Imsi(2), "dev-2", kT0);
  EXPECT_EQ(store_->GetCertificate("1a01")->superseded_at, absl::UnixEpoch());
  ASSERT_TRUE(store_
                  ->RecordIssuance(Renewal("1a03", "1a01", Imsi(1), t1),
                                   Event(Imsi(1), "serial=1a03", t1))
                  .ok());
  auto first = store_->GetCertificate("1a01");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->superseded_at, t1);
  EXPECT_EQ(first->status, "valid");  // revoked only after the grace
  EXPECT_EQ(first->renewed_from, "");
  auto renewed = store_->GetCertificate("1a03");
  ASSERT_TRUE(renewed.ok());
  EXPECT_EQ(renewed->renewed_from, "1a01");
  EXPECT_EQ(renewed->superseded_at, absl::UnixEpoch());
  // Another subscriber's certificate is not touched.
  EXPECT_EQ(store_->GetCertificate("1a02")->superseded_at, absl::UnixEpoch());

  // A bootstrap (no lineage) supersedes too; an already superseded one
  // keeps its time, a revoked one is left as it is.
  Issue("1a04", Imsi(1), "dev-1", t1 + absl::Minutes(1));
  Revoke("1a04", t1 + absl::Minutes(2));
  Issue("1a05", Imsi(1), "dev-1", t2);
  EXPECT_EQ(store_->GetCertificate("1a01")->superseded_at, t1);
  EXPECT_EQ(store_->GetCertificate("1a03")->superseded_at,
            t1 + absl::Minutes(1));
  EXPECT_EQ(store_->GetCertificate("1a04")->superseded_at, absl::UnixEpoch());
  EXPECT_EQ(store_->GetCertificate("1a05")->superseded_at, absl::UnixEpoch());
  auto certs = store_->CertificatesOf(Imsi(1));
  ASSERT_TRUE(certs.ok());
  ASSERT_EQ(certs->size(), 4u);
  EXPECT_EQ((*certs)[0].serial, "1a05");
  EXPECT_EQ((*certs)[2].renewed_from, "1a01");
  // Survives a restart.
  Reopen();
  EXPECT_EQ(store_->GetCertificate("1a01")->superseded_at, t1);
  EXPECT_EQ(store_->GetCertificate("1a03")->renewed_from, "1a01");
}

TEST_P(StoreConformanceTest, OnlyTheFirstRenewalOfACertificateIsRecorded) {
  Import(1, 1);
  Issue("1b01", Imsi(1), "dev-1", kT0);
  const absl::Time t1 = kT0 + absl::Minutes(1);
  ASSERT_TRUE(store_
                  ->RecordIssuance(Renewal("1b02", "1b01", Imsi(1), t1),
                                   Event(Imsi(1), "serial=1b02", t1))
                  .ok());
  // A second renewal of 1b01 (a copy of its key, or a lost race): Aborted,
  // nothing recorded, no audit.
  const size_t audited = Audit(AuditQuery{.imsi = Imsi(1)}).size();
  absl::Status s = store_->RecordIssuance(Renewal("1b03", "1b01", Imsi(1), t1),
                                          Event(Imsi(1), "serial=1b03", t1));
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s;
  EXPECT_EQ(store_->GetCertificate("1b03").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->GetCertificate("1b02")->superseded_at, absl::UnixEpoch());
  EXPECT_EQ(Audit(AuditQuery{.imsi = Imsi(1)}).size(), audited);
  // The same through the registry path, and from an unknown or a revoked
  // certificate.
  s = store_->RecordIssuanceWithIntents(
      Renewal("1b03", "1b01", Imsi(1), t1), Event(Imsi(1), "serial=1b03", t1),
      {Intent("mqtt", "register", "1b03", Imsi(1), t1)});
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s;
  EXPECT_TRUE(IntentsOf("1b03").empty());
  s = store_->RecordIssuance(Renewal("1b04", "1bff", Imsi(1), t1),
                             Event(Imsi(1), "serial=1b04", t1));
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s;
  Revoke("1b02", t1);
  s = store_->RecordIssuance(Renewal("1b05", "1b02", Imsi(1), t1),
                             Event(Imsi(1), "serial=1b05", t1));
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s;

  auto renewals = store_->RenewalsOf("1b01");
  ASSERT_TRUE(renewals.ok()) << renewals.status();
  EXPECT_EQ(Serials(*renewals), Strings{"1b02"});
  EXPECT_EQ((*renewals)[0].status, "revoked");  // any status
  EXPECT_TRUE(store_->RenewalsOf("1b02")->empty());
  EXPECT_TRUE(store_->RenewalsOf("nope")->empty());
}

TEST_P(StoreConformanceTest, RevokingASerialRevokesEveryRenewalFromIt) {
  Import(1, 2);
  // 1c01 bootstrapped; 1c02 renewed from it, 1c03 from 1c02, 1c04 from
  // 1c03 (a copy's lineage); 1c05 another subscriber's.
  Issue("1c01", Imsi(1), "dev-1", kT0);
  absl::Time at = kT0;
  std::string parent = "1c01";
  for (const char* serial : {"1c02", "1c03", "1c04"}) {
    at += absl::Minutes(1);
    ASSERT_TRUE(store_
                    ->RecordIssuanceWithIntents(
                        Renewal(serial, parent, Imsi(1), at),
                        Event(Imsi(1), serial, at),
                        {Intent("mqtt", "register", serial, Imsi(1), at)})
                    .ok());
    parent = serial;
  }
  Issue("1c05", Imsi(2), "dev-2", kT0);
  // Delivered registrations (what a removal undoes).
  for (const RegistrationIntent& r : Due(at, 10)) {
    ASSERT_TRUE(store_->FinishIntent(r.id, "done", "{}", at).ok());
  }
  // 1c04 was revoked on its own already: its reason stays.
  RevocationRequest leaf;
  leaf.serial = "1c04";
  leaf.reason = "affiliationChanged";
  leaf.at = at;
  auto revoked =
      store_->RevokeCertificates(leaf, AdminEvent("revoke", "1c04", at));
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(Serials(*revoked), Strings{"1c04"});  // renewals, not parents

  RevocationRequest root;
  root.serial = "1c01";
  root.reason = "keyCompromise";
  root.at = at + absl::Minutes(1);
  revoked = store_->RevokeCertificates(
      root, {root.at, "local", "revoke", "1c01", "ok", "reason=keyCompromise"});
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(Serials(*revoked), (Strings{"1c01", "1c02", "1c03"}));
  for (const CertificateRecord& c : *revoked) {
    EXPECT_EQ(c.status, "revoked");
    EXPECT_EQ(c.revocation_reason, "keyCompromise");
    EXPECT_EQ(c.revoked_at, root.at);
    auto stored = store_->GetCertificate(c.serial);
    EXPECT_EQ(stored->status, "revoked");
    EXPECT_EQ(stored->revocation_reason, "keyCompromise");
  }
  EXPECT_EQ(store_->GetCertificate("1c04")->revocation_reason,
            "affiliationChanged");
  EXPECT_EQ(store_->GetCertificate("1c05")->status, "valid");
  // On the CRL, tokens revoked, one audit record naming them all.
  EXPECT_EQ(Serials(*store_->RevokedCertificates(root.at)),
            (Strings{"1c01", "1c02", "1c03", "1c04"}));
  EXPECT_TRUE(*store_->TokenRevoked("jti-x", Imsi(1), root.at));
  EXPECT_FALSE(*store_->TokenRevoked("jti-x", Imsi(2), root.at));
  auto audit = Audit(AuditQuery{.imsi = "1c01"});
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].reason,
            "reason=keyCompromise serial=1c01 serial=1c02 serial=1c03");
  // The registries' removals follow, as for any revoked certificate.
  auto added = store_->EnqueueRemovals(root.at);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, 3);
  for (const char* serial : {"1c02", "1c03", "1c04"}) {
    auto intents = IntentsOf(serial);
    ASSERT_EQ(intents.size(), 2u) << serial;
    EXPECT_EQ(intents[1].kind, "remove") << serial;
    EXPECT_EQ(intents[1].state, "pending") << serial;
  }
}

TEST_P(StoreConformanceTest, SupersededCertificatesAreListedAndRevoked) {
  Import(1, 2);
  const absl::Time t1 = kT0 + absl::Minutes(1);
  const absl::Time t2 = kT0 + absl::Minutes(2);
  Issue("1d01", Imsi(1), "dev-1", kT0);
  Issue("1d02", Imsi(2), "dev-2", kT0);
  Issue("1d03", Imsi(2), "dev-2", t1);  // supersedes 1d02 at t1
  ASSERT_TRUE(store_
                  ->RecordIssuance(Renewal("1d04", "1d01", Imsi(1), t2),
                                   Event(Imsi(1), "serial=1d04", t2))
                  .ok());  // supersedes 1d01 at t2
  std::vector<CertificateRecord> listed;
  ASSERT_TRUE(store_
                  ->ListSuperseded([&](const CertificateRecord& c) {
                    listed.push_back(c);
                    return true;
                  })
                  .ok());
  EXPECT_EQ(Serials(listed), (Strings{"1d02", "1d01"}));  // oldest first
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].superseded_at, t1);
  EXPECT_EQ(listed[0].imsi, Imsi(2));
  // Stops when asked to.
  listed.clear();
  ASSERT_TRUE(store_
                  ->ListSuperseded([&](const CertificateRecord& c) {
                    listed.push_back(c);
                    return false;
                  })
                  .ok());
  EXPECT_EQ(listed.size(), 1u);

  // A superseded certificate's token subject says so.
  EXPECT_TRUE(Subject("1d01").superseded);
  EXPECT_EQ(Subject("1d01").cert_status, "valid");
  EXPECT_FALSE(Subject("1d04").superseded);

  // Only valid, superseded ones are revoked; others are skipped.
  const absl::Time at = kT0 + absl::Minutes(20);
  AuditEvent event{at, "broker", "revoke", "", "ok", "reason=superseded"};
  auto revoked = store_->RevokeSuperseded({"1d01", "1d04", "1dff"}, at, event);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(Serials(*revoked), Strings{"1d01"});
  auto c = store_->GetCertificate("1d01");
  EXPECT_EQ(c->status, "revoked");
  EXPECT_EQ(c->revocation_reason, "superseded");
  EXPECT_EQ(c->revoked_at, at);
  EXPECT_EQ(store_->GetCertificate("1d04")->status, "valid");
  EXPECT_EQ(Serials(*store_->RevokedCertificates(at)), Strings{"1d01"});
  // The device's tokens stay: its current certificate's are good.
  EXPECT_FALSE(*store_->TokenRevoked("jti-y", Imsi(1), at));
  auto audit = Audit(AuditQuery{.imsi = Imsi(1)});
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit.back().actor, "broker");
  EXPECT_EQ(audit.back().action, "revoke");
  EXPECT_EQ(audit.back().target, Imsi(1));
  EXPECT_EQ(audit.back().reason, "reason=superseded serial=1d01");
  // Revoked ones are listed no more, and not revoked twice.
  listed.clear();
  ASSERT_TRUE(store_
                  ->ListSuperseded([&](const CertificateRecord& c) {
                    listed.push_back(c);
                    return true;
                  })
                  .ok());
  EXPECT_EQ(Serials(listed), Strings{"1d02"});
  EXPECT_TRUE(store_->RevokeSuperseded({"1d01"}, at, event)->empty());
}

}  // namespace
}  // namespace simprov
