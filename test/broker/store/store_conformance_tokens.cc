// Conformance: tokens (introspection apps, revocations) and the token
// subject read at every issuance.
#include "common/digest.h"
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;

TEST_P(StoreConformanceTest, TokenAppsAreCreatedOnce) {
  const Bytes hash(32, 0xab);
  ASSERT_TRUE(store_->CreateTokenApp("billing", hash, kT0).ok());
  auto got = store_->TokenAppKeyHash("billing");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, hash);
  absl::Status dup = store_->CreateTokenApp("billing", Bytes(32, 0xcd), kT0);
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup;
  EXPECT_EQ(*store_->TokenAppKeyHash("billing"), hash);  // unchanged
  EXPECT_EQ(store_->TokenAppKeyHash("metering").status().code(),
            StatusCode::kNotFound);
  Reopen();
  EXPECT_EQ(*store_->TokenAppKeyHash("billing"), hash);
}

TEST_P(StoreConformanceTest, RevokedTokenIdsUntilPruned) {
  Import(1, 1);
  EXPECT_FALSE(*store_->TokenRevoked("jti-1", Imsi(1), kT0));
  ASSERT_TRUE(store_->RevokeTokenId("jti-1", kT0 + absl::Seconds(10)).ok());
  ASSERT_TRUE(store_->RevokeTokenId("jti-1", kT0 + absl::Seconds(20)).ok());
  ASSERT_TRUE(store_->RevokeTokenId("jti-2", kT0 + absl::Seconds(30)).ok());
  // A revoked id is revoked whatever the subscriber and issue time.
  EXPECT_TRUE(*store_->TokenRevoked("jti-1", Imsi(1), kT0));
  EXPECT_TRUE(*store_->TokenRevoked("jti-1", Imsi(2), kT0 + absl::Hours(1)));
  EXPECT_TRUE(*store_->TokenRevoked("jti-2", Imsi(1), kT0));
  EXPECT_FALSE(*store_->TokenRevoked("jti-3", Imsi(1), kT0));

  // Pruning forgets revocations made before the time (revoking again kept
  // the first time), not those made at it or later.
  ASSERT_TRUE(store_->PruneTokenRevocations(kT0 + absl::Seconds(15)).ok());
  EXPECT_FALSE(*store_->TokenRevoked("jti-1", Imsi(1), kT0));
  EXPECT_TRUE(*store_->TokenRevoked("jti-2", Imsi(1), kT0));
  ASSERT_TRUE(store_->PruneTokenRevocations(kT0 + absl::Seconds(30)).ok());
  EXPECT_TRUE(*store_->TokenRevoked("jti-2", Imsi(1), kT0));
  ASSERT_TRUE(store_->PruneTokenRevocations(kT0 + absl::Seconds(31)).ok());
  EXPECT_FALSE(*store_->TokenRevoked("jti-2", Imsi(1), kT0));
}

TEST_P(StoreConformanceTest, DeviceTokenRevocationCoversTokensIssuedUpToIt) {
  Import(1, 2);
  const absl::Time at = kT0 + absl::Minutes(10);
  ASSERT_TRUE(store_->RevokeDeviceTokens(Imsi(1), at).ok());
  EXPECT_TRUE(*store_->TokenRevoked("a", Imsi(1), kT0));
  EXPECT_TRUE(*store_->TokenRevoked("b", Imsi(1), at));
  EXPECT_FALSE(*store_->TokenRevoked("c", Imsi(1), at + absl::Seconds(1)));
  EXPECT_FALSE(*store_->TokenRevoked("d", Imsi(2), kT0));  // another device
  // A later revocation moves the line.
  ASSERT_TRUE(store_->RevokeDeviceTokens(Imsi(1), at + absl::Minutes(1)).ok());
  EXPECT_TRUE(*store_->TokenRevoked("c", Imsi(1), at + absl::Seconds(1)));
  // Pruning is about token ids only.
  ASSERT_TRUE(store_->PruneTokenRevocations(at + absl::Hours(1)).ok());
  EXPECT_TRUE(*store_->TokenRevoked("c", Imsi(1), at + absl::Seconds(1)));
  EXPECT_EQ(store_->RevokeDeviceTokens(Imsi(9), at).code(),
            StatusCode::kNotFound);
}

// Tokens are bound to a certificate: revoking it revokes the device's tokens
// issued up to then.
TEST_P(StoreConformanceTest, CertificateRevocationRevokesDeviceTokens) {
  Import(1, 1);
  Issue("0f01", Imsi(1), "dev-1");
  const absl::Time at = kT0 + absl::Minutes(3);
  RevocationRequest r;
  r.serial = "0f01";
  r.reason = "keyCompromise";
  r.at = at;
  ASSERT_TRUE(
      store_->RevokeCertificates(r, AdminEvent("revoke", "0f01", at)).ok());
  EXPECT_TRUE(*store_->TokenRevoked("t1", Imsi(1), at - absl::Seconds(1)));
  EXPECT_TRUE(*store_->TokenRevoked("t2", Imsi(1), at));
  EXPECT_FALSE(*store_->TokenRevoked("t3", Imsi(1), at + absl::Seconds(1)));
}

// Whatever a backend remembers between writes (for the token issuance
// rate), every change that matters is seen by the very next read.
TEST_P(StoreConformanceTest, TokenSubjectFollowsEveryChangeAtTheNextRead) {
  Import(1, 2);
  const absl::Time t0 = kT0;
  Issue("0b01", Imsi(1), "dev-1");
  Store::TokenSubject first = Subject("0b01");
  EXPECT_EQ(first.cert_status, "valid");
  EXPECT_EQ(first.imsi, Imsi(1));
  EXPECT_EQ(first.device_id, "dev-1");
  EXPECT_EQ(first.group, kDefaultGroup);
  EXPECT_EQ(first.iccid, "894400000000001");
  EXPECT_EQ(first.imei, "");
  EXPECT_EQ(first.status, kStatusActive);
  EXPECT_EQ(Subject("0b01").cert_status, "valid");  // a second read

  // An audit append commits too: the subject reads the same.
  ASSERT_TRUE(store_->AppendAudit(Event(Imsi(1), "x", t0)).ok());
  ASSERT_TRUE(store_->FlushAudit().ok());
  EXPECT_EQ(Subject("0b01").group, kDefaultGroup);

  ASSERT_TRUE(
      store_->PutGroups({{"fleet-a", "{}", t0}}, Event(Imsi(1), "", t0)).ok());
  EXPECT_EQ(Subject("0b01").group, kDefaultGroup);
  ASSERT_TRUE(
      store_->SetSubscriberGroup(Imsi(1), "fleet-a", Event(Imsi(1), "", t0))
          .ok());
  EXPECT_EQ(Subject("0b01").group, "fleet-a");
  ASSERT_TRUE(store_->SetImei(Imsi(1), "490154203237518", false).ok());
  EXPECT_EQ(Subject("0b01").imei, "490154203237518");
  ASSERT_TRUE(store_->ClearImei(Imsi(1), Event(Imsi(1), "", t0)).ok());
  EXPECT_EQ(Subject("0b01").imei, "");
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(1), {kStatusActive},
                                        kStatusSuspended, "",
                                        Event(Imsi(1), "", t0))
                  .ok());
  EXPECT_EQ(Subject("0b01").status, kStatusSuspended);
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(1), {kStatusSuspended},
                                        kStatusActive, "",
                                        Event(Imsi(1), "", t0))
                  .ok());
  EXPECT_EQ(Subject("0b01").status, kStatusActive);
  RevocationRequest revoke;
  revoke.serial = "0b01";
  revoke.reason = "keyCompromise";
  revoke.at = t0;
  ASSERT_TRUE(store_->RevokeCertificates(revoke, Event(Imsi(1), "", t0)).ok());
  EXPECT_EQ(Subject("0b01").cert_status, "revoked");

  // Replaced: the old SIM has no device id; the certificate's is reported.
  ASSERT_TRUE(
      store_->ReplaceDevice(Imsi(1), Imsi(2), t0, Event(Imsi(1), "", t0)).ok());
  Store::TokenSubject replaced = Subject("0b01");
  EXPECT_EQ(replaced.status, kStatusReplaced);
  EXPECT_EQ(replaced.device_id, "dev-1");
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(1), {kStatusReplaced},
                                        kStatusTerminated, "",
                                        Event(Imsi(1), "", t0))
                  .ok());
  EXPECT_EQ(Subject("0b01").status, kStatusTerminated);
  EXPECT_EQ(store_->GetTokenSubject("0b02").status().code(),
            StatusCode::kNotFound);
}

// A token names its certificate by the SHA-256 of the DER (cnf x5t#S256):
// the certificate and its subscriber are found by that hash, their status
// read afresh, across a restart, for every certificate of the SIM.
TEST_P(StoreConformanceTest, TokenSubjectByCertificateHash) {
  Import(1, 2);
  CertificateRecord first = Cert("0d01", Imsi(1), "dev-1", kT0);
  first.der = {0x30, 0x03, 0x02, 0x01, 0x01};
  CertificateRecord second =
      Cert("0d02", Imsi(1), "dev-1", kT0 + absl::Minutes(1));
  second.der = {0x30, 0x03, 0x02, 0x01, 0x02};
  ASSERT_TRUE(
      store_->RecordIssuance(first, Event(Imsi(1), "serial=0d01", kT0)).ok());
  ASSERT_TRUE(
      store_->RecordIssuance(second, Event(Imsi(1), "serial=0d02", kT0)).ok());
  auto by_hash = [&](const Bytes& der) {
    auto t = store_->GetTokenSubjectByCertHash(Sha256(der));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : Store::TokenSubject{};
  };
  Store::TokenSubject t = by_hash(first.der);
  EXPECT_EQ(t.serial, "0d01");
  EXPECT_EQ(t.cert_status, "valid");
  EXPECT_EQ(t.imsi, Imsi(1));
  EXPECT_EQ(t.device_id, "dev-1");
  EXPECT_EQ(t.group, kDefaultGroup);
  EXPECT_EQ(t.iccid, "894400000000001");
  EXPECT_EQ(t.status, kStatusActive);
  EXPECT_EQ(by_hash(second.der).serial, "0d02");
  // Not the hash of any certificate of this store: NotFound.
  EXPECT_EQ(
      store_->GetTokenSubjectByCertHash(Sha256(Bytes{1, 2, 3})).status().code(),
      StatusCode::kNotFound);
  EXPECT_EQ(store_->GetTokenSubjectByCertHash(Bytes()).status().code(),
            StatusCode::kNotFound);

  // Revoking one certificate shows at the next read; the other is valid.
  Revoke("0d01", kT0 + absl::Minutes(2));
  EXPECT_EQ(by_hash(first.der).cert_status, "revoked");
  EXPECT_EQ(by_hash(second.der).cert_status, "valid");
  Reopen();
  EXPECT_EQ(by_hash(first.der).cert_status, "revoked");
  EXPECT_EQ(by_hash(second.der).serial, "0d02");

  // Replacing the SIM revokes the rest; the subject stays the old SIM
  // (not the new one, which took over the device id).
  const absl::Time at = kT0 + absl::Minutes(3);
  ASSERT_TRUE(store_
                  ->ReplaceDevice(Imsi(1), Imsi(2), at,
                                  AdminEvent("replace", Imsi(1), at))
                  .ok());
  t = by_hash(second.der);
  EXPECT_EQ(t.cert_status, "revoked");
  EXPECT_EQ(t.imsi, Imsi(1));
  EXPECT_EQ(t.status, kStatusReplaced);
  EXPECT_EQ(t.device_id, "dev-1");  // the certificate's
}

}  // namespace
}  // namespace simprov
