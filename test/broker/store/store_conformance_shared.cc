// Conformance: shared broker state (challenge sessions, rate limits, outbox
// leases, named leases, admin-certificate revocations). What makes several
// brokers on one store safe: each operation is atomic, so concurrent
// callers (threads here, brokers in production) never both win.
#include <atomic>
#include <latch>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;

StoredSession Sess(int n, const std::string& imsi, absl::Time created,
                   int rand = 0) {
  StoredSession s;
  s.id = Bytes(16, 0);
  s.id[14] = static_cast<uint8_t>(n >> 8);
  s.id[15] = static_cast<uint8_t>(n);
  s.imsi = imsi;
  s.rand = Bytes(16, static_cast<uint8_t>(rand == 0 ? n : rand));
  s.autn = Bytes(16, 0xa0);
  s.xres_hash = Bytes(32, 0xb0);
  s.sealed_keys = Bytes(60, static_cast<uint8_t>(n));
  s.created = created;
  s.device_id = "dev-" + std::to_string(n);
  s.group = "g";
  return s;
}

Bytes SessId(int n) { return Sess(n, "", kT0).id; }

TEST_P(StoreConformanceTest, SessionIsTakenOnceWithEveryField) {
  StoredSession s = Sess(1, Imsi(1), kT0 + absl::Milliseconds(1234));
  s.decoy = true;
  s.decoy_reason = "unknown IMSI";
  ASSERT_TRUE(store_->PutSession(s, {}).ok());
  EXPECT_EQ(*store_->CountSessions(""), 1);
  EXPECT_EQ(*store_->CountSessions(Imsi(1)), 1);
  EXPECT_EQ(*store_->CountSessions(Imsi(2)), 0);
  // A duplicate id is refused and changes nothing.
  EXPECT_EQ(store_->PutSession(s, {}).code(), StatusCode::kAlreadyExists);
  Reopen();  // durable
  auto got = store_->TakeSession(s.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id, s.id);
  EXPECT_EQ(got->imsi, s.imsi);
  EXPECT_EQ(got->rand, s.rand);
  EXPECT_EQ(got->autn, s.autn);
  EXPECT_EQ(got->xres_hash, s.xres_hash);
  EXPECT_EQ(got->sealed_keys, s.sealed_keys);
  EXPECT_EQ(got->created, s.created);  // millisecond precision
  EXPECT_TRUE(got->decoy);
  EXPECT_EQ(got->decoy_reason, "unknown IMSI");
  EXPECT_EQ(got->device_id, "dev-1");
  EXPECT_EQ(got->group, "g");
  EXPECT_EQ(store_->TakeSession(s.id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->TakeSessionByRand(Imsi(1), s.rand).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(*store_->CountSessions(""), 0);
}

TEST_P(StoreConformanceTest, SessionTakenByRandOnlyForItsImsi) {
  ASSERT_TRUE(store_->PutSession(Sess(1, Imsi(1), kT0, 7), {}).ok());
  ASSERT_TRUE(store_->PutSession(Sess(2, Imsi(2), kT0, 7), {}).ok());
  EXPECT_EQ(store_->TakeSessionByRand(Imsi(3), Bytes(16, 7)).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->TakeSessionByRand(Imsi(1), Bytes(16, 8)).status().code(),
            StatusCode::kNotFound);
  auto got = store_->TakeSessionByRand(Imsi(1), Bytes(16, 7));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id, SessId(1));
  EXPECT_EQ(store_->TakeSession(SessId(1)).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->TakeSessionByRand(Imsi(2), Bytes(16, 7))->id, SessId(2));
}

TEST_P(StoreConformanceTest, SessionCapsDropTheOldest) {
  const SessionCaps caps{2, 4};
  ASSERT_TRUE(store_->PutSession(Sess(1, Imsi(1), kT0), caps).ok());
  ASSERT_TRUE(store_->PutSession(Sess(2, Imsi(1), kT0), caps).ok());
  ASSERT_TRUE(store_->PutSession(Sess(3, Imsi(1), kT0), caps).ok());
  // Per IMSI: the oldest of Imsi(1) made room.
  EXPECT_EQ(*store_->CountSessions(Imsi(1)), 2);
  EXPECT_EQ(store_->TakeSession(SessId(1)).status().code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(store_->PutSession(Sess(4, Imsi(2), kT0), caps).ok());
  ASSERT_TRUE(store_->PutSession(Sess(5, Imsi(3), kT0), caps).ok());
  EXPECT_EQ(*store_->CountSessions(""), 4);
  // In all: the oldest of anybody (session 2) made room.
  ASSERT_TRUE(store_->PutSession(Sess(6, Imsi(4), kT0), caps).ok());
  EXPECT_EQ(*store_->CountSessions(""), 4);
  EXPECT_EQ(store_->TakeSession(SessId(2)).status().code(),
            StatusCode::kNotFound);
  for (int n : {3, 4, 5, 6}) {
    EXPECT_TRUE(store_->TakeSession(SessId(n)).ok()) << n;
  }
  // Caps below one count as one.
  ASSERT_TRUE(store_->PutSession(Sess(7, Imsi(1), kT0), {0, 0}).ok());
  ASSERT_TRUE(store_->PutSession(Sess(8, Imsi(1), kT0), {0, 0}).ok());
  EXPECT_EQ(*store_->CountSessions(""), 1);
  EXPECT_TRUE(store_->TakeSession(SessId(8)).ok());
}

TEST_P(StoreConformanceTest, ExpireSessionsDropsOnlyOlderOnes) {
  ASSERT_TRUE(store_->PutSession(Sess(1, Imsi(1), kT0), {}).ok());
  ASSERT_TRUE(
      store_->PutSession(Sess(2, Imsi(2), kT0 + absl::Seconds(10)), {}).ok());
  EXPECT_EQ(*store_->ExpireSessions(kT0), 0);
  EXPECT_EQ(*store_->ExpireSessions(kT0 + absl::Seconds(10)), 1);
  EXPECT_EQ(*store_->CountSessions(""), 1);
  EXPECT_TRUE(store_->TakeSession(SessId(2)).ok());
}

// Many takers of one session: exactly one gets it (single use across
// brokers rests on this).
TEST_P(StoreConformanceTest, ConcurrentTakesOfOneSessionHaveOneWinner) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(store_->PutSession(Sess(round, Imsi(1), kT0, 9), {}).ok());
    std::atomic<int> winners{0};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        auto got = t % 2 ? store_->TakeSession(SessId(round))
                         : store_->TakeSessionByRand(Imsi(1), Bytes(16, 9));
        if (got.ok()) {
          winners.fetch_add(1);
        } else {
          EXPECT_EQ(got.status().code(), StatusCode::kNotFound);
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(winners.load(), 1) << "round " << round;
  }
}

TEST_P(StoreConformanceTest, RateTokensBurstThenRefill) {
  const absl::Duration refill = absl::Seconds(10);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(*store_->TakeRateToken("a", 3, refill, kT0)) << i;
  }
  EXPECT_FALSE(*store_->TakeRateToken("a", 3, refill, kT0));
  EXPECT_TRUE(*store_->TakeRateToken("b", 3, refill, kT0));  // independent
  // One token per period, to the millisecond; refusals spend nothing.
  const absl::Time almost = kT0 + refill - absl::Milliseconds(1);
  EXPECT_FALSE(*store_->TakeRateToken("a", 3, refill, almost));
  EXPECT_TRUE(*store_->TakeRateToken("a", 3, refill, kT0 + refill));
  EXPECT_FALSE(*store_->TakeRateToken("a", 3, refill, kT0 + refill));
  // Refilled at most to the burst.
  const absl::Time later = kT0 + absl::Hours(1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(*store_->TakeRateToken("a", 3, refill, later)) << i;
  }
  EXPECT_FALSE(*store_->TakeRateToken("a", 3, refill, later));
  // Idle (full) buckets are forgotten, busy ones kept.
  EXPECT_EQ(*store_->ForgetIdleRateLimits(later), 1);  // "b"
  EXPECT_FALSE(*store_->TakeRateToken("a", 3, refill, later));
  EXPECT_EQ(*store_->ForgetIdleRateLimits(later + absl::Seconds(30)), 1);
  EXPECT_TRUE(*store_->TakeRateToken("a", 3, refill, later));
}

TEST_P(StoreConformanceTest, ConcurrentRateTokensNeverExceedTheBurst) {
  constexpr int kThreads = 8;
  std::atomic<int> allowed{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 4; ++i) {
        auto ok = store_->TakeRateToken("x", 5, absl::Minutes(1), kT0);
        ASSERT_TRUE(ok.ok()) << ok.status();
        if (*ok) allowed.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 5);
}

TEST_P(StoreConformanceTest, ClaimedIntentsAreLeasedToOneHolder) {
  Import(1, 2);
  IssueWith("0a01", Imsi(1), {"mqtt"});
  IssueWith("0a02", Imsi(2), {"mqtt"}, kT0 + absl::Seconds(1));
  const absl::Time now = kT0 + absl::Seconds(5);
  const absl::Duration lease = absl::Seconds(60);
  auto a = store_->ClaimIntents(now, 10, "broker-a", lease);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].serial, "0a01");  // oldest due first
  EXPECT_EQ((*a)[1].serial, "0a02");
  // Leased: nobody else gets them, not even the holder again, until the
  // lease expires.
  EXPECT_TRUE(store_->ClaimIntents(now, 10, "broker-b", lease)->empty());
  EXPECT_TRUE(store_
                  ->ClaimIntents(now + lease - absl::Milliseconds(1), 10,
                                 "broker-b", lease)
                  ->empty());
  // DueIntents still lists them (it claims nothing).
  EXPECT_EQ(Due(now).size(), 2u);
  // Finishing one ends its lease; the holder "dies" with the other.
  ASSERT_TRUE(store_->FinishIntent((*a)[0].id, "done", "{}", now).ok());
  auto b = store_->ClaimIntents(now + lease, 10, "broker-b", lease);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].serial, "0a02");
  // A deferred entry is free again when due.
  ASSERT_TRUE(
      store_->DeferIntent((*b)[0].id, "refused", now + lease + absl::Seconds(2))
          .ok());
  EXPECT_TRUE(
      store_
          ->ClaimIntents(now + lease + absl::Seconds(1), 10, "broker-a", lease)
          ->empty());
  auto c = store_->ClaimIntents(now + lease + absl::Seconds(2), 10, "broker-a",
                                lease);
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].attempts, 1);
  // The limit holds; not yet due entries are not claimed.
  IssueWith("0a03", Imsi(1), {"mqtt", "aws"}, kT0,
            {absl::Hours(1), absl::ZeroDuration()});
  auto d = store_->ClaimIntents(now + lease + absl::Seconds(2), 10, "broker-b",
                                lease);
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ((*d)[0].registry, "aws");
  EXPECT_TRUE(store_->ClaimIntents(now, 0, "broker-b", lease)->empty());
}

TEST_P(StoreConformanceTest, ClaimSkipsRegistrationsOfRevokedCertificates) {
  Import(1, 1);
  IssueWith("0b01", Imsi(1), {"mqtt"});
  Revoke("0b01", kT0 + absl::Seconds(1));
  auto got =
      store_->ClaimIntents(kT0 + absl::Seconds(2), 10, "a", absl::Seconds(60));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->empty());
  ASSERT_EQ(IntentsOf("0b01").size(), 1u);
  EXPECT_EQ(IntentsOf("0b01")[0].state, "skipped");
}

TEST_P(StoreConformanceTest, ConcurrentClaimsHandEachIntentToOneHolder) {
  Import(1, 1);
  for (int i = 0; i < 40; ++i) {
    IssueWith(absl::StrCat("0c", i + 10), Imsi(1), {"mqtt"});
  }
  constexpr int kThreads = 4;
  std::vector<std::vector<int64_t>> got(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < 10; ++i) {
        auto c =
            store_->ClaimIntents(kT0 + absl::Seconds(1), 3,
                                 absl::StrCat("holder-", t), absl::Seconds(60));
        ASSERT_TRUE(c.ok()) << c.status();
        for (const auto& r : *c) got[t].push_back(r.id);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<int64_t> all;
  size_t total = 0;
  for (const auto& v : got) {
    total += v.size();
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(total, 40u);  // every entry once
  EXPECT_EQ(all.size(), 40u);
}

TEST_P(StoreConformanceTest, LeasesHaveOneHolderUntilExpiryOrRelease) {
  const absl::Duration ttl = absl::Seconds(30);
  EXPECT_EQ(store_->GetLease("crl").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(*store_->TryAcquireLease("crl", "a", ttl, kT0));
  EXPECT_FALSE(*store_->TryAcquireLease("crl", "b", ttl, kT0));
  EXPECT_TRUE(*store_->TryAcquireLease("other", "b", ttl, kT0));  // by name
  // The holder renews; the expiry moves.
  EXPECT_TRUE(
      *store_->TryAcquireLease("crl", "a", ttl, kT0 + absl::Seconds(20)));
  auto row = store_->GetLease("crl");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->holder, "a");
  EXPECT_EQ(row->expires, kT0 + absl::Seconds(50));
  EXPECT_FALSE(*store_->TryAcquireLease(
      "crl", "b", ttl, kT0 + absl::Seconds(50) - absl::Milliseconds(1)));
  // Expired: another takes it over.
  EXPECT_TRUE(
      *store_->TryAcquireLease("crl", "b", ttl, kT0 + absl::Seconds(50)));
  EXPECT_EQ(store_->GetLease("crl")->holder, "b");
  // Only the holder releases.
  ASSERT_TRUE(store_->ReleaseLease("crl", "a").ok());
  EXPECT_EQ(store_->GetLease("crl")->holder, "b");
  ASSERT_TRUE(store_->ReleaseLease("crl", "b").ok());
  EXPECT_EQ(store_->GetLease("crl").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(
      *store_->TryAcquireLease("crl", "a", ttl, kT0 + absl::Seconds(51)));
  Reopen();
  EXPECT_EQ(store_->GetLease("crl")->holder, "a");
}

TEST_P(StoreConformanceTest, ConcurrentAcquiresOfAFreeLeaseHaveOneWinner) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 10; ++round) {
    const std::string name = absl::StrCat("job-", round);
    std::atomic<int> winners{0};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        auto got = store_->TryAcquireLease(name, absl::StrCat("h", t),
                                           absl::Seconds(30), kT0);
        ASSERT_TRUE(got.ok()) << got.status();
        if (*got) winners.fetch_add(1);
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(winners.load(), 1) << name;
  }
}

TEST_P(StoreConformanceTest, AdminRevocationsAreAddedOnce) {
  EXPECT_TRUE(store_->ListAdminRevocations()->empty());
  EXPECT_TRUE(*store_->RevokeAdminCertificate("0b", kT0));
  EXPECT_TRUE(*store_->RevokeAdminCertificate("0a", kT0));
  EXPECT_FALSE(*store_->RevokeAdminCertificate("0b", kT0));
  EXPECT_TRUE(*store_->AdminCertificateRevoked("0a"));
  EXPECT_FALSE(*store_->AdminCertificateRevoked("0c"));
  Reopen();
  EXPECT_TRUE(*store_->AdminCertificateRevoked("0b"));
  EXPECT_EQ(*store_->ListAdminRevocations(),
            (std::vector<std::string>{"0a", "0b"}));
}

}  // namespace
}  // namespace simprov
