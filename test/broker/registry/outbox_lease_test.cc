// Outbox leases: several outboxes (brokers) on one store deliver each entry
// once, one at a time; a dead holder's entries are delivered by another
// after the lease expires; a worker whose lease runs out mid-batch leaves
// the rest.
#include <gtest/gtest.h>

#include <latch>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "broker/registry/registry_outbox.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/clock.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RemoveTree;

constexpr char kImsi[] = "001010000000001";

class CountingRegistry : public Registry {
 public:
  CountingRegistry(std::map<std::string, int>& registered, std::mutex& mu,
                   FakeClock* slow_clock)
      : Registry("fake"),
        registered_(registered),
        mu_(mu),
        clock_(slow_clock) {}
  std::string kind() const override { return "fake"; }
  absl::StatusOr<std::string> Register(const DeviceRegistration& d) override {
    // A slow registry: each delivery takes 25 s of the fake clock.
    if (clock_ != nullptr) clock_->Advance(absl::Seconds(25));
    std::lock_guard<std::mutex> lock(mu_);
    registered_[d.serial]++;
    return std::string("{}");
  }
  absl::Status Remove(const DeviceRegistration&, const std::string&,
                      const std::vector<DeviceRegistration>&) override {
    return absl::OkStatus();
  }
  nlohmann::json ConnectionInfo(const DeviceRegistration&) const override {
    return nlohmann::json::object();
  }

 private:
  std::map<std::string, int>& registered_;
  std::mutex& mu_;
  FakeClock* clock_;
};

class OutboxLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    auto store = SqliteStore::Open(dir_ + "/s.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto import = store_->BeginImport();
    NewSubscriber s;
    s.imsi = kImsi;
    s.sealed_keys = Bytes(48, 1);
    s.amf = {0x80, 0};
    ASSERT_TRUE((*import)->Add(s).ok());
    ASSERT_TRUE((*import)->Commit().ok());
  }
  void TearDown() override {
    outboxes_.clear();
    store_.reset();
    RemoveTree(dir_);
  }

  RegistryOutbox& NewOutbox(const std::string& holder, bool slow = false) {
    std::vector<std::unique_ptr<Registry>> regs;
    regs.push_back(std::make_unique<CountingRegistry>(
        registered_, mu_, slow ? &clock_ : nullptr));
    OutboxOptions options;
    options.holder = holder;
    options.lease = absl::Seconds(60);
    outboxes_.push_back(std::make_unique<RegistryOutbox>(
        *store_, std::move(regs), nullptr, clock_, random_, options));
    return *outboxes_.back();
  }

  void Issue(const std::string& serial) {
    CertificateRecord c;
    c.serial = serial;
    c.imsi = kImsi;
    c.device_id = kImsi;
    c.der = Bytes(10, 2);
    c.issued_at = clock_.Now();
    c.not_before = c.issued_at;
    c.not_after = c.issued_at + absl::Hours(1);
    DeviceRegistration d;
    d.serial = serial;
    d.imsi = kImsi;
    d.device_id = kImsi;
    d.thing = "thing-" + serial;
    RegistrationIntent i;
    i.registry = "fake";
    i.kind = "register";
    i.serial = serial;
    i.imsi = kImsi;
    i.device_id = kImsi;
    i.payload = d.ToJson();
    i.created_at = clock_.Now();
    i.next_attempt_at = clock_.Now();
    ASSERT_TRUE(
        store_
            ->RecordIssuanceWithIntents(
                c, {clock_.Now(), kImsi, "bootstrap", kImsi, "ok", ""}, {i})
            .ok());
  }

  int Registered(const std::string& serial) {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_[serial];
  }

  std::string dir_;
  FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  DeterministicRandom random_{7};
  std::unique_ptr<SqliteStore> store_;
  std::mutex mu_;
  std::map<std::string, int> registered_;  // guarded by mu_
  std::vector<std::unique_ptr<RegistryOutbox>> outboxes_;
};

TEST_F(OutboxLeaseTest, TwoOutboxesDeliverEachEntryOnce) {
  RegistryOutbox& a = NewOutbox("broker-a");
  RegistryOutbox& b = NewOutbox("broker-b");
  for (int i = 0; i < 30; ++i) Issue(absl::StrCat("0d", 10 + i));
  std::latch start(2);
  int delivered[2] = {0, 0};
  std::thread ta([&] {
    start.arrive_and_wait();
    for (int i = 0; i < 5; ++i) delivered[0] += a.RunOnce().value_or(0);
  });
  std::thread tb([&] {
    start.arrive_and_wait();
    for (int i = 0; i < 5; ++i) delivered[1] += b.RunOnce().value_or(0);
  });
  ta.join();
  tb.join();
  EXPECT_EQ(delivered[0] + delivered[1], 30);
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ(Registered(absl::StrCat("0d", 10 + i)), 1) << i;
  }
}

TEST_F(OutboxLeaseTest, ADeadHoldersEntriesAreDeliveredAfterTheLease) {
  Issue("0e01");
  // A broker claims the entry and dies before delivering it.
  auto claimed =
      store_->ClaimIntents(clock_.Now(), 64, "dead-broker", absl::Seconds(60));
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 1u);
  RegistryOutbox& b = NewOutbox("broker-b");
  EXPECT_EQ(*b.RunOnce(), 0);
  clock_.Advance(absl::Seconds(59));
  EXPECT_EQ(*b.RunOnce(), 0);
  EXPECT_EQ(Registered("0e01"), 0);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(*b.RunOnce(), 1);
  EXPECT_EQ(Registered("0e01"), 1);
  EXPECT_EQ(store_->IntentsOf("0e01")->at(0).state, "done");
  clock_.Advance(absl::Minutes(5));
  EXPECT_EQ(*b.RunOnce(), 0);
  EXPECT_EQ(Registered("0e01"), 1);
}

TEST_F(OutboxLeaseTest, AWorkerStopsWhenItsLeaseRunsOut) {
  for (int i = 0; i < 5; ++i) Issue(absl::StrCat("0f0", i));
  // Each delivery takes 25 s: after three the 60 s lease has run out.
  RegistryOutbox& slow = NewOutbox("broker-slow", /*slow=*/true);
  EXPECT_EQ(*slow.RunOnce(), 3);
  // The other two were left; their lease has expired, so another broker
  // claims them now.
  RegistryOutbox& b = NewOutbox("broker-b");
  EXPECT_EQ(*b.RunOnce(), 2);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Registered(absl::StrCat("0f0", i)), 1) << i;
  }
}

}  // namespace
}  // namespace simprov
