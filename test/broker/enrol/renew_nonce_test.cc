// The broker's renewal nonces: its own, at most 60 s old, and nothing
// else, with a fake clock.
#include "broker/enrol/renew_nonce.h"

#include <gtest/gtest.h>

namespace simprov {
namespace {

TEST(RenewNoncesTest, FreshOwnNoncesPassAndNothingElse) {
  DeterministicRandom random(1);
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  RenewNonces nonces(random);
  const Bytes n = nonces.Issue(clock.Now());
  ASSERT_EQ(n.size(), kRenewNonceSize);
  EXPECT_TRUE(nonces.Check(n, clock.Now()).ok());
  EXPECT_NE(nonces.Issue(clock.Now()), n);  // never the same twice
  clock.Advance(kRenewNonceLifetime);
  EXPECT_TRUE(nonces.Check(n, clock.Now()).ok());
  clock.Advance(absl::Milliseconds(1));
  EXPECT_EQ(nonces.Check(n, clock.Now()).code(),
            absl::StatusCode::kUnauthenticated);
  // Issued "in the future" (a clock stepped back): refused.
  EXPECT_FALSE(
      nonces.Check(nonces.Issue(clock.Now() + absl::Seconds(1)), clock.Now())
          .ok());
  // Every byte is covered by the MAC, the time included.
  const Bytes fresh = nonces.Issue(clock.Now());
  for (size_t i = 0; i < fresh.size(); ++i) {
    Bytes bad = fresh;
    bad[i] ^= 0x01;
    EXPECT_FALSE(nonces.Check(bad, clock.Now()).ok()) << i;
  }
  EXPECT_FALSE(
      nonces.Check(Bytes(fresh.begin(), fresh.end() - 1), clock.Now()).ok());
  // Another broker's (another key's) nonces do not verify here.
  DeterministicRandom other_random(2);
  RenewNonces other(other_random);
  EXPECT_FALSE(nonces.Check(other.Issue(clock.Now()), clock.Now()).ok());
}

}  // namespace
}  // namespace simprov
