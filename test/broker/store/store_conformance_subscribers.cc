// Conformance: subscribers (import, reads, listing, groups membership, IMEI)
// and the home-environment SQN.
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/sealed_box.h"
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;
using Strings = std::vector<std::string>;

TEST_P(StoreConformanceTest, GetUnknownSubscriberIsNotFound) {
  EXPECT_EQ(store_->GetSubscriber(Imsi(1)).status().code(),
            StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, ImportDuplicateWithinImportIsAlreadyExists) {
  auto import = store_->BeginImport();
  ASSERT_TRUE(import.ok());
  ASSERT_TRUE((*import)->Add(MakeSubscriber(1, random_)).ok());
  absl::Status dup = (*import)->Add(MakeSubscriber(1, random_));
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup;
}

TEST_P(StoreConformanceTest, ImportDuplicateOfStoredImsiIsAlreadyExists) {
  Import(1, 1);
  auto import = store_->BeginImport();
  ASSERT_TRUE(import.ok());
  ASSERT_TRUE((*import)->Add(MakeSubscriber(2, random_)).ok());
  absl::Status dup = (*import)->Add(MakeSubscriber(1, random_));
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup;
  import->reset();  // give up: rolls back subscriber 2 as well
  EXPECT_EQ(store_->GetSubscriber(Imsi(2)).status().code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetSubscriber(Imsi(1)).ok());
}

TEST_P(StoreConformanceTest, ImportDestroyedWithoutCommitLeavesNothing) {
  {
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok());
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE((*import)->Add(MakeSubscriber(i, random_)).ok());
    }
    // Not visible before Commit either.
    EXPECT_EQ(store_->GetSubscriber(Imsi(0)).status().code(),
              StatusCode::kNotFound);
  }
  EXPECT_TRUE(ListImsis("").empty());
  EXPECT_EQ(*store_->CountSubscribersInGroup(kDefaultGroup), 0u);
  // The same IMSIs import cleanly afterwards, and writes still work.
  Import(0, 100);
  EXPECT_EQ(*store_->CountSubscribersInGroup(kDefaultGroup), 100u);
  EXPECT_TRUE(store_->AdvanceSqn(Imsi(0)).ok());
}

TEST_P(StoreConformanceTest, CommittedImportIsVisibleAtOnce) {
  auto import = store_->BeginImport();
  ASSERT_TRUE(import.ok());
  NewSubscriber s = MakeSubscriber(7, random_, "fleet-a");
  s.sqn = {41, 31};
  ASSERT_TRUE((*import)->Add(s).ok());
  auto n = (*import)->Commit();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1u);
  auto r = store_->GetSubscriber(Imsi(7));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->group, "fleet-a");
  EXPECT_EQ(r->sqn.seq_he, 41u);
  EXPECT_EQ(r->sqn.next_ind, 31u);
  EXPECT_EQ(r->sealed_keys, s.sealed_keys);
}

// Every field of an imported subscriber reads back, and survives a restart.
TEST_P(StoreConformanceTest, ReopenKeepsImportedSubscribers) {
  Import(0, 3);
  Reopen();
  for (int i = 0; i < 3; ++i) {
    auto r = store_->GetSubscriber(Imsi(i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->imsi, Imsi(i));
    EXPECT_EQ(r->amf, (Bytes{0x80, 0x00}));
    EXPECT_EQ(r->group, kDefaultGroup);
    EXPECT_EQ(r->iccid, "89440000000000" + std::to_string(i));
    EXPECT_EQ(r->msisdn, "4477000" + std::to_string(i));
    EXPECT_EQ(r->status, kStatusActive);
    EXPECT_EQ(r->device_id, "");
    EXPECT_EQ(r->sqn.seq_he, 0u);
    EXPECT_EQ(r->sqn.next_ind, 0u);
    EXPECT_EQ(r->last_sqn, 0u);
    EXPECT_EQ(r->created_at, kT0);  // the store's clock at import
    EXPECT_EQ(r->imei, "");
    EXPECT_EQ(r->last_seen, absl::UnixEpoch());
    EXPECT_EQ(r->replaced_by, "");
    auto plain = OpenBox(kTestKek, r->sealed_keys, ToBytes(Imsi(i)));
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(*plain, PlainKeys(i));
  }
}

TEST_P(StoreConformanceTest, ListSubscribersInImsiOrderByGroup) {
  auto import = store_->BeginImport();
  ASSERT_TRUE(import.ok());
  for (int i : {5, 1, 4, 2, 3}) {
    ASSERT_TRUE((*import)
                    ->Add(MakeSubscriber(i, random_, i % 2 ? "odd" : "even"))
                    .ok());
  }
  ASSERT_TRUE((*import)->Commit().ok());
  EXPECT_EQ(ListImsis(""),
            (Strings{Imsi(1), Imsi(2), Imsi(3), Imsi(4), Imsi(5)}));
  EXPECT_EQ(ListImsis("odd"), (Strings{Imsi(1), Imsi(3), Imsi(5)}));
  EXPECT_EQ(ListImsis("even"), (Strings{Imsi(2), Imsi(4)}));
  EXPECT_TRUE(ListImsis("none").empty());
  EXPECT_EQ(ListImsis("", 2), (Strings{Imsi(1), Imsi(2)}));  // stops early
  EXPECT_EQ(*store_->CountSubscribersInGroup("odd"), 3u);
  EXPECT_EQ(*store_->CountSubscribersInGroup("even"), 2u);
  EXPECT_EQ(*store_->CountSubscribersInGroup("none"), 0u);
}

TEST_P(StoreConformanceTest, ListSubscribersPageFiltersAndPages) {
  auto import = store_->BeginImport();
  ASSERT_TRUE(import.ok());
  for (int i = 1; i <= 6; ++i) {
    ASSERT_TRUE(
        (*import)->Add(MakeSubscriber(i, random_, i <= 3 ? "a" : "b")).ok());
  }
  ASSERT_TRUE((*import)->Commit().ok());
  Issue("0101", Imsi(2), "dev-2");
  Issue("0102", Imsi(5), "dev-5");
  Issue("0103", Imsi(6), "dev-6");

  SubscriberFilter all;
  EXPECT_EQ(PageImsis(all),
            (Strings{Imsi(1), Imsi(2), Imsi(3), Imsi(4), Imsi(5), Imsi(6)}));
  SubscriberFilter page = all;
  page.limit = 4;
  EXPECT_EQ(PageImsis(page), (Strings{Imsi(1), Imsi(2), Imsi(3), Imsi(4)}));
  page.after = Imsi(4);  // the next page starts after the last one seen
  EXPECT_EQ(PageImsis(page), (Strings{Imsi(5), Imsi(6)}));
  page.after = Imsi(6);
  EXPECT_TRUE(PageImsis(page).empty());

  SubscriberFilter group_b;
  group_b.group = "b";
  EXPECT_EQ(PageImsis(group_b), (Strings{Imsi(4), Imsi(5), Imsi(6)}));
  group_b.after = Imsi(4);
  group_b.limit = 1;
  EXPECT_EQ(PageImsis(group_b), (Strings{Imsi(5)}));

  SubscriberFilter provisioned;
  provisioned.provisioned_only = true;
  EXPECT_EQ(PageImsis(provisioned), (Strings{Imsi(2), Imsi(5), Imsi(6)}));
  provisioned.group = "a";
  EXPECT_EQ(PageImsis(provisioned), (Strings{Imsi(2)}));

  // The callback stops the listing.
  std::vector<std::string> seen;
  ASSERT_TRUE(store_
                  ->ListSubscribersPage(all,
                                        [&](const SubscriberRecord& r) {
                                          seen.push_back(r.imsi);
                                          return seen.size() < 2;
                                        })
                  .ok());
  EXPECT_EQ(seen, (Strings{Imsi(1), Imsi(2)}));
}

TEST_P(StoreConformanceTest, GetSubscriberByDeviceId) {
  Import(1, 2);
  Issue("0201", Imsi(2), "dev-b");
  auto r = store_->GetSubscriberByDeviceId("dev-b");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->imsi, Imsi(2));
  EXPECT_EQ(r->device_id, "dev-b");
  EXPECT_EQ(r->last_seen, kT0);  // the issuance's time
  EXPECT_EQ(store_->GetSubscriberByDeviceId("dev-a").status().code(),
            StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, SetSubscriberGroupMovesMembership) {
  Import(1, 3);
  const absl::Time t1 = kT0 + absl::Hours(1);
  ASSERT_TRUE(store_
                  ->PutGroups({{"fleet-a", R"({"ttl":"1h"})", t1}},
                              AdminEvent("group-apply", "fleet-a", t1))
                  .ok());
  ASSERT_TRUE(store_
                  ->SetSubscriberGroup(Imsi(2), "fleet-a",
                                       AdminEvent("set-group", Imsi(2), t1))
                  .ok());
  EXPECT_EQ(Subscriber(Imsi(2)).group, "fleet-a");
  EXPECT_EQ(ListImsis("fleet-a"), (Strings{Imsi(2)}));
  EXPECT_EQ(ListImsis(kDefaultGroup), (Strings{Imsi(1), Imsi(3)}));
  EXPECT_EQ(*store_->CountSubscribersInGroup("fleet-a"), 1u);
  EXPECT_EQ(*store_->CountSubscribersInGroup(kDefaultGroup), 2u);

  // An unknown group or IMSI changes nothing and writes no audit.
  EXPECT_EQ(store_
                ->SetSubscriberGroup(Imsi(1), "fleet-z",
                                     AdminEvent("set-group", Imsi(1), t1))
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_
                ->SetSubscriberGroup(Imsi(9), "fleet-a",
                                     AdminEvent("set-group", Imsi(9), t1))
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(Subscriber(Imsi(1)).group, kDefaultGroup);
  EXPECT_TRUE(store_->AuditOf(Imsi(1))->empty());
  EXPECT_TRUE(store_->AuditOf(Imsi(9))->empty());

  // The default group always exists, stored or not.
  ASSERT_TRUE(store_
                  ->SetSubscriberGroup(Imsi(2), kDefaultGroup,
                                       AdminEvent("set-group", Imsi(2), t1))
                  .ok());
  EXPECT_EQ(Subscriber(Imsi(2)).group, kDefaultGroup);
  auto audit = store_->AuditOf(Imsi(2));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].action, "set-group");
  EXPECT_EQ((*audit)[0].actor, "local");
  EXPECT_EQ((*audit)[0].at, t1);
}

TEST_P(StoreConformanceTest, ImeiBindsAndClears) {
  Import(1, 1);
  ASSERT_TRUE(store_->SetImei(Imsi(1), "490154203237518", true).ok());
  EXPECT_EQ(Subscriber(Imsi(1)).imei, "490154203237518");
  // Bound: the same IMEI again is fine, another one is refused.
  EXPECT_TRUE(store_->SetImei(Imsi(1), "490154203237518", true).ok());
  EXPECT_EQ(store_->SetImei(Imsi(1), "356938035643809", true).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(Subscriber(Imsi(1)).imei, "490154203237518");
  // Without the lock the IMEI seen last is recorded.
  ASSERT_TRUE(store_->SetImei(Imsi(1), "356938035643809", false).ok());
  EXPECT_EQ(Subscriber(Imsi(1)).imei, "356938035643809");

  ASSERT_TRUE(
      store_->ClearImei(Imsi(1), AdminEvent("clear-imei", Imsi(1), kT0)).ok());
  EXPECT_EQ(Subscriber(Imsi(1)).imei, "");
  ASSERT_TRUE(store_->SetImei(Imsi(1), "490154203237518", true).ok());
  EXPECT_EQ(Subscriber(Imsi(1)).imei, "490154203237518");
  EXPECT_EQ(
      store_->ClearImei(Imsi(9), AdminEvent("clear-imei", Imsi(9), kT0)).code(),
      StatusCode::kNotFound);
  auto audit = store_->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "clear-imei");
}

TEST_P(StoreConformanceTest, AdvanceSqnFollowsNextSqn) {
  Import(1, 1);
  HeSqnState expected;
  for (int i = 0; i < 70; ++i) {
    const uint64_t want = NextSqn(expected);
    auto m = store_->AdvanceSqn(Imsi(1));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->sqn, want) << i;
    EXPECT_EQ(SeqOf(m->sqn), static_cast<uint64_t>(i + 1));   // SEQ increments
    EXPECT_EQ(IndOf(m->sqn), static_cast<uint32_t>(i % 32));  // IND cycles
    EXPECT_EQ(m->status, kStatusActive);
    EXPECT_EQ(m->amf, (Bytes{0x80, 0x00}));
    EXPECT_EQ(m->group, kDefaultGroup);
    EXPECT_EQ(m->device_id, "");
    auto plain = OpenBox(kTestKek, m->sealed_keys, ToBytes(Imsi(1)));
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(*plain, PlainKeys(1));
  }
  auto r = store_->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sqn.seq_he, expected.seq_he);
  EXPECT_EQ(r->sqn.next_ind, expected.next_ind);
  EXPECT_EQ(r->last_sqn, MakeSqn(70, 69 % 32));
}

TEST_P(StoreConformanceTest, AdvanceSqnStartsFromImportedState) {
  Import(1, 1, HeSqnState{1000, 31});
  auto m = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sqn, MakeSqn(1001, 31));
  m = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sqn, MakeSqn(1002, 0));
}

TEST_P(StoreConformanceTest, RestartKeepsSubscribersAndSqn) {
  HeSqnState expected;
  Import(1, 2);
  for (int i = 0; i < 5; ++i) {
    auto m = store_->AdvanceSqn(Imsi(1));
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->sqn, NextSqn(expected));
  }
  Reopen();
  EXPECT_TRUE(store_->GetSubscriber(Imsi(2)).ok());
  auto m = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sqn, NextSqn(expected));
  EXPECT_EQ(m->sqn, MakeSqn(6, 5));
  Reopen();
  auto r = store_->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sqn.seq_he, 6u);
  EXPECT_EQ(r->sqn.next_ind, 6u);
  EXPECT_EQ(r->last_sqn, MakeSqn(6, 5));
  auto other = store_->GetSubscriber(Imsi(2));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->sqn.seq_he, 0u);
}

TEST_P(StoreConformanceTest, AdvanceSqnOnUnknownImsiIsNotFound) {
  Import(1, 1);
  auto m = store_->AdvanceSqn(Imsi(2));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  // The failure did not disturb the write it was committed with.
  auto ok = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->sqn, MakeSqn(1, 0));
}

TEST_P(StoreConformanceTest, ResyncThenAdvanceYieldsSeqMsPlusOne) {
  Import(1, 1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->AdvanceSqn(Imsi(1)).ok());
  // The SIM has seen SEQ 5000 in slot 7.
  ASSERT_TRUE(store_->ResyncSqn(Imsi(1), MakeSqn(5000, 7)).ok());
  auto r = store_->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sqn.seq_he, 5000u);
  EXPECT_EQ(r->sqn.next_ind, 3u);  // kept
  auto m = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(SeqOf(m->sqn), 5001u);
  EXPECT_EQ(IndOf(m->sqn), 3u);
  EXPECT_EQ(m->sqn, MakeSqn(5001, 3));

  // The resynchronised state survives a restart.
  Reopen();
  m = store_->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sqn, MakeSqn(5002, 4));
}

TEST_P(StoreConformanceTest, ResyncOnUnknownImsiIsNotFound) {
  EXPECT_EQ(store_->ResyncSqn(Imsi(9), MakeSqn(10, 0)).code(),
            StatusCode::kNotFound);
}

// Concurrent advances of the same subscribers never hand out an SQN twice
// and never lose one.
TEST_P(StoreConformanceTest, ConcurrentAdvanceSqnYieldsEachSqnOnce) {
  constexpr int kSubscribers = 16;
  constexpr int kThreads = 16;
  constexpr int kPerThread = 50;
  Import(0, kSubscribers);

  std::mutex mu;
  std::map<std::string, std::vector<uint64_t>> seen;
  std::vector<absl::Status> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int j = 0; j < kPerThread; ++j) {
        // Every thread touches every subscriber; each subscriber gets 50.
        const std::string imsi = Imsi((t + j) % kSubscribers);
        auto m = store_->AdvanceSqn(imsi);
        std::lock_guard<std::mutex> lock(mu);
        if (m.ok()) {
          seen[imsi].push_back(m->sqn);
        } else {
          errors.push_back(m.status());
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  ASSERT_TRUE(errors.empty())
      << errors.size() << " failed, first: " << errors.front();
  ASSERT_EQ(seen.size(), static_cast<size_t>(kSubscribers));
  const int per_subscriber = kThreads * kPerThread / kSubscribers;  // 50
  for (const auto& [imsi, sqns] : seen) {
    SCOPED_TRACE(imsi);
    ASSERT_EQ(sqns.size(), static_cast<size_t>(per_subscriber));
    std::set<uint64_t> distinct(sqns.begin(), sqns.end());
    EXPECT_EQ(distinct.size(), sqns.size());
    // Exactly SEQ 1..50, IND = SEQ - 1 mod 32: the sequence NextSqn yields.
    HeSqnState expected;
    std::set<uint64_t> want;
    for (int i = 0; i < per_subscriber; ++i) want.insert(NextSqn(expected));
    EXPECT_EQ(distinct, want);
    auto r = store_->GetSubscriber(imsi);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->sqn.seq_he, static_cast<uint64_t>(per_subscriber));
    EXPECT_EQ(r->sqn.next_ind, static_cast<uint32_t>(per_subscriber % 32));
  }
}

}  // namespace
}  // namespace simprov
