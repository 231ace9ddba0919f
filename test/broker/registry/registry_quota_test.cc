// Registry quotas: the rate= URL parameter, throttling answers from AWS IoT
// (HTTP 429, ThrottlingException, Retry-After), and the outbox worker that
// paces its deliveries and pauses a whole registry when it throttles,
// against a local AWS IoT endpoint that checks SigV4 and throttles like AWS
// (a token bucket per API), over a real SQLite store.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "broker/registry/registry.h"
#include "broker/registry/registry_outbox.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "test/testing/fake_aws_iot.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using testing::FakeAwsIot;
using testing::MakeTempDir;
using testing::RemoveTree;

TEST(RegistryRate, DefaultsAndSyntax) {
  auto aws = ParseRegistryUrl("aws-iot://eu-west-1?policy=p");
  ASSERT_TRUE(aws.ok()) << aws.status();
  EXPECT_EQ(aws->rate, 10);
  auto mq = ParseRegistryUrl("mosquitto://h:1883");
  ASSERT_TRUE(mq.ok()) << mq.status();
  EXPECT_EQ(mq->rate, 0);  // unlimited
  auto half = ParseRegistryUrl("aws-iot://eu-west-1?rate=2.5");
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_EQ(half->rate, 2.5);
  auto unlimited = ParseRegistryUrl("aws-iot://eu-west-1?rate=0");
  ASSERT_TRUE(unlimited.ok());
  EXPECT_EQ(unlimited->rate, 0);
  auto capped = ParseRegistryUrl("mosquitto://h?rate=50");
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->rate, 50);
  for (const char* bad : {"abc", "-1", "20000", "nan", ""}) {
    auto u = ParseRegistryUrl(absl::StrCat("aws-iot://eu-west-1?rate=", bad));
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(u.status().message(),
              absl::StrCat("registry aws-iot://eu-west-1: rate= must be "
                           "deliveries per second (a number up to 10000, or "
                           "0 for unlimited), not '",
                           bad, "'"));
  }
}

TEST(RegistryRate, RetryAfterAndThrottledStatus) {
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  EXPECT_EQ(ParseRetryAfter("2", now), absl::Seconds(2));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("soon", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("86400", now), absl::Minutes(5));  // capped
  // An HTTP-date: 1800000000 is Fri, 15 Jan 2027 08:00:00 GMT.
  EXPECT_EQ(ParseRetryAfter("Fri, 15 Jan 2027 08:00:07 GMT", now),
            absl::Seconds(7));
  EXPECT_EQ(ParseRetryAfter("Fri, 15 Jan 2027 07:00:00 GMT", now),
            absl::ZeroDuration());

  absl::Duration wait;
  absl::Status t = ThrottledError("slow down", absl::Seconds(3));
  EXPECT_TRUE(IsThrottled(t, &wait));
  EXPECT_EQ(wait, absl::Seconds(3));
  EXPECT_FALSE(IsThrottled(absl::ResourceExhaustedError("x"), &wait));
  EXPECT_FALSE(IsThrottled(absl::UnavailableError("x"), &wait));
}

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("AWS_ACCESS_KEY_ID", testing::kFakeAwsAccessKey, 1);
    setenv("AWS_SECRET_ACCESS_KEY", testing::kFakeAwsSecretKey, 1);
    unsetenv("AWS_SESSION_TOKEN");
    dir_ = MakeTempDir();
    auto store = SqliteStore::Open(dir_ + "/s.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    outbox_.reset();
    store_.reset();
    RemoveTree(dir_);
  }
  std::unique_ptr<Registry> Adapter(const std::string& rate) {
    auto url = ParseRegistryUrl(absl::StrCat(
        "aws-iot://eu-west-1?policy=p&endpoint=", fake_.url(), "&rate=", rate));
    EXPECT_TRUE(url.ok()) << url.status();
    auto r = NewRegistry(*url, Clock::Real());
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(*r);
  }
  void MakeOutbox(const std::string& rate) {
    std::vector<std::unique_ptr<Registry>> regs;
    regs.push_back(Adapter(rate));
    // As the broker runs it on a store of its own: no claims.
    OutboxOptions options;
    options.lease = absl::ZeroDuration();
    outbox_ = std::make_unique<RegistryOutbox>(
        *store_, std::move(regs), nullptr, clock_, random_, options);
    outbox_->OnThrottled([this](const std::string& name) {
      EXPECT_EQ(name, "aws-iot");
      ++throttled_;
    });
  }
  // `n` issued certificates, each with its registration entry (due now).
  void Issue(int n) {
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok());
    for (int i = 0; i < n; ++i) {
      NewSubscriber sub;
      sub.imsi = absl::StrCat("0010100000", 10000 + i);
      sub.sealed_keys = Bytes(48, 1);
      sub.amf = {0x80, 0};
      ASSERT_TRUE((*import)->Add(sub).ok());
    }
    ASSERT_TRUE((*import)->Commit().ok());
    for (int i = 0; i < n; ++i) {
      CertificateRecord c;
      c.serial = absl::StrCat("c0", 1000 + i);
      c.imsi = absl::StrCat("0010100000", 10000 + i);
      c.device_id = c.imsi;
      c.der = Bytes(4, static_cast<uint8_t>(i));
      c.issued_at = clock_.Now();
      c.not_before = c.issued_at;
      c.not_after = c.issued_at + absl::Hours(1);
      DeviceRegistration d;
      d.serial = c.serial;
      d.imsi = c.imsi;
      d.device_id = c.device_id;
      d.thing = "cam-" + c.device_id;
      d.cert_pem = absl::StrCat("-----BEGIN CERTIFICATE-----\n", c.serial,
                                "\n-----END CERTIFICATE-----\n");
      RegistrationIntent intent;
      intent.registry = "aws-iot";
      intent.kind = "register";
      intent.serial = c.serial;
      intent.imsi = c.imsi;
      intent.device_id = c.device_id;
      intent.payload = d.ToJson();
      intent.created_at = clock_.Now();
      intent.next_attempt_at = clock_.Now();
      ASSERT_TRUE(store_
                      ->RecordIssuanceWithIntents(
                          c,
                          {clock_.Now(), c.imsi, "bootstrap", c.imsi, "ok", ""},
                          {intent})
                      .ok());
      serials_.push_back(c.serial);
    }
  }
  // Runs the worker's passes until nothing is pending (real time passes:
  // pacing and pauses are on the monotonic clock).
  void Drain(absl::Duration limit) {
    const absl::Time end = absl::Now() + limit;
    while (absl::Now() < end) {
      ASSERT_TRUE(outbox_->RunOnce().ok());
      auto stats = store_->GetOutboxStats(clock_.Now());
      ASSERT_TRUE(stats.ok());
      if (stats->depth == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "outbox not drained in " << limit;
  }
  // Every entry done after exactly one counted attempt.
  void ExpectEachDoneAfterOneAttempt() {
    for (const std::string& serial : serials_) {
      auto intents = store_->IntentsOf(serial);
      ASSERT_TRUE(intents.ok());
      ASSERT_EQ(intents->size(), 1u) << serial;
      EXPECT_EQ((*intents)[0].state, "done") << serial;
      EXPECT_EQ((*intents)[0].attempts, 1) << serial;
      EXPECT_EQ((*intents)[0].last_error, "") << serial;
    }
    auto regs = fake_.registrations();
    EXPECT_EQ(regs.size(), serials_.size());
    for (const auto& [id, n] : regs) EXPECT_EQ(n, 1) << id;
  }
  std::vector<FakeAwsIot::Arrival> Arrivals(const std::string& api) {
    std::vector<FakeAwsIot::Arrival> out;
    for (const auto& a : fake_.arrivals()) {
      if (a.api == api) out.push_back(a);
    }
    return out;
  }

  FakeAwsIot fake_;
  FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  DeterministicRandom random_{7};
  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RegistryOutbox> outbox_;
  std::vector<std::string> serials_;
  int throttled_ = 0;
};

double Seconds(FakeAwsIot::SteadyTime a, FakeAwsIot::SteadyTime b) {
  return std::chrono::duration<double>(b - a).count();
}

// rate=20: consecutive deliveries at least 50 ms apart, so no API sees more
// than 20 calls a second, and a quota of 20 a second never throttles.
TEST_F(QuotaTest, DeliveriesArePacedToTheRate) {
  fake_.SetQuota(20);
  MakeOutbox("20");
  Issue(30);
  Drain(absl::Seconds(30));
  ExpectEachDoneAfterOneAttempt();
  EXPECT_EQ(fake_.throttled(), 0);
  EXPECT_EQ(throttled_, 0);
  auto reg = Arrivals("RegisterCertificate");
  ASSERT_EQ(reg.size(), 30u);
  // 50 ms apart when sent. Each arrival may come late by its network and
  // scheduling delay (tens of ms on a loaded machine), so the check allows
  // one arrival's delay of up to 50 ms: every ten in a row spread over at
  // least 450 ms, all thirty over at least 1.40 s. Unpaced, the thirty
  // arrive within about 0.1 s.
  for (size_t i = 10; i < reg.size(); ++i) {
    EXPECT_GE(Seconds(reg[i - 10].at, reg[i].at), 0.5 - 0.05) << i;
  }
  EXPECT_GE(Seconds(reg.front().at, reg.back().at), 29 * 0.05 - 0.05);
}

// Unpaced (rate=0) against a quota of 10 a second: the endpoint throttles,
// the whole registry pauses (no call at all for the pause), the throttled
// attempts are not counted, and every certificate is registered once.
TEST_F(QuotaTest, ThrottlingPausesTheWholeRegistryAndIsNotCounted) {
  fake_.SetQuota(10);
  MakeOutbox("0");
  Issue(40);
  Drain(absl::Seconds(60));
  ExpectEachDoneAfterOneAttempt();
  EXPECT_GT(fake_.throttled(), 0);
  EXPECT_EQ(throttled_, fake_.throttled());
  auto all = fake_.arrivals();
  for (size_t i = 0; i + 1 < all.size(); ++i) {
    if (!all[i].throttled) continue;
    // The first pause is 1 s (then 2 s, 4 s ... while it keeps throttling);
    // no API of the registry is called meanwhile.
    EXPECT_GE(Seconds(all[i].at, all[i + 1].at), 0.95)
        << "call " << i + 1 << " (" << all[i + 1].api
        << ") came too soon after a throttling answer";
  }
}

// Retry-After sets the pause.
TEST_F(QuotaTest, RetryAfterSetsThePause) {
  fake_.SetQuota(10, "2");
  MakeOutbox("0");
  Issue(12);
  Drain(absl::Seconds(30));
  ExpectEachDoneAfterOneAttempt();
  auto all = fake_.arrivals();
  int pauses = 0;
  for (size_t i = 0; i + 1 < all.size(); ++i) {
    if (!all[i].throttled) continue;
    ++pauses;
    EXPECT_GE(Seconds(all[i].at, all[i + 1].at), 1.95) << i;
  }
  EXPECT_GT(pauses, 0);
}

}  // namespace
}  // namespace simprov
