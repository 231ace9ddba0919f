// Conformance: the audit trail (batched device events, admin events written
// with their mutation, queries) and groups.
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

using StatusCode = absl::StatusCode;
using Strings = std::vector<std::string>;

Strings Reasons(const std::vector<AuditEvent>& events) {
  Strings out;
  for (const AuditEvent& e : events) out.push_back(e.reason);
  return out;
}

TEST_P(StoreConformanceTest, AppendAuditKeepsOrderPerImsi) {
  const absl::Time t0 = kT0;
  auto refused = [&](const std::string& imsi, const std::string& reason) {
    return AuditEvent{t0, imsi, "bootstrap", imsi, "refused", reason};
  };
  ASSERT_TRUE(store_->AppendAudit(refused(Imsi(1), "a")).ok());
  ASSERT_TRUE(store_->AppendAudit(refused(Imsi(2), "b")).ok());
  ASSERT_TRUE(store_->AppendAudit(refused(Imsi(1), "c")).ok());
  auto audit = store_->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].reason, "a");
  EXPECT_EQ((*audit)[1].reason, "c");
  EXPECT_EQ((*audit)[1].action, "bootstrap");
  EXPECT_EQ((*audit)[1].result, "refused");
}

// A durable append is written before it returns, after the events queued
// before it: another handle on the same store sees both at once, with no
// flush and no close (a crash right after the answer loses nothing).
TEST_P(StoreConformanceTest, DurableAuditIsWrittenBeforeItReturns) {
  ASSERT_TRUE(store_->AppendAudit(Event(Imsi(1), "queued", kT0)).ok());
  ASSERT_TRUE(
      store_->AppendAuditDurable(Event(Imsi(1), "jti=durable", kT0)).ok());
  auto peer = GetParam().open(dir_.path(), clock_);
  ASSERT_TRUE(peer.ok()) << peer.status();
  auto audit = (*peer)->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_EQ(Reasons(*audit), (Strings{"queued", "jti=durable"}));
}

// Appended events are queued; FlushAudit writes them (durably), and any
// write with its own event comes after the events queued before it.
TEST_P(StoreConformanceTest, AppendedEventsAreFlushedInOrder) {
  Import(1, 1);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_
                    ->AppendAudit({kT0 + absl::Seconds(i), Imsi(1), "resync",
                                   Imsi(1), "refused", absl::StrCat("q", i)})
                    .ok());
  }
  ASSERT_TRUE(store_->FlushAudit().ok());
  ASSERT_TRUE(store_->FlushAudit().ok());  // nothing queued: no-op
  Issue("0901", Imsi(1), "dev-1", kT0 + absl::Seconds(5));
  ASSERT_TRUE(store_->AppendAudit(Event(Imsi(1), "q3", kT0)).ok());
  ASSERT_TRUE(store_
                  ->PutGroups({{"g", "{}", kT0}},
                              {kT0, "local", "group-apply", Imsi(1), "ok", "g"})
                  .ok());
  Reopen();
  auto audit = store_->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok());
  EXPECT_EQ(Reasons(*audit),
            (Strings{"q0", "q1", "q2", "serial=0901", "q3", "g"}));
  ASSERT_EQ(audit->size(), 6u);
  EXPECT_EQ((*audit)[1].at, kT0 + absl::Seconds(1));
  EXPECT_EQ((*audit)[1].actor, Imsi(1));
  EXPECT_EQ((*audit)[1].action, "resync");
  EXPECT_EQ((*audit)[1].target, Imsi(1));
  EXPECT_EQ((*audit)[1].result, "refused");
  for (size_t i = 1; i < audit->size(); ++i) {
    EXPECT_LT((*audit)[i - 1].id, (*audit)[i].id);
  }
}

TEST_P(StoreConformanceTest, QueryAuditFiltersAndPages) {
  // Actor or target matches; `since` is inclusive; ids page.
  const std::vector<AuditEvent> events = {
      {kT0, Imsi(1), "bootstrap", Imsi(1), "ok", "e0"},
      {kT0 + absl::Seconds(1), "local", "suspend", Imsi(1), "ok", "e1"},
      {kT0 + absl::Seconds(2), Imsi(2), "bootstrap", Imsi(2), "ok", "e2"},
      {kT0 + absl::Seconds(3), "local", "group-apply", "g", "ok", "e3"},
      {kT0 + absl::Seconds(4), Imsi(1), "renew", Imsi(1), "failed", "e4"},
  };
  for (const AuditEvent& e : events) ASSERT_TRUE(store_->AppendAudit(e).ok());

  auto all = Audit(AuditQuery{});
  EXPECT_EQ(Reasons(all), (Strings{"e0", "e1", "e2", "e3", "e4"}));
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(Reasons(Audit({.imsi = Imsi(1)})), (Strings{"e0", "e1", "e4"}));
  EXPECT_EQ(Reasons(Audit({.imsi = "local"})), (Strings{"e1", "e3"}));
  EXPECT_EQ(Reasons(Audit({.imsi = "g"})), (Strings{"e3"}));
  EXPECT_TRUE(Audit({.imsi = Imsi(9)}).empty());
  EXPECT_EQ(Reasons(Audit({.imsi = "", .since = kT0 + absl::Seconds(3)})),
            (Strings{"e3", "e4"}));
  EXPECT_EQ(Reasons(Audit({.imsi = Imsi(1), .since = kT0 + absl::Seconds(1)})),
            (Strings{"e1", "e4"}));
  EXPECT_EQ(Reasons(Audit({.imsi = "", .limit = 2})), (Strings{"e0", "e1"}));
  EXPECT_EQ(Reasons(Audit({.imsi = "", .after_id = all[1].id, .limit = 2})),
            (Strings{"e2", "e3"}));
  EXPECT_EQ(Reasons(Audit({.imsi = Imsi(1), .after_id = all[0].id})),
            (Strings{"e1", "e4"}));
  EXPECT_TRUE(Audit({.imsi = "", .after_id = all[4].id}).empty());
  Strings seen;
  ASSERT_TRUE(store_
                  ->QueryAudit({},
                               [&](const AuditEvent& e) {
                                 seen.push_back(e.reason);
                                 return seen.size() < 3;
                               })
                  .ok());
  EXPECT_EQ(seen, (Strings{"e0", "e1", "e2"}));
  auto of = store_->AuditOf(Imsi(2));
  ASSERT_TRUE(of.ok());
  EXPECT_EQ(Reasons(*of), (Strings{"e2"}));
}

TEST_P(StoreConformanceTest, PutGroupsCreatesAndReplaces) {
  const absl::Time t1 = kT0 + absl::Hours(1);
  ASSERT_TRUE(store_
                  ->PutGroups({{"fleet-a", R"({"ttl":"24h"})", kT0},
                               {"fleet-b", R"({"imei_lock":true})", kT0}},
                              AdminEvent("group-apply", "fleet-a", kT0))
                  .ok());
  auto a = store_->GetGroup("fleet-a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->name, "fleet-a");
  EXPECT_EQ(a->policy_json, R"({"ttl":"24h"})");
  EXPECT_EQ(a->updated_at, kT0);
  EXPECT_EQ(store_->GetGroup("fleet-b")->policy_json, R"({"imei_lock":true})");

  ASSERT_TRUE(store_
                  ->PutGroups({{"fleet-a", R"({"ttl":"1h"})", t1}},
                              AdminEvent("group-apply", "fleet-a", t1))
                  .ok());
  a = store_->GetGroup("fleet-a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->policy_json, R"({"ttl":"1h"})");
  EXPECT_EQ(a->updated_at, t1);
  EXPECT_EQ(store_->GetGroup("fleet-b")->updated_at, kT0);  // untouched
  EXPECT_EQ(store_->GetGroup("fleet-c").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetGroup(kDefaultGroup).status().code(),
            StatusCode::kNotFound);  // never stored
  auto audit = Audit({.imsi = "fleet-a"});
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].action, "group-apply");
  EXPECT_EQ(audit[1].at, t1);
  Reopen();
  EXPECT_EQ(store_->GetGroup("fleet-a")->policy_json, R"({"ttl":"1h"})");
}

TEST_P(StoreConformanceTest, ListGroupsInNameOrderPaged) {
  ASSERT_TRUE(store_
                  ->PutGroups({{"d", "{}", kT0},
                               {"b", "{}", kT0},
                               {"a", "{}", kT0},
                               {"c", R"({"x":1})", kT0}},
                              AdminEvent("group-apply", "", kT0))
                  .ok());
  EXPECT_EQ(GroupNames("", 0), (Strings{"a", "b", "c", "d"}));
  EXPECT_EQ(GroupNames("", 2), (Strings{"a", "b"}));
  EXPECT_EQ(GroupNames("b", 2), (Strings{"c", "d"}));
  EXPECT_EQ(GroupNames("bb", 0), (Strings{"c", "d"}));
  EXPECT_TRUE(GroupNames("d", 0).empty());
  std::vector<GroupRow> rows;
  ASSERT_TRUE(store_
                  ->ListGroups("b", 0,
                               [&](const GroupRow& g) {
                                 rows.push_back(g);
                                 return false;
                               })
                  .ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].name, "c");
  EXPECT_EQ(rows[0].policy_json, R"({"x":1})");
  EXPECT_EQ(rows[0].updated_at, kT0);
}

TEST_P(StoreConformanceTest, DeleteGroupRefusedWhileInUse) {
  Import(1, 3);
  ASSERT_TRUE(store_
                  ->PutGroups({{"fleet-a", "{}", kT0}},
                              AdminEvent("group-apply", "fleet-a", kT0))
                  .ok());
  for (int i : {1, 2}) {
    ASSERT_TRUE(store_
                    ->SetSubscriberGroup(Imsi(i), "fleet-a",
                                         AdminEvent("set-group", Imsi(i), kT0))
                    .ok());
  }
  absl::Status refused = store_->DeleteGroup(
      "fleet-a", AdminEvent("group-delete", "fleet-a", kT0));
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("still has 2 subscribers"),
            absl::string_view::npos)
      << refused;
  EXPECT_TRUE(store_->GetGroup("fleet-a").ok());
  EXPECT_EQ(Audit({.imsi = "fleet-a"}).size(), 1u);  // the apply only

  for (int i : {1, 2}) {
    ASSERT_TRUE(store_
                    ->SetSubscriberGroup(Imsi(i), kDefaultGroup,
                                         AdminEvent("set-group", Imsi(i), kT0))
                    .ok());
  }
  ASSERT_TRUE(
      store_->DeleteGroup("fleet-a", AdminEvent("group-delete", "fleet-a", kT0))
          .ok());
  EXPECT_EQ(store_->GetGroup("fleet-a").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(GroupNames("", 0).empty());
  auto audit = Audit({.imsi = "fleet-a"});
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[1].action, "group-delete");
  EXPECT_EQ(
      store_->DeleteGroup("fleet-a", AdminEvent("group-delete", "fleet-a", kT0))
          .code(),
      StatusCode::kNotFound);
  EXPECT_EQ(Audit({.imsi = "fleet-a"}).size(), 2u);
}

}  // namespace
}  // namespace simprov
