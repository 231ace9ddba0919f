#include "broker/enrol/session_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "broker/keys/kek_rotation.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/clock.h"
#include "test/broker/store/store_test_util.h"

namespace simprov {
namespace {

Bytes Id(int n) {
  Bytes id(16, 0);
  id[14] = static_cast<uint8_t>(n >> 8);
  id[15] = static_cast<uint8_t>(n);
  return id;
}

Bytes Rand(int n) { return Bytes(16, static_cast<uint8_t>(n)); }

Session MakeSession(int id, const std::string& imsi, absl::Time created,
                    int rand = 0) {
  Session s;
  s.id = Id(id);
  s.imsi = imsi;
  s.rand = Rand(rand == 0 ? id : rand);
  s.autn = Bytes(16, 0xa0);
  s.xres = Bytes(8, 0xb0);
  s.ck = Bytes(16, 0xc0);
  s.ik = Bytes(16, 0xd0);
  s.created = created;
  s.device_id = "dev-" + std::to_string(id);
  s.group = "g";
  return s;
}

// Both SessionTable implementations behind one face: each call must
// succeed (a store error fails the test), sessions come back as optionals.
enum class Kind { kMemory, kStore };

class Harness {
 public:
  Harness(Kind kind, size_t per_imsi, size_t total) {
    if (kind == Kind::kMemory) {
      table_ = std::make_unique<InMemorySessionTable>(per_imsi, total);
      return;
    }
    auto store = SqliteStore::Open(dir_.path() + "/store.db", clock_);
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    table_ = std::make_unique<StoreSessionTable>(*store_, kek_, random_,
                                                 per_imsi, total);
  }
  void Insert(Session s) {
    absl::Status st = table_->Insert(std::move(s));
    EXPECT_TRUE(st.ok()) << st;
  }
  std::optional<Session> Take(const Bytes& id) {
    return Unwrap(table_->Take(id));
  }
  std::optional<Session> TakeByRand(const std::string& imsi, const Bytes& r) {
    return Unwrap(table_->TakeByRand(imsi, r));
  }
  void ExpireBefore(absl::Time cutoff) {
    absl::Status st = table_->ExpireBefore(cutoff);
    EXPECT_TRUE(st.ok()) << st;
  }
  size_t size() {
    auto n = table_->Count();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : 0;
  }
  Store* store() { return store_.get(); }
  KekRing& kek() { return kek_; }

 private:
  static std::optional<Session> Unwrap(
      absl::StatusOr<std::optional<Session>> r) {
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return std::nullopt;
    return std::move(*r);
  }
  TempDir dir_;
  FakeClock clock_{kT0};
  DeterministicRandom random_{7};
  KekRing kek_{Bytes(32, 0x42)};
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<SessionTable> table_;
};

class SessionTableTest : public ::testing::TestWithParam<Kind> {
 protected:
  std::shared_ptr<Harness> Make(size_t per_imsi, size_t total) {
    return std::make_shared<Harness>(GetParam(), per_imsi, total);
  }
};

// Runs `fn` on its own thread and fails (instead of hanging the test run)
// if it does not return within a generous bound. The correct code returns in
// microseconds; this only turns a deadlock into a failure.
template <typename Fn>
bool FinishesPromptly(Fn fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  std::thread([fn, done]() mutable {
    fn();
    done->set_value();
  }).detach();
  return f.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
}

TEST_P(SessionTableTest, TakeReturnsTheSessionOnce) {
  auto table = Make(4, 100);
  table->Insert(MakeSession(1, "001010000000001", kT0));
  EXPECT_EQ(table->size(), 1u);
  std::optional<Session> s = table->Take(Id(1));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->id, Id(1));
  EXPECT_EQ(s->imsi, "001010000000001");
  EXPECT_EQ(s->rand, Rand(1));
  EXPECT_EQ(s->autn, Bytes(16, 0xa0));
  EXPECT_TRUE(ResMatches(*s, Bytes(8, 0xb0)));
  EXPECT_FALSE(ResMatches(*s, Bytes(8, 0xb1)));
  EXPECT_EQ(s->ck, Bytes(16, 0xc0));
  EXPECT_EQ(s->ik, Bytes(16, 0xd0));
  EXPECT_EQ(s->created, kT0);
  EXPECT_EQ(s->device_id, "dev-1");
  EXPECT_EQ(s->group, "g");
  EXPECT_EQ(table->size(), 0u);
  EXPECT_FALSE(table->Take(Id(1)).has_value());
  EXPECT_FALSE(table->TakeByRand("001010000000001", Rand(1)).has_value());
}

TEST_P(SessionTableTest, TakeUnknownIdReturnsNothing) {
  auto table = Make(4, 100);
  table->Insert(MakeSession(1, "001010000000001", kT0));
  EXPECT_FALSE(table->Take(Id(2)).has_value());
  EXPECT_FALSE(table->Take(Bytes{}).has_value());
  EXPECT_EQ(table->size(), 1u);
}

TEST_P(SessionTableTest, DecoyFieldsSurvive) {
  auto table = Make(4, 100);
  Session s = MakeSession(1, "001010000000009", kT0);
  s.decoy = true;
  s.decoy_reason = "unknown";
  table->Insert(s);
  auto got = table->Take(Id(1));
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->decoy);
  EXPECT_EQ(got->decoy_reason, "unknown");
}

TEST_P(SessionTableTest, ConcurrentTakeOnOneIdSucceedsExactlyOnce) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 300;
  auto table = Make(4, 1000);
  for (int round = 0; round < kRounds; ++round) {
    // One IMSI per round keeps this test independent of the per-IMSI cap.
    table->Insert(MakeSession(round, Imsi(round), kT0));
    std::atomic<int> winners{0};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        std::optional<Session> s = table->Take(Id(round));
        if (s.has_value()) {
          EXPECT_EQ(s->id, Id(round));
          EXPECT_EQ(s->ck, Bytes(16, 0xc0));
          winners.fetch_add(1);
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(winners.load(), 1) << "round " << round;
    ASSERT_EQ(table->size(), 0u) << "round " << round;
  }
}

TEST_P(SessionTableTest, ConcurrentTakeByRandSucceedsExactlyOnce) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 100;
  auto table = Make(4, 1000);
  for (int round = 0; round < kRounds; ++round) {
    table->Insert(MakeSession(round, Imsi(round), kT0, 7));
    std::atomic<int> winners{0};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        // Half the threads go by id, half by RAND.
        std::optional<Session> s =
            t % 2 ? table->Take(Id(round))
                  : table->TakeByRand(Imsi(round), Rand(7));
        if (s.has_value()) winners.fetch_add(1);
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(winners.load(), 1) << "round " << round;
  }
}

TEST_P(SessionTableTest, PerImsiCapReplacesTheOldest) {
  auto table = Make(3, 100);
  const std::string a = "001010000000001";
  const std::string b = "001010000000002";
  table->Insert(MakeSession(1, a, kT0));
  table->Insert(MakeSession(2, a, kT0 + absl::Seconds(1)));
  table->Insert(MakeSession(100, b, kT0 + absl::Seconds(1)));
  table->Insert(MakeSession(3, a, kT0 + absl::Seconds(2)));
  EXPECT_EQ(table->size(), 4u);
  table->Insert(MakeSession(4, a, kT0 + absl::Seconds(3)));
  EXPECT_EQ(table->size(), 4u);
  EXPECT_FALSE(table->Take(Id(1)).has_value());  // the oldest of a
  table->Insert(MakeSession(5, a, kT0 + absl::Seconds(4)));
  EXPECT_FALSE(table->Take(Id(2)).has_value());
  // The three newest of a, and b's session, are still open.
  EXPECT_TRUE(table->Take(Id(3)).has_value());
  EXPECT_TRUE(table->Take(Id(4)).has_value());
  EXPECT_TRUE(table->Take(Id(5)).has_value());
  EXPECT_TRUE(table->Take(Id(100)).has_value());
  EXPECT_EQ(table->size(), 0u);
}

TEST_P(SessionTableTest, PerImsiCapOfOne) {
  auto table = Make(1, 100);
  table->Insert(MakeSession(1, "001010000000001", kT0));
  table->Insert(MakeSession(2, "001010000000001", kT0));
  EXPECT_EQ(table->size(), 1u);
  EXPECT_FALSE(table->Take(Id(1)).has_value());
  EXPECT_TRUE(table->Take(Id(2)).has_value());
}

// A taken session no longer counts against its IMSI's cap: taking the newest
// of two and opening another must leave the older one open.
TEST_P(SessionTableTest, TakenSessionDoesNotCountAgainstTheCap) {
  auto table = Make(2, 100);
  const std::string a = "001010000000001";
  table->Insert(MakeSession(1, a, kT0));
  table->Insert(MakeSession(2, a, kT0));
  ASSERT_TRUE(table->Take(Id(2)).has_value());
  table->Insert(MakeSession(3, a, kT0));
  EXPECT_EQ(table->size(), 2u);
  EXPECT_TRUE(table->Take(Id(1)).has_value());
  EXPECT_TRUE(table->Take(Id(3)).has_value());
}

TEST_P(SessionTableTest, SessionTakenByRandDoesNotCountAgainstTheCap) {
  auto table = Make(2, 100);
  const std::string a = "001010000000001";
  table->Insert(MakeSession(1, a, kT0));
  table->Insert(MakeSession(2, a, kT0));
  ASSERT_TRUE(table->TakeByRand(a, Rand(2)).has_value());
  table->Insert(MakeSession(3, a, kT0));
  EXPECT_EQ(table->size(), 2u);
  EXPECT_TRUE(table->Take(Id(1)).has_value());
  EXPECT_TRUE(table->Take(Id(3)).has_value());
}

// Taking the oldest session of an IMSI at its cap and then opening a new one
// is the everyday path (a device enrols, then asks again); it must not hang.
TEST_P(SessionTableTest, InsertAfterTakingTheOldestDoesNotHang) {
  auto table = Make(2, 100);
  const std::string a = "001010000000001";
  table->Insert(MakeSession(1, a, kT0));
  table->Insert(MakeSession(2, a, kT0));
  ASSERT_TRUE(table->Take(Id(1)).has_value());
  // On a hang the helper thread keeps `table` alive; the test fails.
  ASSERT_TRUE(FinishesPromptly([table, a] {
    table->Insert(MakeSession(3, a, kT0));
  })) << "Insert did not return";
  EXPECT_EQ(table->size(), 2u);
  EXPECT_TRUE(table->Take(Id(2)).has_value());
  EXPECT_TRUE(table->Take(Id(3)).has_value());
}

TEST_P(SessionTableTest, TakeByRandFindsOnlyThatImsisSession) {
  auto table = Make(4, 100);
  const std::string a = "001010000000001";
  const std::string b = "001010000000002";
  table->Insert(MakeSession(1, a, kT0, /*rand=*/7));
  table->Insert(MakeSession(2, b, kT0, /*rand=*/7));
  table->Insert(MakeSession(3, a, kT0, /*rand=*/8));

  EXPECT_FALSE(table->TakeByRand("001010000000003", Rand(7)).has_value());
  EXPECT_FALSE(table->TakeByRand(a, Rand(9)).has_value());
  EXPECT_EQ(table->size(), 3u);

  std::optional<Session> s = table->TakeByRand(a, Rand(7));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->id, Id(1));
  EXPECT_EQ(s->imsi, a);
  EXPECT_EQ(s->rand, Rand(7));
  EXPECT_TRUE(ResMatches(*s, Bytes(8, 0xb0)));
  EXPECT_FALSE(ResMatches(*s, Bytes(8, 0xb1)));
  EXPECT_EQ(table->size(), 2u);

  // Consumed: neither by RAND nor by id again.
  EXPECT_FALSE(table->TakeByRand(a, Rand(7)).has_value());
  EXPECT_FALSE(table->Take(Id(1)).has_value());

  // b's session with the same RAND and a's other session are untouched.
  std::optional<Session> sb = table->TakeByRand(b, Rand(7));
  ASSERT_TRUE(sb.has_value());
  EXPECT_EQ(sb->id, Id(2));
  EXPECT_EQ(sb->imsi, b);
  std::optional<Session> s3 = table->Take(Id(3));
  ASSERT_TRUE(s3.has_value());
  EXPECT_EQ(s3->rand, Rand(8));
  EXPECT_EQ(table->size(), 0u);
}

TEST_P(SessionTableTest, TakeByRandNeedsTheWholeRand) {
  auto table = Make(4, 100);
  table->Insert(MakeSession(1, "001010000000001", kT0, 7));
  Bytes almost = Rand(7);
  almost[15] ^= 1;
  EXPECT_FALSE(table->TakeByRand("001010000000001", almost).has_value());
  Bytes shorter = Rand(7);
  shorter.pop_back();
  EXPECT_FALSE(table->TakeByRand("001010000000001", shorter).has_value());
  EXPECT_FALSE(table->TakeByRand("001010000000001", Bytes{}).has_value());
  EXPECT_TRUE(table->TakeByRand("001010000000001", Rand(7)).has_value());
}

TEST_P(SessionTableTest, ExpireBeforeDropsOnlyOldSessions) {
  auto table = Make(10, 100);
  table->Insert(MakeSession(1, "001010000000001", kT0));
  table->Insert(MakeSession(2, "001010000000002", kT0 + absl::Seconds(10)));
  table->Insert(MakeSession(3, "001010000000001", kT0 + absl::Seconds(20)));
  table->Insert(MakeSession(4, "001010000000003", kT0 + absl::Seconds(30)));

  table->ExpireBefore(kT0);  // nothing is older than kT0
  EXPECT_EQ(table->size(), 4u);

  table->ExpireBefore(kT0 + absl::Seconds(20));  // created == cutoff stays
  EXPECT_EQ(table->size(), 2u);
  EXPECT_FALSE(table->Take(Id(1)).has_value());
  EXPECT_FALSE(table->Take(Id(2)).has_value());
  EXPECT_FALSE(table->TakeByRand("001010000000002", Rand(2)).has_value());

  std::optional<Session> s3 = table->Take(Id(3));
  ASSERT_TRUE(s3.has_value());
  EXPECT_EQ(s3->created, kT0 + absl::Seconds(20));
  EXPECT_TRUE(table->Take(Id(4)).has_value());
}

TEST_P(SessionTableTest, ExpireBeforeSkipsAlreadyTakenSessions) {
  auto table = Make(10, 100);
  table->Insert(MakeSession(1, "001010000000001", kT0));
  table->Insert(MakeSession(2, "001010000000002", kT0 + absl::Seconds(10)));
  table->Insert(MakeSession(3, "001010000000003", kT0 + absl::Seconds(20)));
  ASSERT_TRUE(table->Take(Id(1)).has_value());
  table->ExpireBefore(kT0 + absl::Seconds(15));
  EXPECT_EQ(table->size(), 1u);
  EXPECT_TRUE(table->Take(Id(3)).has_value());
  table->ExpireBefore(kT0 + absl::Hours(1));
  EXPECT_EQ(table->size(), 0u);
}

TEST_P(SessionTableTest, ExpiredSessionsFreeTheirImsiSlots) {
  auto table = Make(2, 100);
  const std::string a = "001010000000001";
  table->Insert(MakeSession(1, a, kT0));
  table->Insert(MakeSession(2, a, kT0));
  table->ExpireBefore(kT0 + absl::Seconds(60));
  EXPECT_EQ(table->size(), 0u);
  table->Insert(MakeSession(3, a, kT0 + absl::Seconds(61)));
  table->Insert(MakeSession(4, a, kT0 + absl::Seconds(62)));
  EXPECT_EQ(table->size(), 2u);
  EXPECT_TRUE(table->Take(Id(3)).has_value());
  EXPECT_TRUE(table->Take(Id(4)).has_value());
}

TEST_P(SessionTableTest, GlobalCapDropsTheOldestOfAnybody) {
  auto table = Make(10, 3);
  table->Insert(MakeSession(1, "001010000000001", kT0));
  table->Insert(MakeSession(2, "001010000000002", kT0));
  table->Insert(MakeSession(3, "001010000000003", kT0));
  EXPECT_EQ(table->size(), 3u);
  table->Insert(MakeSession(4, "001010000000004", kT0));
  EXPECT_EQ(table->size(), 3u);
  EXPECT_FALSE(table->Take(Id(1)).has_value());
  table->Insert(MakeSession(5, "001010000000001", kT0));
  EXPECT_EQ(table->size(), 3u);
  EXPECT_FALSE(table->Take(Id(2)).has_value());
  EXPECT_TRUE(table->Take(Id(3)).has_value());
  EXPECT_TRUE(table->Take(Id(4)).has_value());
  EXPECT_TRUE(table->Take(Id(5)).has_value());
}

TEST_P(SessionTableTest, GlobalCapNeverExceeded) {
  auto table = Make(2, 50);
  for (int i = 0; i < 500; ++i) {
    table->Insert(MakeSession(i, Imsi(i % 37), kT0 + absl::Seconds(i)));
    ASSERT_LE(table->size(), 50u);
  }
  // The newest session is always present.
  EXPECT_TRUE(table->Take(Id(499)).has_value());
}

INSTANTIATE_TEST_SUITE_P(Both, SessionTableTest,
                         ::testing::Values(Kind::kMemory, Kind::kStore),
                         [](const ::testing::TestParamInfo<Kind>& i) {
                           return i.param == Kind::kMemory
                                      ? std::string("InMemory")
                                      : std::string("Store");
                         });

TEST(RateLimiterTest, BurstThenRefused) {
  FakeClock clock(kT0);
  RateLimiter limiter(3, absl::Seconds(10));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
}

TEST(RateLimiterTest, RefillsOneTokenPerPeriod) {
  FakeClock clock(kT0);
  RateLimiter limiter(3, absl::Seconds(10));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(limiter.Allow("a", clock.Now()));
  ASSERT_FALSE(limiter.Allow("a", clock.Now()));

  clock.Advance(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));  // not quite one token
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));  // exactly one period
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));

  clock.Advance(absl::Seconds(20));  // two tokens
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));

  // Partial refills add up across calls (refused ones included).
  clock.Advance(absl::Seconds(5));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
  clock.Advance(absl::Seconds(5));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
}

TEST(RateLimiterTest, RefillIsCappedAtBurst) {
  FakeClock clock(kT0);
  RateLimiter limiter(3, absl::Seconds(10));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(limiter.Allow("a", clock.Now()));
  clock.Advance(absl::Hours(24));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
}

TEST(RateLimiterTest, KeysAreIndependent) {
  FakeClock clock(kT0);
  RateLimiter limiter(2, absl::Minutes(1));
  EXPECT_TRUE(limiter.Allow("001010000000001", clock.Now()));
  EXPECT_TRUE(limiter.Allow("001010000000001", clock.Now()));
  EXPECT_FALSE(limiter.Allow("001010000000001", clock.Now()));
  EXPECT_TRUE(limiter.Allow("001010000000002", clock.Now()));
  EXPECT_TRUE(limiter.Allow("001010000000002", clock.Now()));
  EXPECT_FALSE(limiter.Allow("001010000000002", clock.Now()));
  clock.Advance(absl::Minutes(1));
  EXPECT_TRUE(limiter.Allow("001010000000001", clock.Now()));
  EXPECT_FALSE(limiter.Allow("001010000000001", clock.Now()));
  EXPECT_TRUE(limiter.Allow("001010000000003", clock.Now()));
}

TEST(RateLimiterTest, ClockGoingBackwardsGrantsNothing) {
  FakeClock clock(kT0);
  RateLimiter limiter(1, absl::Seconds(10));
  ASSERT_TRUE(limiter.Allow("a", clock.Now()));
  clock.Advance(-absl::Hours(1));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
}

TEST(RateLimiterTest, ForgetIdleKeepsBucketsThatAreNotFull) {
  FakeClock clock(kT0);
  RateLimiter limiter(2, absl::Seconds(10));
  ASSERT_TRUE(limiter.Allow("a", clock.Now()));
  ASSERT_TRUE(limiter.Allow("a", clock.Now()));
  ASSERT_FALSE(limiter.Allow("a", clock.Now()));
  clock.Advance(absl::Seconds(5));
  limiter.ForgetIdle(clock.Now());
  // Forgetting "a" would have handed it a fresh burst.
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
  clock.Advance(absl::Seconds(5));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
}

TEST(RateLimiterTest, ForgetIdleThenBurstAgain) {
  FakeClock clock(kT0);
  RateLimiter limiter(2, absl::Seconds(10));
  ASSERT_TRUE(limiter.Allow("a", clock.Now()));
  ASSERT_TRUE(limiter.Allow("a", clock.Now()));
  clock.Advance(absl::Seconds(20));
  limiter.ForgetIdle(clock.Now());
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_TRUE(limiter.Allow("a", clock.Now()));
  EXPECT_FALSE(limiter.Allow("a", clock.Now()));
}

}  // namespace
}  // namespace simprov
