// Conformance: the registry outbox (deliveries of certificates to device
// registries, written with the certificate and retried until delivered).
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;
using Strings = std::vector<std::string>;

// Registry names of `intents`, in order.
Strings Registries(const std::vector<RegistrationIntent>& intents) {
  Strings out;
  for (const RegistrationIntent& r : intents) out.push_back(r.registry);
  return out;
}

TEST_P(StoreConformanceTest, RecordIssuanceWithIntentsQueuesDeliveries) {
  Import(1, 1);
  std::vector<RegistrationIntent> intents = {
      Intent("mqtt", "register", "1001", Imsi(1), kT0),
      Intent("aws", "register", "1001", Imsi(1), kT0),
      Intent("mqtt", "register", "1001", Imsi(1), kT0)};
  intents[2].payload = "{}";  // the same delivery again: left out
  ASSERT_TRUE(store_
                  ->RecordIssuanceWithIntents(
                      Cert("1001", Imsi(1), "dev-1", kT0),
                      Event(Imsi(1), "serial=1001", kT0), intents)
                  .ok());
  EXPECT_EQ(store_->GetCertificate("1001")->device_id, "dev-1");
  EXPECT_EQ(Subscriber(Imsi(1)).device_id, "dev-1");
  EXPECT_EQ(store_->AuditOf(Imsi(1))->size(), 1u);
  auto got = store_->IntentsOf("1001");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ(Registries(*got), (Strings{"mqtt", "aws"}));  // id order
  EXPECT_GT((*got)[0].id, 0);
  EXPECT_LT((*got)[0].id, (*got)[1].id);
  const RegistrationIntent& r = (*got)[0];
  EXPECT_EQ(r.kind, "register");
  EXPECT_EQ(r.serial, "1001");
  EXPECT_EQ(r.imsi, Imsi(1));
  EXPECT_EQ(r.device_id, "dev-" + Imsi(1));
  EXPECT_EQ(r.payload, R"({"thing":"1001"})");
  EXPECT_EQ(r.created_at, kT0);
  EXPECT_EQ(r.state, "pending");
  EXPECT_EQ(r.attempts, 0);
  EXPECT_EQ(r.next_attempt_at, kT0);
  EXPECT_EQ(r.last_error, "");
  EXPECT_EQ(r.result, "");
  EXPECT_EQ(r.done_at, absl::UnixEpoch());

  // A refused issuance queues nothing.
  absl::Status refused = store_->RecordIssuanceWithIntents(
      Cert("1002", Imsi(1), "dev-2", kT0), Event(Imsi(1), "serial=1002", kT0),
      {Intent("mqtt", "register", "1002", Imsi(1), kT0)});
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  EXPECT_TRUE(store_->IntentsOf("1002")->empty());
  EXPECT_EQ(store_->GetCertificate("1002").status().code(),
            StatusCode::kNotFound);

  // Without intents it is RecordIssuance.
  ASSERT_TRUE(
      store_
          ->RecordIssuanceWithIntents(Cert("1003", Imsi(1), "dev-1", kT0),
                                      Event(Imsi(1), "serial=1003", kT0), {})
          .ok());
  EXPECT_EQ(store_->GetCertificate("1003")->status, "valid");
  EXPECT_TRUE(store_->IntentsOf("1003")->empty());
  EXPECT_TRUE(store_->IntentsOf("1004")->empty());
}

TEST_P(StoreConformanceTest,
       DueIntentsOldestFirstAndSkipsRevokedRegistrations) {
  Import(1, 1);
  IssueWith("2001", Imsi(1), {"r1", "r2", "r3", "r4"}, kT0,
            {absl::Seconds(2), absl::Seconds(1), absl::Seconds(1),
             absl::Seconds(10)});
  EXPECT_TRUE(Due(kT0).empty());
  EXPECT_EQ(Registries(Due(kT0 + absl::Seconds(2))),
            (Strings{"r2", "r3", "r1"}));
  EXPECT_EQ(Registries(Due(kT0 + absl::Seconds(2), 2)), (Strings{"r2", "r3"}));
  EXPECT_EQ(Registries(Due(kT0 + absl::Hours(1))),
            (Strings{"r2", "r3", "r1", "r4"}));

  // Revoked before delivery: its registrations are skipped, not returned;
  // a removal is still delivered.
  IssueWith("2002", Imsi(1), {"r1"}, kT0);
  ASSERT_TRUE(store_
                  ->RecordIssuanceWithIntents(
                      Cert("2003", Imsi(1), "dev-" + Imsi(1), kT0),
                      Event(Imsi(1), "", kT0),
                      {Intent("r1", "remove", "2002", Imsi(1), kT0)})
                  .ok());
  const absl::Time later = kT0 + absl::Hours(2);
  Revoke("2002", later);
  auto due = Due(later);
  ASSERT_EQ(due.size(), 5u);
  EXPECT_EQ(due[0].serial, "2002");  // due since kT0
  EXPECT_EQ(due[0].kind, "remove");
  EXPECT_EQ(Registries(due), (Strings{"r1", "r2", "r3", "r1", "r4"}));
  auto of = IntentsOf("2002");
  ASSERT_EQ(of.size(), 2u);
  EXPECT_EQ(of[0].kind, "register");
  EXPECT_EQ(of[0].state, "skipped");
  EXPECT_EQ(of[0].last_error, "certificate revoked before registration");
  EXPECT_EQ(of[0].done_at, later);
  EXPECT_EQ(of[0].attempts, 0);
  EXPECT_EQ(of[1].state, "pending");
}

TEST_P(StoreConformanceTest, FinishAndDeferCountAttempts) {
  Import(1, 1);
  IssueWith("3001", Imsi(1), {"mqtt"});
  const int64_t id = IntentsOf("3001")[0].id;

  const absl::Time retry = kT0 + absl::Milliseconds(1500);
  ASSERT_TRUE(store_->DeferIntent(id, "HTTP 503: busy", retry).ok());
  RegistrationIntent r = IntentsOf("3001")[0];
  EXPECT_EQ(r.state, "pending");
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(r.last_error, "HTTP 503: busy");
  EXPECT_EQ(r.next_attempt_at, retry);  // millisecond precision
  EXPECT_TRUE(Due(retry - absl::Milliseconds(1)).empty());
  EXPECT_EQ(Due(retry).size(), 1u);

  ASSERT_TRUE(store_->DeferIntent(id, std::string(600, 'e'), retry).ok());
  r = IntentsOf("3001")[0];
  EXPECT_EQ(r.attempts, 2);
  EXPECT_EQ(r.last_error, std::string(512, 'e'));  // the first 512 bytes

  const absl::Time done = kT0 + absl::Seconds(7);
  ASSERT_TRUE(
      store_->FinishIntent(id, "done", R"({"certificateId":"c1"})", done).ok());
  r = IntentsOf("3001")[0];
  EXPECT_EQ(r.state, "done");
  EXPECT_EQ(r.result, R"({"certificateId":"c1"})");
  EXPECT_EQ(r.done_at, done);
  EXPECT_EQ(r.attempts, 3);
  EXPECT_TRUE(Due(kT0 + absl::Hours(1)).empty());
  EXPECT_TRUE(Pending(0, 0).empty());

  // Once finished, an entry stays as it is.
  ASSERT_TRUE(store_->FinishIntent(id, "cancelled", "", done).ok());
  ASSERT_TRUE(store_->DeferIntent(id, "late", retry).ok());
  r = IntentsOf("3001")[0];
  EXPECT_EQ(r.state, "done");
  EXPECT_EQ(r.result, R"({"certificateId":"c1"})");
  EXPECT_EQ(r.attempts, 3);
  EXPECT_EQ(r.last_error, std::string(512, 'e'));
}

TEST_P(StoreConformanceTest, ListPendingIntentsPagesById) {
  Import(1, 1);
  IssueWith("4001", Imsi(1), {"r1", "r2", "r3", "r4", "r5"});
  auto all = IntentsOf("4001");
  ASSERT_EQ(all.size(), 5u);
  ASSERT_TRUE(store_->FinishIntent(all[2].id, "cancelled", "", kT0).ok());
  EXPECT_EQ(Registries(Pending(0, 0)), (Strings{"r1", "r2", "r4", "r5"}));
  EXPECT_EQ(Registries(Pending(all[0].id, 2)), (Strings{"r2", "r4"}));
  EXPECT_EQ(Registries(Pending(all[3].id, 0)), (Strings{"r5"}));
  EXPECT_TRUE(Pending(all[4].id, 0).empty());
  Strings seen;
  ASSERT_TRUE(store_
                  ->ListPendingIntents(0, 0,
                                       [&](const RegistrationIntent& r) {
                                         seen.push_back(r.registry);
                                         return false;  // stop at the first
                                       })
                  .ok());
  EXPECT_EQ(seen, (Strings{"r1"}));
}

TEST_P(StoreConformanceTest, EnqueueRemovalsForRevokedOrTerminated) {
  Import(1, 2);
  IssueWith("5001", Imsi(1), {"mqtt", "aws"});
  IssueWith("5002", Imsi(2), {"mqtt"});
  const absl::Time t1 = kT0 + absl::Minutes(1);
  EXPECT_EQ(*store_->EnqueueRemovals(t1), 0);  // nothing delivered

  auto of = IntentsOf("5001");
  ASSERT_TRUE(store_->FinishIntent(of[0].id, "done", R"({"id":"m1"})", t1)
                  .ok());                      // mqtt delivered, aws not yet
  EXPECT_EQ(*store_->EnqueueRemovals(t1), 0);  // not revoked
  Revoke("5001", t1);
  const absl::Time t2 = kT0 + absl::Minutes(2);
  EXPECT_EQ(*store_->EnqueueRemovals(t2), 1);
  EXPECT_EQ(*store_->EnqueueRemovals(t2), 0);  // idempotent
  of = IntentsOf("5001");
  ASSERT_EQ(of.size(), 3u);
  const RegistrationIntent& removal = of[2];
  EXPECT_EQ(removal.registry, "mqtt");
  EXPECT_EQ(removal.kind, "remove");
  EXPECT_EQ(removal.imsi, Imsi(1));
  EXPECT_EQ(removal.device_id, "dev-" + Imsi(1));
  EXPECT_EQ(removal.payload, of[0].payload);
  EXPECT_EQ(removal.result, R"({"id":"m1"})");  // what undoing it needs
  EXPECT_EQ(removal.created_at, t2);
  EXPECT_EQ(removal.next_attempt_at, t2);
  EXPECT_EQ(removal.state, "pending");
  EXPECT_EQ(removal.attempts, 0);

  // A terminated subscriber's registrations are removed too.
  ASSERT_TRUE(
      store_->FinishIntent(IntentsOf("5002")[0].id, "done", "{}", t2).ok());
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(2), {kStatusActive},
                                        kStatusTerminated, "",
                                        AdminEvent("terminate", Imsi(2), t2))
                  .ok());
  EXPECT_EQ(*store_->EnqueueRemovals(t2), 1);
  of = IntentsOf("5002");
  ASSERT_EQ(of.size(), 2u);
  EXPECT_EQ(of[1].kind, "remove");
  EXPECT_EQ(of[1].registry, "mqtt");
  EXPECT_EQ(*store_->EnqueueRemovals(t2), 0);
}

TEST_P(StoreConformanceTest, RequeueRegistrationsAfterAPolicyChange) {
  Import(1, 1);
  IssueWith("7001", Imsi(1), {"mqtt"});  // to be delivered
  IssueWith("7002", Imsi(1), {"mqtt"});  // still pending
  IssueWith("7003", Imsi(1), {});        // never registered with mqtt
  IssueWith("7004", Imsi(1), {"mqtt"});  // revoked
  const absl::Time t1 = kT0 + absl::Minutes(1);
  ASSERT_TRUE(
      store_->FinishIntent(IntentsOf("7001")[0].id, "done", R"({"r":1})", t1)
          .ok());
  Revoke("7004", t1);
  auto requeue = [&](const std::string& serial, const std::string& payload,
                     absl::Time at) {
    RegistrationIntent r = Intent("mqtt", "register", serial, Imsi(1), at);
    r.payload = payload;
    return r;
  };
  const absl::Time t2 = kT0 + absl::Minutes(2);
  auto n = store_->RequeueRegistrations(
      {requeue("7001", R"({"topics":["new"]})", t2),
       requeue("7002", R"({"topics":["new"]})", t2),
       requeue("7003", R"({"topics":["new"]})", t2),
       requeue("7004", R"({"topics":["new"]})", t2)});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);  // not the revoked one

  // Delivered: the registration stays done (its removal still follows a
  // revocation) and an "update" entry carries the new payload.
  auto of = IntentsOf("7001");
  ASSERT_EQ(of.size(), 2u);
  EXPECT_EQ(of[0].kind, "register");
  EXPECT_EQ(of[0].state, "done");
  EXPECT_EQ(of[0].result, R"({"r":1})");
  EXPECT_EQ(of[1].kind, "update");
  EXPECT_EQ(of[1].state, "pending");
  EXPECT_EQ(of[1].payload, R"({"topics":["new"]})");
  EXPECT_EQ(of[1].imsi, Imsi(1));
  EXPECT_EQ(of[1].device_id, "dev-" + Imsi(1));
  EXPECT_EQ(of[1].next_attempt_at, t2);
  // Still pending: its own payload is replaced, nothing is added.
  of = IntentsOf("7002");
  ASSERT_EQ(of.size(), 1u);
  EXPECT_EQ(of[0].kind, "register");
  EXPECT_EQ(of[0].state, "pending");
  EXPECT_EQ(of[0].payload, R"({"topics":["new"]})");
  // No registration with that registry yet: one is queued.
  of = IntentsOf("7003");
  ASSERT_EQ(of.size(), 1u);
  EXPECT_EQ(of[0].kind, "register");
  EXPECT_EQ(of[0].state, "pending");
  EXPECT_EQ(of[0].payload, R"({"topics":["new"]})");
  // Revoked: left as it is.
  of = IntentsOf("7004");
  ASSERT_EQ(of.size(), 1u);
  EXPECT_EQ(of[0].payload, R"({"thing":"7004"})");

  // The update is delivered, then the policy changes again: the same entry
  // is made pending once more, without the earlier attempts and error.
  const int64_t update_id = IntentsOf("7001")[1].id;
  ASSERT_TRUE(store_->DeferIntent(update_id, "down", t2).ok());
  ASSERT_TRUE(store_->FinishIntent(update_id, "done", "{}", t2).ok());
  const absl::Time t3 = kT0 + absl::Minutes(3);
  n = store_->RequeueRegistrations(
      {requeue("7001", R"({"topics":["v3"]})", t3)});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  of = IntentsOf("7001");
  ASSERT_EQ(of.size(), 2u);
  EXPECT_EQ(of[1].id, update_id);
  EXPECT_EQ(of[1].state, "pending");
  EXPECT_EQ(of[1].attempts, 0);
  EXPECT_EQ(of[1].last_error, "");
  EXPECT_EQ(of[1].payload, R"({"topics":["v3"]})");
  EXPECT_EQ(of[1].next_attempt_at, t3);
  EXPECT_EQ(*store_->RequeueRegistrations({}), 0);
}

TEST_P(StoreConformanceTest, OutboxStatsCountPendingAndTheOldestWait) {
  auto stats = store_->GetOutboxStats(kT0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->depth, 0);
  EXPECT_EQ(stats->oldest_age, absl::ZeroDuration());

  Import(1, 1);
  IssueWith("6001", Imsi(1), {"r1"}, kT0);
  IssueWith("6002", Imsi(1), {"r1", "r2"}, kT0 + absl::Seconds(10));
  stats = store_->GetOutboxStats(kT0 + absl::Seconds(60));
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->depth, 3);
  EXPECT_EQ(stats->oldest_age, absl::Seconds(60));
  ASSERT_TRUE(
      store_->FinishIntent(IntentsOf("6001")[0].id, "done", "", kT0).ok());
  stats = store_->GetOutboxStats(kT0 + absl::Seconds(60));
  EXPECT_EQ(stats->depth, 2);
  EXPECT_EQ(stats->oldest_age, absl::Seconds(50));
  // A clock behind the oldest entry: no negative wait.
  stats = store_->GetOutboxStats(kT0);
  EXPECT_EQ(stats->depth, 2);
  EXPECT_EQ(stats->oldest_age, absl::ZeroDuration());
}

}  // namespace
}  // namespace simprov
