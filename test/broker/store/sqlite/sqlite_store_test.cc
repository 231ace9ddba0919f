// What only the SQLite store does: schema migrations, WAL mode, pooled
// readers, the token subject cache keyed on the WAL change counter, and
// what its files hold. What every store does is in the conformance suite
// (sqlite_conformance_test.cc).
#include "broker/store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_db.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/sealed_box.h"
#include "test/broker/store/store_test_util.h"

namespace simprov {
namespace {

namespace fs = std::filesystem;

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::string db_path() const { return dir_.path() + "/store.db"; }

  std::unique_ptr<SqliteStore> OpenStore() {
    auto store = SqliteStore::Open(db_path());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  // Imports subscribers first..first+count-1 in one committed import.
  void Import(SqliteStore& store, int first, int count) {
    auto import = store.BeginImport();
    ASSERT_TRUE(import.ok()) << import.status();
    for (int i = first; i < first + count; ++i) {
      ASSERT_TRUE((*import)->Add(MakeSubscriber(i, random_)).ok()) << i;
    }
    auto committed = (*import)->Commit();
    ASSERT_TRUE(committed.ok()) << committed.status();
    EXPECT_EQ(*committed, static_cast<uint64_t>(count));
  }

  // Runs SQL on a separate, plain sqlite3 connection and returns the first
  // column of the first row as text.
  std::string RawQuery(const std::string& sql) {
    return RawQueryOn(db_path(), sql);
  }
  static std::string RawQueryOn(const std::string& path,
                                const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(
        sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
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
  // (Every field read back: the conformance suite.)
  for (int i = 0; i < 3; ++i) {
    auto r = store->GetSubscriber(Imsi(i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->imsi, Imsi(i));
  }
}

// The migration that records certificate hashes (a token's cnf names its
// certificate by one) hashes the certificates issued before it. Each
// migration appended after it must be undone here as well.
TEST_F(SqliteStoreTest, CertificateHashMigrationHashesEarlierCertificates) {
  constexpr int kCertificateHashMigration = 6;
  constexpr int kSharedStateMigration = 7;
  ASSERT_EQ(SqliteStore::LatestSchemaVersion(), kSharedStateMigration);
  CertificateRecord cert = Cert("0e01", Imsi(1), "dev-1", kT0);
  cert.der = {0x30, 0x03, 0x02, 0x01, 0x0e};
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Import(*store, 1, 1);
    ASSERT_TRUE(store->RecordIssuance(cert, Event(Imsi(1), "", kT0)).ok());
  }
  // The store as the previous schema left it.
  for (const char* undo :
       {"DROP TABLE sessions", "DROP TABLE rate_limits", "DROP TABLE leases",
        "DROP TABLE admin_revocations",
        "ALTER TABLE registry_outbox DROP COLUMN lease_holder",
        "ALTER TABLE registry_outbox DROP COLUMN lease_expires_ms"}) {
    RawQuery(undo);
  }
  RawQuery("DROP TABLE certificate_sha256");
  RawQuery(absl::StrCat("DELETE FROM schema_migrations WHERE version >= ",
                        kCertificateHashMigration));
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), kSharedStateMigration);
  auto t = store->GetTokenSubjectByCertHash(Sha256(cert.der));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->serial, "0e01");
  EXPECT_EQ(t->imsi, Imsi(1));
  EXPECT_EQ(t->cert_status, "valid");
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefused) {
  { ASSERT_NE(OpenStore(), nullptr); }
  RawQuery(
      "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)");
  auto store = SqliteStore::Open(db_path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
}

// Rolled-back writes leave no row in the file, not only none the store
// shows.
TEST_F(SqliteStoreTest, RolledBackWritesLeaveNoRows) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  {
    auto import = store->BeginImport();
    ASSERT_TRUE(import.ok());
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE((*import)->Add(MakeSubscriber(i, random_)).ok());
    }
  }
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM subscribers"), "0");
  Import(*store, 1, 1);
  absl::Status s = store->RecordIssuance(Cert("03", Imsi(2), "dev", kT0),
                                         Event(Imsi(2), "x", kT0));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM certificates"), "0");
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM audit"), "0");
}

// PutGroups is one transaction: a group that fails to be written (here a
// trigger refuses it) takes the others with it.
TEST_F(SqliteStoreTest, PutGroupsIsAllOrNothing) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  RawQuery(
      "CREATE TRIGGER refuse_bad BEFORE INSERT ON groups WHEN NEW.name = "
      "'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END");
  absl::Status s = store->PutGroups(
      {{"good", "{}", kT0}, {"bad", "{}", kT0}},
      AuditEvent{kT0, "local", "group-apply", "good", "ok", ""});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(store->GetGroup("good").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM groups"), "0");
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM audit"), "0");
  EXPECT_TRUE(store
                  ->PutGroups({{"good", "{}", kT0}},
                              {kT0, "local", "group-apply", "good", "ok", ""})
                  .ok());
  EXPECT_TRUE(store->GetGroup("good").ok());
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

// A snapshot is one database file in rollback-journal mode: nothing beside
// it is needed to read it.
TEST_F(SqliteStoreTest, SnapshotIsASelfContainedFile) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 2);
  const std::string path = dir_.path() + "/snapshot.db";
  ASSERT_TRUE(store->Snapshot(path).ok());
  EXPECT_FALSE(fs::exists(path + "-wal"));
  EXPECT_FALSE(fs::exists(path + "-shm"));
  EXPECT_EQ(RawQueryOn(path, "PRAGMA journal_mode"), "delete");
  EXPECT_EQ(RawQueryOn(path, "SELECT COUNT(*) FROM subscribers"), "2");
  EXPECT_EQ(RawQueryOn(path, "SELECT MAX(version) FROM schema_migrations"),
            std::to_string(SqliteStore::LatestSchemaVersion()));
}

// An open connection keeps reading a deleted file: Ping checks the path.
TEST_F(SqliteStoreTest, PingFailsWhenTheFileIsGone) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Ping().ok());
  fs::rename(db_path(), db_path() + ".moved");
  EXPECT_EQ(store->Ping().code(), absl::StatusCode::kUnavailable);
  fs::rename(db_path() + ".moved", db_path());
  EXPECT_TRUE(store->Ping().ok());
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
  s.sealed_keys = SealBox(kTestKek, plain, ToBytes(s.imsi), random_);
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

// Token subjects are remembered until the WAL change counter moves, which
// every commit does, whoever makes it: here a connection that is not even
// the store's. (Every change through the store: the conformance suite.)
TEST_F(SqliteStoreTest, TokenSubjectFollowsACommitByAnotherConnection) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  ASSERT_TRUE(store
                  ->RecordIssuance(Cert("0b01", Imsi(1), "dev-1", kT0),
                                   Event(Imsi(1), "", kT0))
                  .ok());
  EXPECT_EQ(store->GetTokenSubject("0b01")->status, kStatusActive);
  EXPECT_EQ(store->GetTokenSubject("0b01")->status, kStatusActive);  // cached
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "UPDATE subscribers SET status = 'terminated'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(other);
  EXPECT_EQ(store->GetTokenSubject("0b01")->status, "terminated");
  EXPECT_EQ(store->GetTokenSubject("0b02").status().code(),
            absl::StatusCode::kNotFound);
}

// Readers on many threads while writes go on: once a write has returned,
// no thread reads the state from before it.
TEST_F(SqliteStoreTest, TokenSubjectNeverStaleAfterAWriteReturns) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  ASSERT_TRUE(store
                  ->RecordIssuance(Cert("0c01", Imsi(1), "dev-1", kT0),
                                   Event(Imsi(1), "", kT0))
                  .ok());
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

// AdvanceSqn for an unknown or suspended IMSI must cost what it costs for an
// active one: the same number of pages committed to the WAL (a commit that
// wrote nothing skips the disk, which a timing attacker can see). And it
// changes nothing.
TEST_F(SqliteStoreTest, AdvanceSqnWritesAsMuchForUnknownAndInactiveImsis) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 2);
  ASSERT_TRUE(
      store
          ->SetSubscriberStatus(Imsi(2), {kStatusActive}, kStatusSuspended, "",
                                {kT0, "admin", "suspend", Imsi(2), "ok", ""})
          .ok());
  ASSERT_TRUE(store->AuditOf(Imsi(2)).ok());  // flushes queued audit
  const std::string crl_number =
      RawQuery("SELECT crl_number FROM crl_state WHERE id = 1");
  const std::string suspended_sqn = RawQuery(absl::StrCat(
      "SELECT sqn_seq FROM subscribers WHERE imsi = '", Imsi(2), "'"));
  const std::string wal = db_path() + "-wal";
  auto wal_growth = [&](const std::string& imsi) {
    const auto before = fs::file_size(wal);
    (void)store->AdvanceSqn(imsi);
    return fs::file_size(wal) - before;
  };
  for (int round = 0; round < 3; ++round) {
    const auto active = wal_growth(Imsi(1));
    EXPECT_GT(active, 0u);
    EXPECT_EQ(wal_growth(Imsi(2)), active) << "suspended, round " << round;
    EXPECT_EQ(wal_growth(Imsi(99)), active) << "unknown, round " << round;
  }
  EXPECT_EQ(store->AdvanceSqn(Imsi(99)).status().code(),
            absl::StatusCode::kNotFound);
  auto suspended = store->AdvanceSqn(Imsi(2));
  ASSERT_TRUE(suspended.ok()) << suspended.status();
  EXPECT_EQ(suspended->status, kStatusSuspended);
  EXPECT_EQ(suspended->amf, (Bytes{0x80, 0x00}));
  EXPECT_EQ(RawQuery("SELECT crl_number FROM crl_state WHERE id = 1"),
            crl_number);
  EXPECT_EQ(
      RawQuery(absl::StrCat("SELECT sqn_seq FROM subscribers WHERE imsi = '",
                            Imsi(2), "'")),
      suspended_sqn);
}

// The lineage migration (5) on a store that has certificates: each valid
// certificate older than its subscriber's newest is marked superseded when
// its successor was issued (insertion order breaks a tie); revoked ones
// and each subscriber's newest are not.
TEST_F(SqliteStoreTest, LineageMigrationSupersedesOlderValidCertificates) {
  const absl::Time t0 = kT0;
  const absl::Time t1 = kT0 + absl::Hours(1);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Import(*store, 0, 2);
    auto issue = [&](const std::string& serial, int n, absl::Time at) {
      ASSERT_TRUE(store
                      ->RecordIssuance(Cert(serial, Imsi(n), "dev", at),
                                       Event(Imsi(n), serial, at))
                      .ok());
    };
    issue("0e00", 0, t0 - absl::Hours(1));
    RevocationRequest r;
    r.serial = "0e00";
    r.reason = "keyCompromise";
    r.at = t0;
    ASSERT_TRUE(
        store->RevokeCertificates(r, AdminEvent("revoke", "", t0)).ok());
    issue("0e01", 0, t0);
    issue("0e02", 0, t1);
    issue("0e03", 0, t1);  // same second, recorded later: the newest
    issue("0e04", 1, t0);
  }
  // Back to the schema before the migration (its columns and indexes gone,
  // and the later migrations' tables and columns).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP INDEX certificates_renewed_from;"
                         "DROP INDEX certificates_superseded;"
                         "ALTER TABLE certificates DROP COLUMN renewed_from;"
                         "ALTER TABLE certificates DROP COLUMN superseded_at;"
                         "DROP TABLE certificate_sha256;"
                         "DROP TABLE sessions; DROP TABLE rate_limits;"
                         "DROP TABLE leases; DROP TABLE admin_revocations;"
                         "ALTER TABLE registry_outbox DROP COLUMN lease_holder;"
                         "ALTER TABLE registry_outbox DROP COLUMN "
                         "lease_expires_ms;"
                         "DELETE FROM schema_migrations WHERE version >= 5;",
                         nullptr, nullptr, &err),
            SQLITE_OK)
      << err;
  sqlite3_close(db);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto superseded = [&](const std::string& serial) {
    return store->GetCertificate(serial)->superseded_at;
  };
  EXPECT_EQ(superseded("0e00"), absl::UnixEpoch());  // revoked
  EXPECT_EQ(superseded("0e01"), t1);
  EXPECT_EQ(superseded("0e02"), t1);
  EXPECT_EQ(superseded("0e03"), absl::UnixEpoch());
  EXPECT_EQ(superseded("0e04"), absl::UnixEpoch());
  EXPECT_EQ(store->GetCertificate("0e01")->renewed_from, "");
}

}  // namespace
}  // namespace simprov
