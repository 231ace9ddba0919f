// Conformance: fleet counts for the broker's gauges (store_stats.h).
#include <map>
#include <string>

#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

constexpr absl::Duration kDay = absl::Hours(24);

TEST_P(StoreConformanceTest, FleetStatsOfAnEmptyStoreAreZero) {
  auto stats = store_->GetFleetStats(kT0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->certificates_valid, 0);
  EXPECT_EQ(stats->certificates_revoked, 0);
  EXPECT_EQ(stats->certificates_superseded, 0);
  EXPECT_EQ(stats->certificates_expired, 0);
  EXPECT_EQ(stats->expiring_within_90d, 0);
  EXPECT_TRUE(stats->subscribers.empty());
}

// Every certificate counts under exactly one status; the expiry buckets
// count current valid certificates, cumulatively, notAfter inclusive.
// Cert() makes 30-day certificates.
TEST_P(StoreConformanceTest, FleetStatsCountCertificatesAndSubscribers) {
  Import(1, 6);
  Issue("a1", Imsi(1), "dev-1", kT0 - kDay * 29.5);  // expires in 12 h
  Issue("b1", Imsi(2), "dev-2", kT0 - kDay * 10);    // superseded by b2
  Issue("b2", Imsi(2), "dev-2", kT0 - kDay);         // expires in 29 d
  Issue("c0", Imsi(3), "dev-3", kT0 - kDay * 50);    // superseded, expired
  Issue("c1", Imsi(3), "dev-3", kT0 - kDay * 40);    // expired
  Issue("d1", Imsi(4), "dev-4", kT0 - kDay * 25);    // revoked below
  Issue("e1", Imsi(5), "dev-5", kT0);                // expires in exactly 30 d
  Issue("f1", Imsi(6), "dev-6", kT0 - kDay * 24);    // expires in 6 d
  Revoke("d1", kT0 - kDay);
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(Imsi(4), {kStatusActive},
                                        kStatusSuspended, "",
                                        AdminEvent("suspend", Imsi(4), kT0))
                  .ok());

  auto stats = store_->GetFleetStats(kT0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->certificates_valid, 4);  // a1 b2 e1 f1
  EXPECT_EQ(stats->certificates_revoked, 1);
  EXPECT_EQ(stats->certificates_superseded, 1);  // b1
  EXPECT_EQ(stats->certificates_expired, 2);     // c0 c1
  EXPECT_EQ(stats->expiring_within_1d, 1);       // a1
  EXPECT_EQ(stats->expiring_within_7d, 2);       // a1 f1
  EXPECT_EQ(stats->expiring_within_30d, 4);      // a1 f1 b2 e1
  EXPECT_EQ(stats->expiring_within_90d, 4);
  const std::map<std::string, int64_t> subscribers = {{"active", 5},
                                                      {"suspended", 1}};
  EXPECT_EQ(stats->subscribers, subscribers);

  // Thirteen hours on, a1 has expired; a revoked certificate that expires
  // counts as expired.
  stats = store_->GetFleetStats(kT0 + absl::Hours(13));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->certificates_valid, 3);
  EXPECT_EQ(stats->certificates_expired, 3);
  EXPECT_EQ(stats->expiring_within_1d, 0);
  stats = store_->GetFleetStats(kT0 + kDay * 5);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->certificates_revoked, 0);
  EXPECT_EQ(stats->certificates_expired, 4);
  EXPECT_EQ(stats->expiring_within_1d, 1);  // f1
}

}  // namespace
}  // namespace simprov
