// Conformance: certificates, revocation, CRL numbers, device replacement
// and the subscriber status transitions.
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;
using Strings = std::vector<std::string>;

TEST_P(StoreConformanceTest, RecordIssuanceBindsDeviceAndAppendsAudit) {
  Import(1, 1);
  const absl::Time t0 = kT0;
  ASSERT_TRUE(store_
                  ->RecordIssuance(Cert("0a01", Imsi(1), "dev-1", t0),
                                   Event(Imsi(1), "serial=0a01", t0))
                  .ok());
  auto r = store_->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->device_id, "dev-1");
  EXPECT_EQ(r->last_seen, t0);
  auto m = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->device_id, "dev-1");

  // The same device renews.
  const absl::Time t1 = t0 + absl::Hours(1);
  ASSERT_TRUE(store_
                  ->RecordIssuance(Cert("0a02", Imsi(1), "dev-1", t1),
                                   Event(Imsi(1), "serial=0a02", t1))
                  .ok());
  EXPECT_EQ(Subscriber(Imsi(1)).last_seen, t1);

  auto certs = store_->CertificatesOf(Imsi(1));
  ASSERT_TRUE(certs.ok());
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ((*certs)[0].serial, "0a02");  // newest first
  EXPECT_EQ((*certs)[1].serial, "0a01");
  EXPECT_EQ((*certs)[1].imsi, Imsi(1));
  EXPECT_EQ((*certs)[1].device_id, "dev-1");
  EXPECT_EQ((*certs)[1].not_before, t0);
  EXPECT_EQ((*certs)[1].not_after, t0 + absl::Hours(24 * 30));
  EXPECT_EQ((*certs)[1].issued_at, t0);
  EXPECT_EQ((*certs)[1].status, "valid");
  EXPECT_EQ((*certs)[1].der, Cert("0a01", Imsi(1), "dev-1", t0).der);
  EXPECT_EQ((*certs)[1].revocation_reason, "");
  EXPECT_EQ((*certs)[1].revoked_at, absl::UnixEpoch());

  auto audit = store_->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].reason, "serial=0a01");  // in order of appending
  EXPECT_EQ((*audit)[0].action, "bootstrap");
  EXPECT_EQ((*audit)[0].actor, Imsi(1));
  EXPECT_EQ((*audit)[0].target, Imsi(1));
  EXPECT_EQ((*audit)[0].result, "ok");
  EXPECT_EQ((*audit)[0].at, t0);
  EXPECT_EQ((*audit)[1].reason, "serial=0a02");
  EXPECT_LT((*audit)[0].id, (*audit)[1].id);
}

TEST_P(StoreConformanceTest, GetCertificateBySerial) {
  Import(1, 1);
  Issue("0a7f", Imsi(1), "dev-1");
  auto c = store_->GetCertificate("0a7f");
  ASSERT_TRUE(c.ok()) << c.status();
  const CertificateRecord want = Cert("0a7f", Imsi(1), "dev-1", kT0);
  EXPECT_EQ(c->serial, "0a7f");
  EXPECT_EQ(c->imsi, Imsi(1));
  EXPECT_EQ(c->device_id, "dev-1");
  EXPECT_EQ(c->not_before, want.not_before);
  EXPECT_EQ(c->not_after, want.not_after);
  EXPECT_EQ(c->der, want.der);
  EXPECT_EQ(c->status, "valid");
  EXPECT_EQ(c->issued_at, kT0);
  EXPECT_EQ(store_->GetCertificate("0a80").status().code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(store_->CertificatesOf(Imsi(2))->empty());
}

TEST_P(StoreConformanceTest, RecordIssuanceForOtherDeviceIsRefusedAtomically) {
  Import(1, 1);
  const absl::Time t0 = kT0;
  ASSERT_TRUE(store_
                  ->RecordIssuance(Cert("01", Imsi(1), "dev-1", t0),
                                   Event(Imsi(1), "first", t0))
                  .ok());
  absl::Status s = store_->RecordIssuance(Cert("02", Imsi(1), "dev-2", t0),
                                          Event(Imsi(1), "second", t0));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(store_->GetSubscriber(Imsi(1))->device_id, "dev-1");
  EXPECT_EQ(store_->CertificatesOf(Imsi(1))->size(), 1u);
  EXPECT_EQ(store_->AuditOf(Imsi(1))->size(), 1u);
  EXPECT_EQ(store_->GetCertificate("02").status().code(),
            StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, RecordIssuanceForUnknownImsiIsFailedPrecondition) {
  Import(1, 1);
  const absl::Time t0 = kT0;
  absl::Status s = store_->RecordIssuance(Cert("03", Imsi(2), "dev", t0),
                                          Event(Imsi(2), "x", t0));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(store_->CertificatesOf(Imsi(2))->empty());
  EXPECT_TRUE(store_->AuditOf(Imsi(2))->empty());
  // Nothing at all was written.
  EXPECT_EQ(store_->GetCertificate("03").status().code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(Audit(AuditQuery{}).empty());
}

TEST_P(StoreConformanceTest, InactiveSubscriberGetsNoSqnAndNoCertificate) {
  Import(1, 1);
  ASSERT_TRUE(store_->AdvanceSqn(Imsi(1)).ok());
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(1), {kStatusActive},
                                        kStatusSuspended, "",
                                        AdminEvent("suspend", Imsi(1), kT0))
                  .ok());
  auto m = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->status, "suspended");
  EXPECT_EQ(m->sqn, 0u);
  EXPECT_EQ(store_->GetSubscriber(Imsi(1))->sqn.seq_he, 1u);  // not advanced
  EXPECT_EQ(store_
                ->RecordIssuance(Cert("04", Imsi(1), "dev", kT0),
                                 Event(Imsi(1), "x", kT0))
                .code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetSubscriber(Imsi(1))->device_id, "");
}

TEST_P(StoreConformanceTest, SubscriberStatusTransitions) {
  Import(1, 1);
  const absl::Time t1 = kT0 + absl::Minutes(5);
  auto set = [&](std::vector<std::string> from, const std::string& to) {
    return store_->SetSubscriberStatus(Imsi(1), from, to, "",
                                       AdminEvent(to, Imsi(1), t1));
  };
  ASSERT_TRUE(set({kStatusActive}, kStatusSuspended).ok());
  EXPECT_EQ(Subscriber(Imsi(1)).status, kStatusSuspended);
  // Not from the status it is in: refused, naming the current status.
  absl::Status refused = set({kStatusActive}, kStatusSuspended);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.message(), "subscriber " + Imsi(1) + " is suspended");
  ASSERT_TRUE(set({kStatusActive, kStatusSuspended}, kStatusActive).ok());
  EXPECT_EQ(Subscriber(Imsi(1)).status, kStatusActive);
  ASSERT_TRUE(set({kStatusActive, kStatusSuspended}, kStatusTerminated).ok());
  EXPECT_EQ(Subscriber(Imsi(1)).status, kStatusTerminated);
  EXPECT_EQ(set({kStatusActive, kStatusSuspended}, kStatusActive).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      store_
          ->SetSubscriberStatus(Imsi(9), {kStatusActive}, kStatusSuspended, "",
                                AdminEvent("suspend", Imsi(9), t1))
          .code(),
      StatusCode::kNotFound);
  // Only the transitions made were audited, in order.
  auto audit = store_->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> actions;
  for (const AuditEvent& e : *audit) actions.push_back(e.action);
  EXPECT_EQ(actions,
            (Strings{kStatusSuspended, kStatusActive, kStatusTerminated}));
  EXPECT_TRUE(store_->AuditOf(Imsi(9))->empty());
}

TEST_P(StoreConformanceTest, RevokeBySerialAndByImsi) {
  Import(1, 2);
  Issue("0c01", Imsi(1), "dev-1", kT0);
  Issue("0c02", Imsi(1), "dev-1", kT0 + absl::Hours(1));
  Issue("0c03", Imsi(1), "dev-1", kT0 + absl::Hours(2));
  Issue("0c04", Imsi(2), "dev-2", kT0);
  const absl::Time at = kT0 + absl::Hours(3);

  RevocationRequest one;
  one.serial = "0c02";
  one.reason = "keyCompromise";
  one.at = at;
  auto revoked =
      store_->RevokeCertificates(one, AdminEvent("revoke", "0c02", at));
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  ASSERT_EQ(revoked->size(), 1u);
  EXPECT_EQ((*revoked)[0].serial, "0c02");
  EXPECT_EQ((*revoked)[0].status, "revoked");
  EXPECT_EQ((*revoked)[0].revocation_reason, "keyCompromise");
  EXPECT_EQ((*revoked)[0].revoked_at, at);
  auto c = store_->GetCertificate("0c02");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status, "revoked");
  EXPECT_EQ(c->revocation_reason, "keyCompromise");
  EXPECT_EQ(c->revoked_at, at);
  EXPECT_EQ(store_->GetCertificate("0c01")->status, "valid");

  // By IMSI: the subscriber's other valid ones; the revoked one stays as it
  // was.
  RevocationRequest all;
  all.imsi = Imsi(1);
  all.reason = "cessationOfOperation";
  all.at = at + absl::Minutes(1);
  revoked = store_->RevokeCertificates(all, AdminEvent("revoke", Imsi(1), at));
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(Serials(*revoked), (Strings{"0c01", "0c03"}));
  EXPECT_EQ(store_->GetCertificate("0c02")->revocation_reason, "keyCompromise");
  EXPECT_EQ(store_->GetCertificate("0c03")->revocation_reason,
            "cessationOfOperation");
  EXPECT_EQ(store_->GetCertificate("0c04")->status, "valid");

  // Nothing left to revoke: an empty answer, still audited.
  revoked = store_->RevokeCertificates(all, AdminEvent("revoke", Imsi(1), at));
  ASSERT_TRUE(revoked.ok());
  EXPECT_TRUE(revoked->empty());
  auto audit = Audit(AuditQuery{.imsi = Imsi(1)});
  std::vector<std::string> reasons;
  for (const AuditEvent& e : audit) {
    if (e.action == "revoke") reasons.push_back(e.reason);
  }
  EXPECT_EQ(reasons,
            (Strings{"serial=0c01 serial=0c03", "no valid certificate"}));
  auto by_serial = Audit(AuditQuery{.imsi = "0c02"});
  ASSERT_EQ(by_serial.size(), 1u);
  EXPECT_EQ(by_serial[0].reason, "serial=0c02");

  RevocationRequest unknown;
  unknown.serial = "0cff";
  EXPECT_EQ(store_->RevokeCertificates(unknown, AdminEvent("revoke", "", at))
                .status()
                .code(),
            StatusCode::kNotFound);
  unknown.serial.clear();
  unknown.imsi = Imsi(9);
  EXPECT_EQ(store_->RevokeCertificates(unknown, AdminEvent("revoke", "", at))
                .status()
                .code(),
            StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, RevokedCertificatesListsUnexpiredRevocations) {
  Import(1, 1);
  Issue("0d03", Imsi(1), "dev-1", kT0);
  Issue("0d01", Imsi(1), "dev-1", kT0 + absl::Hours(24 * 10));
  Issue("0d02", Imsi(1), "dev-1", kT0 + absl::Hours(24 * 20));
  Issue("0d04", Imsi(1), "dev-1", kT0 + absl::Hours(24 * 20));
  for (const char* serial : {"0d03", "0d01", "0d02"}) {
    RevocationRequest r;
    r.serial = serial;
    r.reason = "superseded";
    r.at = kT0 + absl::Hours(24 * 21);
    ASSERT_TRUE(
        store_->RevokeCertificates(r, AdminEvent("revoke", serial, r.at)).ok());
  }
  // In serial order; 0d04 is valid.
  auto crl = store_->RevokedCertificates(kT0 + absl::Hours(24 * 21));
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_EQ(Serials(*crl), (Strings{"0d01", "0d02", "0d03"}));
  EXPECT_EQ((*crl)[0].revocation_reason, "superseded");
  EXPECT_EQ((*crl)[0].revoked_at, kT0 + absl::Hours(24 * 21));
  // 0d03 expires at kT0 + 30 days: from then on it is off the list.
  crl = store_->RevokedCertificates(kT0 + absl::Hours(24 * 30));
  ASSERT_TRUE(crl.ok());
  EXPECT_EQ(Serials(*crl), (Strings{"0d01", "0d02"}));
  crl = store_->RevokedCertificates(kT0 + absl::Hours(24 * 50));
  ASSERT_TRUE(crl.ok());
  EXPECT_TRUE(crl->empty());
}

TEST_P(StoreConformanceTest, NextCrlNumberCountsFromOneDurably) {
  EXPECT_EQ(*store_->NextCrlNumber(), 1u);
  EXPECT_EQ(*store_->NextCrlNumber(), 2u);
  EXPECT_EQ(*store_->NextCrlNumber(), 3u);
  Reopen();
  EXPECT_EQ(*store_->NextCrlNumber(), 4u);
}

TEST_P(StoreConformanceTest, ReplaceDeviceMovesIdentityToTheNewSim) {
  Import(1, 3);
  ASSERT_TRUE(store_
                  ->PutGroups({{"fleet-a", "{}", kT0}},
                              AdminEvent("group-apply", "fleet-a", kT0))
                  .ok());
  ASSERT_TRUE(store_
                  ->SetSubscriberGroup(Imsi(1), "fleet-a",
                                       AdminEvent("set-group", Imsi(1), kT0))
                  .ok());
  Issue("0e01", Imsi(1), "dev-1", kT0);
  Issue("0e02", Imsi(1), "dev-1", kT0 + absl::Hours(1));
  const absl::Time at = kT0 + absl::Hours(2);
  AuditEvent event = AdminEvent("replace", Imsi(1), at);
  event.reason = "broken";
  auto revoked = store_->ReplaceDevice(Imsi(1), Imsi(2), at, event);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(Serials(*revoked), (Strings{"0e01", "0e02"}));
  for (const CertificateRecord& c : *revoked) {
    EXPECT_EQ(c.status, "revoked");
    EXPECT_EQ(c.revocation_reason, "superseded");
    EXPECT_EQ(c.revoked_at, at);
    EXPECT_EQ(store_->GetCertificate(c.serial)->status, "revoked");
  }
  SubscriberRecord old_sim = Subscriber(Imsi(1));
  EXPECT_EQ(old_sim.status, kStatusReplaced);
  EXPECT_EQ(old_sim.device_id, "");
  EXPECT_EQ(old_sim.replaced_by, Imsi(2));
  SubscriberRecord new_sim = Subscriber(Imsi(2));
  EXPECT_EQ(new_sim.status, kStatusActive);
  EXPECT_EQ(new_sim.device_id, "dev-1");
  EXPECT_EQ(new_sim.group, "fleet-a");
  EXPECT_EQ(store_->GetSubscriberByDeviceId("dev-1")->imsi, Imsi(2));
  auto audit = Audit(AuditQuery{.imsi = Imsi(1)});
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit.back().action, "replace");
  EXPECT_EQ(audit.back().reason, "broken device_id=dev-1 new_imsi=" + Imsi(2) +
                                     " revoked=0e01 revoked=0e02");

  // The new SIM is provisioned now; the old one is replaced.
  EXPECT_EQ(store_->ReplaceDevice(Imsi(3), Imsi(2), at, event).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ReplaceDevice(Imsi(1), Imsi(3), at, event).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ReplaceDevice(Imsi(9), Imsi(3), at, event).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->ReplaceDevice(Imsi(3), Imsi(9), at, event).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(Subscriber(Imsi(3)).status, kStatusActive);

  // Reactivating the replaced SIM gives it a device id and forgets the
  // replacement.
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(1), {kStatusReplaced},
                                        kStatusActive, "dev-1b",
                                        AdminEvent("resume", Imsi(1), at))
                  .ok());
  old_sim = Subscriber(Imsi(1));
  EXPECT_EQ(old_sim.status, kStatusActive);
  EXPECT_EQ(old_sim.device_id, "dev-1b");
  EXPECT_EQ(old_sim.replaced_by, "");
}

TEST_P(StoreConformanceTest, ReplaceNeverProvisionedSimUsesItsImsi) {
  Import(1, 2);
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(1), {kStatusActive},
                                        kStatusSuspended, "",
                                        AdminEvent("suspend", Imsi(1), kT0))
                  .ok());
  auto revoked = store_->ReplaceDevice(Imsi(1), Imsi(2), kT0,
                                       AdminEvent("replace", Imsi(1), kT0));
  ASSERT_TRUE(revoked.ok()) << revoked.status();  // suspended may be replaced
  EXPECT_TRUE(revoked->empty());
  EXPECT_EQ(Subscriber(Imsi(2)).device_id, Imsi(1));
  EXPECT_EQ(Subscriber(Imsi(1)).status, kStatusReplaced);
  auto audit = Audit(AuditQuery{.imsi = Imsi(1)});
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit.back().reason,
            "device_id=" + Imsi(1) + " new_imsi=" + Imsi(2));
}

}  // namespace
}  // namespace simprov
