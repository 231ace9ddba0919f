// The fleet gauges render the store's counts, read at most once per
// refresh interval (a scrape never reads the store).
#include "broker/ops/fleet_gauges.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "test/broker/store/store_test_util.h"

namespace simprov {
namespace {

class FleetGaugesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteStore::Open(dir_.path() + "/simprov.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok());
    for (int n = 1; n <= 3; ++n) {
      ASSERT_TRUE((*import)->Add(MakeSubscriber(n, random_)).ok());
    }
    ASSERT_TRUE((*import)->Commit().ok());
  }
  void Issue(const std::string& serial, int n) {
    ASSERT_TRUE(store_
                    ->RecordIssuance(Cert(serial, Imsi(n), "dev", clock_.Now()),
                                     Event(Imsi(n), serial, clock_.Now()))
                    .ok());
  }

  TempDir dir_;
  FakeClock clock_{kT0};
  DeterministicRandom random_{7};
  std::unique_ptr<SqliteStore> store_;
  MetricsRegistry registry_;
};

TEST_F(FleetGaugesTest, NothingBeforeTheFirstCountThenCachedCounts) {
  FleetGauges gauges(registry_, *store_, clock_, absl::Seconds(60));
  std::string m = registry_.Render();
  EXPECT_FALSE(absl::StrContains(m, "simprov_certificates{")) << m;
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_fleet_stats_age_seconds -1\n"));

  Issue("01", 1);
  ASSERT_TRUE(gauges.MaybeRefresh().ok());
  m = registry_.Render();
  for (const char* line : {
           "simprov_certificates{status=\"valid\"} 1\n",
           "simprov_certificates{status=\"superseded\"} 0\n",
           "simprov_certificates{status=\"revoked\"} 0\n",
           "simprov_certificates{status=\"expired\"} 0\n",
           "simprov_certificates_expiring{within=\"1d\"} 0\n",
           "simprov_certificates_expiring{within=\"30d\"} 1\n",
           "simprov_subscribers{status=\"active\"} 3\n",
           "simprov_subscribers{status=\"suspended\"} 0\n",
           "simprov_subscribers{status=\"terminated\"} 0\n",
           "simprov_subscribers{status=\"replaced\"} 0\n",
           "simprov_fleet_stats_age_seconds 0\n",
       }) {
    EXPECT_TRUE(absl::StrContains(m, line)) << line << m;
  }

  // Within the interval the store is not read again: the new certificate
  // shows up only once 60 s have passed.
  Issue("02", 2);
  clock_.Advance(absl::Seconds(59));
  ASSERT_TRUE(gauges.MaybeRefresh().ok());
  m = registry_.Render();
  EXPECT_TRUE(
      absl::StrContains(m, "simprov_certificates{status=\"valid\"} 1\n"));
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_fleet_stats_age_seconds 59\n"));
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(gauges.MaybeRefresh().ok());
  m = registry_.Render();
  EXPECT_TRUE(
      absl::StrContains(m, "simprov_certificates{status=\"valid\"} 2\n"));
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_fleet_stats_age_seconds 0\n"));

  // 29 days on, both expire within a day.
  clock_.Advance(absl::Hours(24 * 29) + absl::Seconds(1));
  ASSERT_TRUE(gauges.MaybeRefresh().ok());
  m = registry_.Render();
  EXPECT_TRUE(
      absl::StrContains(m, "simprov_certificates_expiring{within=\"1d\"} 2\n"))
      << m;
}

}  // namespace
}  // namespace simprov
