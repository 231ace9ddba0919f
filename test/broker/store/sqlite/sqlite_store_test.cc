#include "broker/store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker/store/sqlite/sqlite_db.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/sealed_box.h"
#include "common/sqn.h"

namespace simprov {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "simprov_store_XXXXXX";
    char* dir = mkdtemp(tmpl.data());
    EXPECT_NE(dir, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const Bytes kKek(32, 0x5a);

std::string Imsi(int n) { return std::to_string(1010000000000LL + n); }

// K || OPc, distinct and recognisable per subscriber.
Bytes PlainKeys(int n) {
  Bytes k(32);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<uint8_t>(0x80 + 3 * i + 17 * n);
  }
  return k;
}

NewSubscriber MakeSubscriber(int n, Random& random,
                             const std::string& group = kDefaultGroup) {
  NewSubscriber s;
  s.imsi = Imsi(n);
  s.sealed_keys = SealBox(kKek, PlainKeys(n), ToBytes(s.imsi), random);
  s.amf = {0x80, 0x00};
  s.group = group;
  s.iccid = "89440000000000" + std::to_string(n);
  s.msisdn = "4477000" + std::to_string(n);
  return s;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::string db_path() const { return dir_.path() + "/store.db"; }

  std::unique_ptr<SqliteStore> OpenStore() {
    auto store = SqliteStore::Open(db_path());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  // Imports subscribers 0..n-1 in one committed import.
  void Import(SqliteStore& store, int first, int count,
              HeSqnState sqn = HeSqnState{}) {
    auto import = store.BeginImport();
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

  // Runs one SQL statement on a separate, plain sqlite3 connection and
  // returns the first column of the first row as text.
  std::string RawQuery(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(
        sqlite3_open_v2(db_path().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
        SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    std::string out;
    int rc = sqlite3_step(st);
    EXPECT_TRUE(rc == SQLITE_ROW || rc == SQLITE_DONE) << sqlite3_errmsg(db);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  TempDir dir_;
  DeterministicRandom random_{42};
};

TEST_F(SqliteStoreTest, SchemaVersionAfterOpenIsLatest) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_GE(SqliteStore::LatestSchemaVersion(), 1);
  auto v = store->SchemaVersion();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, SqliteStore::LatestSchemaVersion());
}

TEST_F(SqliteStoreTest, ReopenKeepsSchemaVersionAndData) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Import(*store, 0, 3);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), SqliteStore::LatestSchemaVersion());
  // Each migration was applied once.
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(SqliteStore::LatestSchemaVersion()));
  for (int i = 0; i < 3; ++i) {
    auto r = store->GetSubscriber(Imsi(i));
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
    auto plain = OpenBox(kKek, r->sealed_keys, ToBytes(Imsi(i)));
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(*plain, PlainKeys(i));
  }
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefused) {
  { ASSERT_NE(OpenStore(), nullptr); }
  RawQuery(
      "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)");
  auto store = SqliteStore::Open(db_path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SqliteStoreTest, GetUnknownSubscriberIsNotFound) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetSubscriber(Imsi(1)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, ImportDuplicateWithinImportIsAlreadyExists) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto import = store->BeginImport();
  ASSERT_TRUE(import.ok());
  ASSERT_TRUE((*import)->Add(MakeSubscriber(1, random_)).ok());
  absl::Status dup = (*import)->Add(MakeSubscriber(1, random_));
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;
}

TEST_F(SqliteStoreTest, ImportDuplicateOfStoredImsiIsAlreadyExists) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  auto import = store->BeginImport();
  ASSERT_TRUE(import.ok());
  ASSERT_TRUE((*import)->Add(MakeSubscriber(2, random_)).ok());
  absl::Status dup = (*import)->Add(MakeSubscriber(1, random_));
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;
  import->reset();  // give up: rolls back subscriber 2 as well
  EXPECT_EQ(store->GetSubscriber(Imsi(2)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->GetSubscriber(Imsi(1)).ok());
}

TEST_F(SqliteStoreTest, ImportDestroyedWithoutCommitLeavesNothing) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  {
    auto import = store->BeginImport();
    ASSERT_TRUE(import.ok());
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE((*import)->Add(MakeSubscriber(i, random_)).ok());
    }
    // Not visible before Commit either.
    EXPECT_EQ(store->GetSubscriber(Imsi(0)).status().code(),
              absl::StatusCode::kNotFound);
  }
  int count = 0;
  ASSERT_TRUE(store
                  ->ListSubscribers("",
                                    [&](const SubscriberRecord&) {
                                      ++count;
                                      return true;
                                    })
                  .ok());
  EXPECT_EQ(count, 0);
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM subscribers"), "0");
  // The same IMSIs import cleanly afterwards, and writes still work.
  Import(*store, 0, 100);
  EXPECT_TRUE(store->AdvanceSqn(Imsi(0)).ok());
}

TEST_F(SqliteStoreTest, CommittedImportIsVisibleAtOnce) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto import = store->BeginImport();
  ASSERT_TRUE(import.ok());
  NewSubscriber s = MakeSubscriber(7, random_, "fleet-a");
  s.sqn = {41, 31};
  ASSERT_TRUE((*import)->Add(s).ok());
  auto n = (*import)->Commit();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1u);
  auto r = store->GetSubscriber(Imsi(7));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->group, "fleet-a");
  EXPECT_EQ(r->sqn.seq_he, 41u);
  EXPECT_EQ(r->sqn.next_ind, 31u);
  EXPECT_EQ(r->sealed_keys, s.sealed_keys);
}

TEST_F(SqliteStoreTest, ListSubscribersInImsiOrderByGroup) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto import = store->BeginImport();
  ASSERT_TRUE(import.ok());
  for (int i : {5, 1, 4, 2, 3}) {
    ASSERT_TRUE((*import)
                    ->Add(MakeSubscriber(i, random_, i % 2 ? "odd" : "even"))
                    .ok());
  }
  ASSERT_TRUE((*import)->Commit().ok());

  auto list = [&](const std::string& group, int limit) {
    std::vector<std::string> out;
    EXPECT_TRUE(store
                    ->ListSubscribers(group,
                                      [&](const SubscriberRecord& r) {
                                        out.push_back(r.imsi);
                                        return static_cast<int>(out.size()) <
                                               limit;
                                      })
                    .ok());
    return out;
  };
  EXPECT_EQ(list("", 100), (std::vector<std::string>{Imsi(1), Imsi(2), Imsi(3),
                                                     Imsi(4), Imsi(5)}));
  EXPECT_EQ(list("odd", 100),
            (std::vector<std::string>{Imsi(1), Imsi(3), Imsi(5)}));
  EXPECT_EQ(list("even", 100), (std::vector<std::string>{Imsi(2), Imsi(4)}));
  EXPECT_TRUE(list("none", 100).empty());
  EXPECT_EQ(list("", 2), (std::vector<std::string>{Imsi(1), Imsi(2)}));
}

TEST_F(SqliteStoreTest, AdvanceSqnFollowsNextSqn) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  HeSqnState expected;
  for (int i = 0; i < 70; ++i) {
    const uint64_t want = NextSqn(expected);
    auto m = store->AdvanceSqn(Imsi(1));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->sqn, want) << i;
    EXPECT_EQ(SeqOf(m->sqn), static_cast<uint64_t>(i + 1));   // SEQ increments
    EXPECT_EQ(IndOf(m->sqn), static_cast<uint32_t>(i % 32));  // IND cycles
    EXPECT_EQ(m->status, kStatusActive);
    EXPECT_EQ(m->amf, (Bytes{0x80, 0x00}));
    EXPECT_EQ(m->group, kDefaultGroup);
    EXPECT_EQ(m->device_id, "");
    auto plain = OpenBox(kKek, m->sealed_keys, ToBytes(Imsi(1)));
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(*plain, PlainKeys(1));
  }
  auto r = store->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sqn.seq_he, expected.seq_he);
  EXPECT_EQ(r->sqn.next_ind, expected.next_ind);
  EXPECT_EQ(r->last_sqn, MakeSqn(70, 69 % 32));
}

// Reads run on pooled connections, one per concurrent caller: each sees
// every write committed before it started.
TEST_F(SqliteStoreTest, PooledReadersSeeCommittedWritesFromManyThreads) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 16);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        const std::string imsi = Imsi(1 + 2 * t + i % 2);  // this thread's
        auto m = store->AdvanceSqn(imsi);
        auto r = store->GetSubscriber(imsi);
        if (!m.ok() || !r.ok() || r->last_sqn != m->sqn || r->imsi != imsi) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int n = 1; n <= 16; ++n) {
    auto r = store->GetSubscriber(Imsi(n));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(SeqOf(r->last_sqn), 20u) << n;  // 40 advances over 2 IMSIs
  }
  EXPECT_EQ(store->GetSubscriber(Imsi(17)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, AdvanceSqnStartsFromImportedState) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1, HeSqnState{1000, 31});
  auto m = store->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sqn, MakeSqn(1001, 31));
  m = store->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sqn, MakeSqn(1002, 0));
}

TEST_F(SqliteStoreTest, RestartKeepsSubscribersAndSqn) {
  HeSqnState expected;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Import(*store, 1, 2);
    for (int i = 0; i < 5; ++i) {
      auto m = store->AdvanceSqn(Imsi(1));
      ASSERT_TRUE(m.ok());
      EXPECT_EQ(m->sqn, NextSqn(expected));
    }
  }
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->GetSubscriber(Imsi(2)).ok());
    auto m = store->AdvanceSqn(Imsi(1));
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->sqn, NextSqn(expected));
    EXPECT_EQ(m->sqn, MakeSqn(6, 5));
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto r = store->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sqn.seq_he, 6u);
  EXPECT_EQ(r->sqn.next_ind, 6u);
  EXPECT_EQ(r->last_sqn, MakeSqn(6, 5));
  auto other = store->GetSubscriber(Imsi(2));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->sqn.seq_he, 0u);
}

TEST_F(SqliteStoreTest, AdvanceSqnOnUnknownImsiIsNotFound) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  auto m = store->AdvanceSqn(Imsi(2));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  // The failure did not disturb the batch it was in.
  auto ok = store->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->sqn, MakeSqn(1, 0));
}

TEST_F(SqliteStoreTest, ResyncThenAdvanceYieldsSeqMsPlusOne) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store->AdvanceSqn(Imsi(1)).ok());
  // The SIM has seen SEQ 5000 in slot 7.
  ASSERT_TRUE(store->ResyncSqn(Imsi(1), MakeSqn(5000, 7)).ok());
  auto r = store->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sqn.seq_he, 5000u);
  EXPECT_EQ(r->sqn.next_ind, 3u);  // kept
  auto m = store->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(SeqOf(m->sqn), 5001u);
  EXPECT_EQ(IndOf(m->sqn), 3u);
  EXPECT_EQ(m->sqn, MakeSqn(5001, 3));

  // The resynchronised state survives a restart.
  store.reset();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  m = store->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sqn, MakeSqn(5002, 4));
}

TEST_F(SqliteStoreTest, ResyncOnUnknownImsiIsNotFound) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ResyncSqn(Imsi(9), MakeSqn(10, 0)).code(),
            absl::StatusCode::kNotFound);
}

CertificateRecord Cert(const std::string& serial, const std::string& imsi,
                       const std::string& device, absl::Time issued) {
  CertificateRecord c;
  c.serial = serial;
  c.imsi = imsi;
  c.device_id = device;
  c.not_before = issued;
  c.not_after = issued + absl::Hours(24 * 30);
  c.der = {0x30, 0x82, 0x01, 0x00, static_cast<uint8_t>(serial.size())};
  c.issued_at = issued;
  return c;
}

AuditEvent Event(const std::string& imsi, const std::string& detail,
                 absl::Time at) {
  return {at, imsi, "bootstrap", imsi, "ok", detail};
}

TEST_F(SqliteStoreTest, RecordIssuanceBindsDeviceAndAppendsAudit) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  ASSERT_TRUE(store
                  ->RecordIssuance(Cert("0a01", Imsi(1), "dev-1", t0),
                                   Event(Imsi(1), "serial=0a01", t0))
                  .ok());
  auto r = store->GetSubscriber(Imsi(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->device_id, "dev-1");
  auto m = store->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->device_id, "dev-1");

  // The same device renews.
  const absl::Time t1 = t0 + absl::Hours(1);
  ASSERT_TRUE(store
                  ->RecordIssuance(Cert("0a02", Imsi(1), "dev-1", t1),
                                   Event(Imsi(1), "serial=0a02", t1))
                  .ok());

  auto certs = store->CertificatesOf(Imsi(1));
  ASSERT_TRUE(certs.ok());
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ((*certs)[0].serial, "0a02");  // newest first
  EXPECT_EQ((*certs)[1].serial, "0a01");
  EXPECT_EQ((*certs)[1].device_id, "dev-1");
  EXPECT_EQ((*certs)[1].not_before, t0);
  EXPECT_EQ((*certs)[1].not_after, t0 + absl::Hours(24 * 30));
  EXPECT_EQ((*certs)[1].issued_at, t0);
  EXPECT_EQ((*certs)[1].status, "valid");
  EXPECT_EQ((*certs)[1].der, Cert("0a01", Imsi(1), "dev-1", t0).der);

  auto audit = store->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].reason, "serial=0a01");  // in order of appending
  EXPECT_EQ((*audit)[0].action, "bootstrap");
  EXPECT_EQ((*audit)[0].actor, Imsi(1));
  EXPECT_EQ((*audit)[0].target, Imsi(1));
  EXPECT_EQ((*audit)[0].result, "ok");
  EXPECT_EQ((*audit)[0].at, t0);
  EXPECT_EQ((*audit)[1].reason, "serial=0a02");
}

TEST_F(SqliteStoreTest, RecordIssuanceForOtherDeviceIsRefusedAtomically) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  ASSERT_TRUE(store
                  ->RecordIssuance(Cert("01", Imsi(1), "dev-1", t0),
                                   Event(Imsi(1), "first", t0))
                  .ok());
  absl::Status s = store->RecordIssuance(Cert("02", Imsi(1), "dev-2", t0),
                                         Event(Imsi(1), "second", t0));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(store->GetSubscriber(Imsi(1))->device_id, "dev-1");
  EXPECT_EQ(store->CertificatesOf(Imsi(1))->size(), 1u);
  EXPECT_EQ(store->AuditOf(Imsi(1))->size(), 1u);
}

TEST_F(SqliteStoreTest, RecordIssuanceForUnknownImsiIsFailedPrecondition) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  absl::Status s = store->RecordIssuance(Cert("03", Imsi(2), "dev", t0),
                                         Event(Imsi(2), "x", t0));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(store->CertificatesOf(Imsi(2))->empty());
  EXPECT_TRUE(store->AuditOf(Imsi(2))->empty());
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM certificates"), "0");
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM audit"), "0");
}

TEST_F(SqliteStoreTest, InactiveSubscriberGetsNoSqnAndNoCertificate) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  ASSERT_TRUE(store->AdvanceSqn(Imsi(1)).ok());
  RawQuery("UPDATE subscribers SET status = 'suspended' WHERE imsi = '" +
           Imsi(1) + "'");
  auto m = store->AdvanceSqn(Imsi(1));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->status, "suspended");
  EXPECT_EQ(m->sqn, 0u);
  EXPECT_EQ(store->GetSubscriber(Imsi(1))->sqn.seq_he, 1u);  // not advanced
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(store
                ->RecordIssuance(Cert("04", Imsi(1), "dev", t0),
                                 Event(Imsi(1), "x", t0))
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->GetSubscriber(Imsi(1))->device_id, "");
}

TEST_F(SqliteStoreTest, AppendAuditKeepsOrderPerImsi) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  auto refused = [&](const std::string& imsi, const std::string& reason) {
    return AuditEvent{t0, imsi, "bootstrap", imsi, "refused", reason};
  };
  ASSERT_TRUE(store->AppendAudit(refused(Imsi(1), "a")).ok());
  ASSERT_TRUE(store->AppendAudit(refused(Imsi(2), "b")).ok());
  ASSERT_TRUE(store->AppendAudit(refused(Imsi(1), "c")).ok());
  auto audit = store->AuditOf(Imsi(1));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].reason, "a");
  EXPECT_EQ((*audit)[1].reason, "c");
  EXPECT_EQ((*audit)[1].action, "bootstrap");
  EXPECT_EQ((*audit)[1].result, "refused");
}

TEST_F(SqliteStoreTest, GroupCommitConcurrentAdvanceSqn) {
  constexpr int kSubscribers = 16;
  constexpr int kThreads = 16;
  constexpr int kPerThread = 50;
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 0, kSubscribers);

  std::mutex mu;
  std::map<std::string, std::vector<uint64_t>> seen;
  std::vector<absl::Status> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int j = 0; j < kPerThread; ++j) {
        // Every thread touches every subscriber; each subscriber gets 50.
        const std::string imsi = Imsi((t + j) % kSubscribers);
        auto m = store->AdvanceSqn(imsi);
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
    auto r = store->GetSubscriber(imsi);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->sqn.seq_he, static_cast<uint64_t>(per_subscriber));
    EXPECT_EQ(r->sqn.next_ind, static_cast<uint32_t>(per_subscriber % 32));
  }
}

TEST_F(SqliteStoreTest, JournalModeIsWalAndSynchronousFull) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  // journal_mode=WAL is persistent: any connection sees it.
  EXPECT_EQ(RawQuery("PRAGMA journal_mode"), "wal");
  EXPECT_TRUE(fs::exists(db_path() + "-wal"));
  // synchronous is per connection; check the helper every store connection
  // is opened with.
  auto conn = SqliteConnection::Open(db_path());
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto st = (*conn)->Prepare("PRAGMA synchronous");
  ASSERT_TRUE(st.ok());
  ASSERT_EQ((*st)->Step(), SQLITE_ROW);
  EXPECT_EQ((*st)->Int(0), 2);  // FULL
  auto jm = (*conn)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(jm.ok());
  ASSERT_EQ((*jm)->Step(), SQLITE_ROW);
  EXPECT_EQ((*jm)->Text(0), "wal");
  auto fk = (*conn)->Prepare("PRAGMA foreign_keys");
  ASSERT_TRUE(fk.ok());
  ASSERT_EQ((*fk)->Step(), SQLITE_ROW);
  EXPECT_EQ((*fk)->Int(0), 1);
}

// Reads every file of the store (database, WAL, shared memory).
std::string ReadStoreFiles(const std::string& dir) {
  std::string all;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in),
               std::istreambuf_iterator<char>());
  }
  return all;
}

bool Contains(const std::string& haystack, const Bytes& needle) {
  return haystack.find(ToString(needle)) != std::string::npos;
}

TEST_F(SqliteStoreTest, StoreNeverContainsPlaintextKeys) {
  const Bytes k = *HexDecode("465b5ce8b199b49faa5f0a2ee238a6bc");
  const Bytes opc = *HexDecode("cd63cb71954a9f4e48a5994e37a02baf");
  Bytes plain = k;
  plain.insert(plain.end(), opc.begin(), opc.end());
  NewSubscriber s = MakeSubscriber(1, random_);
  s.sealed_keys = SealBox(kKek, plain, ToBytes(s.imsi), random_);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    auto import = store->BeginImport();
    ASSERT_TRUE(import.ok());
    ASSERT_TRUE((*import)->Add(s).ok());
    ASSERT_TRUE((*import)->Commit().ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(store->AdvanceSqn(s.imsi).ok());

    // While open (data possibly still in the WAL).
    const std::string open_bytes = ReadStoreFiles(dir_.path());
    EXPECT_TRUE(Contains(open_bytes, s.sealed_keys));  // the search works
    EXPECT_FALSE(Contains(open_bytes, k));
    EXPECT_FALSE(Contains(open_bytes, opc));
    EXPECT_FALSE(Contains(open_bytes, ToBytes(HexEncode(k))));
    EXPECT_FALSE(Contains(open_bytes, ToBytes(HexEncode(opc))));
  }
  // After close (checkpointed into the main file).
  const std::string bytes = ReadStoreFiles(dir_.path());
  EXPECT_TRUE(Contains(bytes, s.sealed_keys));
  EXPECT_FALSE(Contains(bytes, k));
  EXPECT_FALSE(Contains(bytes, opc));
  EXPECT_FALSE(Contains(bytes, Bytes(k.begin(), k.begin() + 8)));
  EXPECT_FALSE(Contains(bytes, ToBytes(HexEncode(k))));
  EXPECT_FALSE(Contains(bytes, ToBytes(HexEncode(opc))));
}

}  // namespace
}  // namespace simprov

namespace simprov {
namespace {

constexpr absl::Time kTokenT0 = absl::FromUnixSeconds(1'800'000'000);

// Records certificate `serial` for Imsi(1), as a bootstrap does.
void RecordCertificateOfFirst(SqliteStore& store, const std::string& serial) {
  ASSERT_TRUE(store
                  .RecordIssuance(Cert(serial, Imsi(1), "dev-1", kTokenT0),
                                  Event(Imsi(1), "", kTokenT0))
                  .ok());
}

// Token subjects are remembered between writes (for the token issuance rate);
// every change that matters must be seen by the very next read.
TEST_F(SqliteStoreTest, TokenSubjectFollowsEveryChangeAtTheNextRead) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 2);
  const absl::Time t0 = kTokenT0;
  RecordCertificateOfFirst(*store, "0b01");
  auto subject = [&] {
    auto s = store->GetTokenSubject("0b01");
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : Store::TokenSubject{};
  };
  EXPECT_EQ(subject().status, kStatusActive);
  EXPECT_EQ(subject().cert_status, "valid");  // a second read: remembered

  // An audit append commits too: the subject is read again, unchanged.
  ASSERT_TRUE(store->AppendAudit(Event(Imsi(1), "x", t0)).ok());
  ASSERT_TRUE(store->FlushAudit().ok());
  EXPECT_EQ(subject().group, "default");

  ASSERT_TRUE(
      store->PutGroups({{"fleet-a", "{}", t0}}, Event(Imsi(1), "", t0)).ok());
  EXPECT_EQ(subject().group, "default");
  ASSERT_TRUE(
      store->SetSubscriberGroup(Imsi(1), "fleet-a", Event(Imsi(1), "", t0))
          .ok());
  EXPECT_EQ(subject().group, "fleet-a");
  ASSERT_TRUE(store->SetImei(Imsi(1), "490154203237518", false).ok());
  EXPECT_EQ(subject().imei, "490154203237518");
  ASSERT_TRUE(store
                  ->SetSubscriberStatus(Imsi(1), {kStatusActive},
                                        kStatusSuspended, "",
                                        Event(Imsi(1), "", t0))
                  .ok());
  EXPECT_EQ(subject().status, kStatusSuspended);
  ASSERT_TRUE(store
                  ->SetSubscriberStatus(Imsi(1), {kStatusSuspended},
                                        kStatusActive, "",
                                        Event(Imsi(1), "", t0))
                  .ok());
  EXPECT_EQ(subject().status, kStatusActive);
  RevocationRequest revoke;
  revoke.serial = "0b01";
  revoke.reason = "keyCompromise";
  revoke.at = t0;
  ASSERT_TRUE(store->RevokeCertificates(revoke, Event(Imsi(1), "", t0)).ok());
  EXPECT_EQ(subject().cert_status, "revoked");

  // A commit by another connection (here: not even through the store).
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "UPDATE subscribers SET status = 'terminated'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(other);
  EXPECT_EQ(subject().status, "terminated");
  EXPECT_EQ(store->GetTokenSubject("0b02").status().code(),
            absl::StatusCode::kNotFound);
}

// Readers on many threads while writes go on: once a write has returned,
// no thread reads the state from before it.
TEST_F(SqliteStoreTest, TokenSubjectNeverStaleAfterAWriteReturns) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  RecordCertificateOfFirst(*store, "0c01");
  // Write i sets the IMEI to 490154200000000 + i and then publishes i: a
  // reader that saw i before its read must read write i or a later one.
  std::atomic<int> published{0};
  std::atomic<bool> stop{false};
  std::atomic<int> stale{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        const int before = published.load();
        auto s = store->GetTokenSubject("0c01");
        ++reads;
        const int seen = !s.ok()           ? -1
                         : s->imei.empty() ? 0
                                           : std::stoi(s->imei.substr(9));
        if (seen < before) ++stale;
      }
    });
  }
  for (int i = 1; i <= 60; ++i) {
    ASSERT_TRUE(
        store->SetImei(Imsi(1), absl::StrCat(490154200000000 + i), false).ok());
    published.store(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(stale.load(), 0);
  EXPECT_GT(reads.load(), 60);
  EXPECT_EQ(store->GetTokenSubject("0c01")->imei, "490154200000060");
}

}  // namespace
}  // namespace simprov
