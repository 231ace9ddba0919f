#include "test/broker/store/store_conformance.h"

#include <utility>

namespace simprov {

std::string StoreBackendName(const ::testing::TestParamInfo<StoreBackend>& i) {
  return i.param.name;
}

void PrintTo(const StoreBackend& backend, std::ostream* os) {
  *os << backend.name;
}

void StoreConformanceTest::SetUp() {
  auto store = GetParam().open(dir_.path(), clock_);
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(*store);
}

void StoreConformanceTest::TearDown() { store_.reset(); }

void StoreConformanceTest::Reopen() {
  store_.reset();
  auto store = GetParam().open(dir_.path(), clock_);
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(*store);
}

void StoreConformanceTest::Import(int first, int count, HeSqnState sqn) {
  auto import = store_->BeginImport();
  ASSERT_TRUE(import.ok()) << import.status();
  for (int i = first; i < first + count; ++i) {
    NewSubscriber s = MakeSubscriber(i, random_);
    s.sqn = sqn;
    ASSERT_TRUE((*import)->Add(s).ok()) << i;
  }
  auto committed = (*import)->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(*committed, static_cast<uint64_t>(count));
}

void StoreConformanceTest::Issue(const std::string& serial,
                                 const std::string& imsi,
                                 const std::string& device, absl::Time at) {
  absl::Status s = store_->RecordIssuance(Cert(serial, imsi, device, at),
                                          Event(imsi, "serial=" + serial, at));
  ASSERT_TRUE(s.ok()) << s;
}

void StoreConformanceTest::IssueWith(const std::string& serial,
                                     const std::string& imsi,
                                     const std::vector<std::string>& registries,
                                     absl::Time at,
                                     std::vector<absl::Duration> due) {
  std::vector<RegistrationIntent> intents;
  for (size_t i = 0; i < registries.size(); ++i) {
    intents.push_back(Intent(registries[i], "register", serial, imsi, at));
    if (i < due.size()) intents.back().next_attempt_at = at + due[i];
  }
  absl::Status s = store_->RecordIssuanceWithIntents(
      Cert(serial, imsi, "dev-" + imsi, at), Event(imsi, serial, at), intents);
  ASSERT_TRUE(s.ok()) << s;
}

void StoreConformanceTest::Revoke(const std::string& serial, absl::Time at) {
  RevocationRequest r;
  r.serial = serial;
  r.reason = "keyCompromise";
  r.at = at;
  auto revoked =
      store_->RevokeCertificates(r, AdminEvent("revoke", serial, at));
  ASSERT_TRUE(revoked.ok()) << revoked.status();
}

std::vector<std::string> StoreConformanceTest::ListImsis(
    const std::string& group, size_t stop_after) {
  std::vector<std::string> out;
  absl::Status s =
      store_->ListSubscribers(group, [&](const SubscriberRecord& r) {
        out.push_back(r.imsi);
        return stop_after == 0 || out.size() < stop_after;
      });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

std::vector<std::string> StoreConformanceTest::PageImsis(
    const SubscriberFilter& filter) {
  std::vector<std::string> out;
  absl::Status s =
      store_->ListSubscribersPage(filter, [&](const SubscriberRecord& r) {
        out.push_back(r.imsi);
        return true;
      });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

std::vector<std::string> StoreConformanceTest::GroupNames(
    const std::string& after, size_t limit) {
  std::vector<std::string> out;
  absl::Status s = store_->ListGroups(after, limit, [&](const GroupRow& g) {
    out.push_back(g.name);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

std::vector<AuditEvent> StoreConformanceTest::Audit(const AuditQuery& query) {
  std::vector<AuditEvent> out;
  absl::Status s = store_->QueryAudit(query, [&](const AuditEvent& e) {
    out.push_back(e);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

std::vector<RegistrationIntent> StoreConformanceTest::Pending(int64_t after_id,
                                                              size_t limit) {
  std::vector<RegistrationIntent> out;
  absl::Status s = store_->ListPendingIntents(after_id, limit,
                                              [&](const RegistrationIntent& r) {
                                                out.push_back(r);
                                                return true;
                                              });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

std::vector<std::string> StoreConformanceTest::Serials(
    const std::vector<CertificateRecord>& certs) {
  std::vector<std::string> out;
  for (const CertificateRecord& c : certs) out.push_back(c.serial);
  return out;
}

std::vector<RegistrationIntent> StoreConformanceTest::IntentsOf(
    const std::string& serial) {
  auto r = store_->IntentsOf(serial);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : std::vector<RegistrationIntent>{};
}

std::vector<RegistrationIntent> StoreConformanceTest::Due(absl::Time now,
                                                          size_t limit) {
  auto r = store_->DueIntents(now, limit);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : std::vector<RegistrationIntent>{};
}

SubscriberRecord StoreConformanceTest::Subscriber(const std::string& imsi) {
  auto r = store_->GetSubscriber(imsi);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : SubscriberRecord{};
}

Store::TokenSubject StoreConformanceTest::Subject(const std::string& serial) {
  auto s = store_->GetTokenSubject(serial);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : Store::TokenSubject{};
}

}  // namespace simprov
