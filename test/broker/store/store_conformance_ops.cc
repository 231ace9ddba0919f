// Conformance: operations (health, snapshots, re-wrapping sealed keys).
#include <fstream>
#include <iterator>
#include <optional>
#include <utility>

#include "common/sealed_box.h"
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;
using Strings = std::vector<std::string>;

const Bytes kNewKek(32, 0xa5);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

TEST_P(StoreConformanceTest, PingAnswers) {
  EXPECT_TRUE(store_->Ping().ok());
  Import(1, 1);
  EXPECT_TRUE(store_->Ping().ok());
}

// Re-wraps even-numbered subscribers under the new KEK and keeps the odd
// ones; records the IMSIs in the order visited.
class Rewrapper {
 public:
  explicit Rewrapper(Random& random, std::string fail_at = "")
      : random_(random), fail_at_(std::move(fail_at)) {}
  Store::RewrapFn Fn() {
    return [this](const std::string& imsi,
                  const Bytes& sealed) -> absl::StatusOr<std::optional<Bytes>> {
      visited.push_back(imsi);
      if (imsi == fail_at_) return absl::InternalError("KEK unavailable");
      auto plain = OpenBox(kTestKek, sealed, ToBytes(imsi));
      if (!plain.ok()) return plain.status();
      if ((imsi.back() - '0') % 2 != 0) return std::nullopt;
      return SealBox(kNewKek, *plain, ToBytes(imsi), random_);
    };
  }
  Strings visited;

 private:
  Random& random_;
  std::string fail_at_;
};

// Which KEK opens subscriber n's sealed keys: 1 the test KEK, 2 the new one.
int KekOf(const SubscriberRecord& r, int n) {
  if (auto p = OpenBox(kTestKek, r.sealed_keys, ToBytes(r.imsi));
      p.ok() && *p == PlainKeys(n)) {
    return 1;
  }
  if (auto p = OpenBox(kNewKek, r.sealed_keys, ToBytes(r.imsi));
      p.ok() && *p == PlainKeys(n)) {
    return 2;
  }
  return 0;
}

TEST_P(StoreConformanceTest, RewrapSealedKeysVisitsEveryRowInBatches) {
  Import(1, 5);
  Rewrapper rewrapper(random_);
  auto counts = store_->RewrapSealedKeys(rewrapper.Fn(), 2);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->rows, 5u);
  EXPECT_EQ(counts->rewrapped, 2u);  // subscribers 2 and 4
  EXPECT_EQ(rewrapper.visited,
            (Strings{Imsi(1), Imsi(2), Imsi(3), Imsi(4), Imsi(5)}));
  for (int n = 1; n <= 5; ++n) {
    EXPECT_EQ(KekOf(Subscriber(Imsi(n)), n), n % 2 == 0 ? 2 : 1) << n;
  }
  // A batch as large as the store; keeping every row rewraps none.
  Strings visited;
  counts = store_->RewrapSealedKeys(
      [&](const std::string& imsi,
          const Bytes&) -> absl::StatusOr<std::optional<Bytes>> {
        visited.push_back(imsi);
        return std::nullopt;
      },
      5);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->rows, 5u);
  EXPECT_EQ(counts->rewrapped, 0u);
  EXPECT_EQ(visited, (Strings{Imsi(1), Imsi(2), Imsi(3), Imsi(4), Imsi(5)}));
  EXPECT_EQ(KekOf(Subscriber(Imsi(2)), 2), 2);
}

TEST_P(StoreConformanceTest, RewrapStopsAtTheFirstErrorKeepingEarlierBatches) {
  Import(1, 5);
  Rewrapper rewrapper(random_, Imsi(4));
  auto counts = store_->RewrapSealedKeys(rewrapper.Fn(), 2);
  EXPECT_EQ(counts.status().code(), StatusCode::kInternal);
  EXPECT_EQ(rewrapper.visited, (Strings{Imsi(1), Imsi(2), Imsi(3), Imsi(4)}));
  // Batch {1, 2} committed; batch {3, 4} rolled back as a whole.
  EXPECT_EQ(KekOf(Subscriber(Imsi(2)), 2), 2);
  EXPECT_EQ(KekOf(Subscriber(Imsi(3)), 3), 1);
  EXPECT_EQ(KekOf(Subscriber(Imsi(4)), 4), 1);
  EXPECT_EQ(KekOf(Subscriber(Imsi(5)), 5), 1);
}

TEST_P(StoreConformanceTest, RewrapOnEmptyStoreCountsNothing) {
  Rewrapper rewrapper(random_);
  auto counts = store_->RewrapSealedKeys(rewrapper.Fn(), 3);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->rows, 0u);
  EXPECT_EQ(counts->rewrapped, 0u);
  EXPECT_TRUE(rewrapper.visited.empty());
}

TEST_P(StoreConformanceTest, SnapshotReopensWithTheSameData) {
  Import(1, 2);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->AdvanceSqn(Imsi(1)).ok());
  ASSERT_TRUE(store_
                  ->PutGroups({{"fleet-a", R"({"ttl":"1h"})", kT0}},
                              AdminEvent("group-apply", "fleet-a", kT0))
                  .ok());
  IssueWith("7001", Imsi(1), {"mqtt"});
  ASSERT_TRUE(store_->CreateTokenApp("billing", Bytes(32, 1), kT0).ok());
  ASSERT_TRUE(store_->RevokeTokenId("jti-7", kT0).ok());
  ASSERT_TRUE(store_->NextCrlNumber().ok());
  // Queued, not yet flushed: the snapshot writes it first.
  ASSERT_TRUE(store_->AppendAudit(Event(Imsi(2), "queued", kT0)).ok());

  const std::string path = dir_.path() + "/snapshot";
  ASSERT_TRUE(store_->Snapshot(path).ok());
  // Writes after the snapshot are not in it.
  ASSERT_TRUE(store_->AdvanceSqn(Imsi(1)).ok());
  Issue("7002", Imsi(2), "dev-2");
  EXPECT_TRUE(store_->Ping().ok());  // still serving

  auto copy = GetParam().open_snapshot(path, clock_);
  ASSERT_TRUE(copy.ok()) << copy.status();
  Store& snap = **copy;
  EXPECT_TRUE(snap.Ping().ok());
  auto s1 = snap.GetSubscriber(Imsi(1));
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_EQ(s1->sqn.seq_he, 3u);
  EXPECT_EQ(s1->device_id, "dev-" + Imsi(1));
  EXPECT_EQ(s1->sealed_keys, Subscriber(Imsi(1)).sealed_keys);
  EXPECT_EQ(snap.GetSubscriber(Imsi(2))->device_id, "");
  EXPECT_EQ(snap.GetCertificate("7001")->der,
            store_->GetCertificate("7001")->der);
  EXPECT_EQ(snap.GetCertificate("7002").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(snap.GetGroup("fleet-a")->policy_json, R"({"ttl":"1h"})");
  auto intents = snap.IntentsOf("7001");
  ASSERT_TRUE(intents.ok());
  ASSERT_EQ(intents->size(), 1u);
  EXPECT_EQ((*intents)[0].registry, "mqtt");
  EXPECT_EQ(*snap.TokenAppKeyHash("billing"), Bytes(32, 1));
  EXPECT_TRUE(*snap.TokenRevoked("jti-7", Imsi(1), kT0));
  EXPECT_EQ(*snap.NextCrlNumber(), 2u);
  auto audit = snap.AuditOf(Imsi(2));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].reason, "queued");
  // The copy is a store of its own.
  auto advanced = snap.AdvanceSqn(Imsi(1));
  ASSERT_TRUE(advanced.ok());
  EXPECT_EQ(SeqOf(advanced->sqn), 4u);
  EXPECT_EQ(SeqOf(store_->AdvanceSqn(Imsi(1))->sqn), 5u);
}

TEST_P(StoreConformanceTest, SnapshotToAnExistingPathFailsAndChangesNothing) {
  Import(1, 1);
  const std::string path = dir_.path() + "/taken";
  { std::ofstream(path, std::ios::binary) << "not a store"; }
  absl::Status s = store_->Snapshot(path);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s;
  EXPECT_EQ(ReadFile(path), "not a store");
  EXPECT_TRUE(store_->Ping().ok());
  EXPECT_TRUE(store_->AdvanceSqn(Imsi(1)).ok());
  // A second snapshot to a fresh path still works.
  EXPECT_TRUE(store_->Snapshot(dir_.path() + "/fresh").ok());
}

}  // namespace
}  // namespace simprov
