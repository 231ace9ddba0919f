// ClusterJobs (broker/store/cluster_lease.h) with a fake clock: a job
// scoped once per cluster runs on one broker of those sharing a store, the
// holder keeps it while it renews, another takes over after the lease
// expires or at once after ReleaseAll; per-broker jobs run everywhere.
#include "broker/store/cluster_lease.h"

#include <gtest/gtest.h>

#include "broker/store/sqlite/sqlite_store.h"
#include "test/broker/store/store_test_util.h"

namespace simprov {
namespace {

using Scope = ClusterJobs::Scope;

class ClusterJobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteStore::Open(dir_.path() + "/store.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  // Runs job `name` on `jobs`; returns whether it ran.
  bool Ran(ClusterJobs& jobs, const std::string& name,
           Scope scope = Scope::kOncePerCluster) {
    bool ran = false;
    auto r = jobs.Run(name, scope, [&] { ran = true; });
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r.value_or(false), ran);
    return ran;
  }

  TempDir dir_;
  FakeClock clock_{kT0};
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(ClusterJobsTest, OncePerClusterJobsRunOnTheLeaseHolderOnly) {
  ClusterJobs a(*store_, clock_, "a", absl::Seconds(30));
  ClusterJobs b(*store_, clock_, "b", absl::Seconds(30));
  EXPECT_TRUE(Ran(a, "supersede"));
  EXPECT_FALSE(Ran(b, "supersede"));
  EXPECT_TRUE(Ran(b, "other"));  // leases are per job
  EXPECT_FALSE(Ran(a, "other"));
  // The holder renews each time it runs: b never gets it while a runs
  // every 5 s.
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(absl::Seconds(5));
    EXPECT_TRUE(Ran(a, "supersede")) << i;
    EXPECT_FALSE(Ran(b, "supersede")) << i;
  }
  // Per-broker jobs run everywhere, without a lease.
  EXPECT_TRUE(Ran(a, "crl", Scope::kPerBroker));
  EXPECT_TRUE(Ran(b, "crl", Scope::kPerBroker));
  EXPECT_EQ(store_->GetLease("crl").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ClusterJobsTest, AnotherBrokerTakesOverAfterTheHolderDies) {
  ClusterJobs a(*store_, clock_, "a", absl::Seconds(30));
  ClusterJobs b(*store_, clock_, "b", absl::Seconds(30));
  EXPECT_TRUE(Ran(a, "supersede"));
  // a dies (runs no more): b takes over once the 30 s have passed.
  clock_.Advance(absl::Seconds(29));
  EXPECT_FALSE(Ran(b, "supersede"));
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(Ran(b, "supersede"));
  EXPECT_FALSE(Ran(a, "supersede"));  // a is back: b holds it now
}

TEST_F(ClusterJobsTest, ReleaseAllHandsOverAtOnce) {
  ClusterJobs a(*store_, clock_, "a", absl::Seconds(30));
  ClusterJobs b(*store_, clock_, "b", absl::Seconds(30));
  EXPECT_TRUE(Ran(a, "supersede"));
  EXPECT_TRUE(Ran(a, "sweep"));
  a.ReleaseAll();  // a shuts down
  EXPECT_TRUE(Ran(b, "supersede"));
  EXPECT_TRUE(Ran(b, "sweep"));
}

TEST(InstanceIdTest, NamesHostAndProcessAndIsStable) {
  const std::string& id = InstanceId();
  EXPECT_EQ(&id, &InstanceId());
  EXPECT_NE(id.find(absl::StrCat(":", getpid(), ":")), std::string::npos) << id;
  EXPECT_EQ(id.size() - id.rfind(':') - 1, 16u) << id;  // 8 random bytes
}

}  // namespace
}  // namespace simprov
