// PostgreSQL-specific behaviour of the store: SQN advances from several
// connections at once, concurrent migrations, a newer schema refused,
// losing and regaining the server, and what the logs may show of a
// connection string.
#include "broker/store/postgres/postgres_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "common/sqn.h"
#include "test/broker/store/store_test_util.h"
#include "test/testing/postgres_server.h"

namespace simprov {
namespace {

using testing::PostgresServer;

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PostgresServer& server = PostgresServer::Shared();
    ASSERT_TRUE(server.ok()) << server.status();
    auto db = server.CreateDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *db;
  }
  PostgresStore::ConnectOptions Options() const {
    return {PostgresServer::Shared().Uri(db_)};
  }
  std::unique_ptr<PostgresStore> OpenStore() {
    auto store = PostgresStore::Open(Options(), clock_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  void Import(Store& store, int first, int count) {
    auto import = store.BeginImport();
    ASSERT_TRUE(import.ok()) << import.status();
    for (int i = first; i < first + count; ++i) {
      ASSERT_TRUE((*import)->Add(MakeSubscriber(i, random_)).ok());
    }
    ASSERT_TRUE((*import)->Commit().ok());
  }

  std::string db_;
  FakeClock clock_{kT0};
  DeterministicRandom random_{7};
};

TEST_F(PostgresStoreTest, ConcurrentAdvancesOfOneImsiNeverRepeat) {
  // Each thread has a store of its own (its own connections), as brokers
  // on several machines do.
  constexpr int kThreads = 6;
  constexpr int kEach = 30;
  std::vector<std::unique_ptr<PostgresStore>> stores;
  for (int t = 0; t < kThreads; ++t) {
    stores.push_back(OpenStore());
    ASSERT_NE(stores.back(), nullptr);
  }
  Import(*stores[0], 1, 1);
  std::vector<std::vector<uint64_t>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto m = stores[t]->AdvanceSqn(Imsi(1));
        ASSERT_TRUE(m.ok()) << m.status();
        seen[t].push_back(m->sqn);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<uint64_t> all;
  std::set<uint64_t> seqs;
  for (const auto& mine : seen) {
    ASSERT_EQ(mine.size(), static_cast<size_t>(kEach));
    // Each caller's SQNs go up (SEQ strictly increasing).
    for (size_t i = 1; i < mine.size(); ++i) {
      EXPECT_GT(SeqOf(mine[i]), SeqOf(mine[i - 1]));
    }
    for (uint64_t sqn : mine) {
      all.insert(sqn);
      seqs.insert(SeqOf(sqn));
    }
  }
  // No SQN (nor SEQ) handed out twice; the stored state is the last one.
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(seqs.size(), static_cast<size_t>(kThreads * kEach));
  auto s = stores[0]->GetSubscriber(Imsi(1));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->sqn.seq_he, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(SeqOf(s->last_sqn), *seqs.rbegin());
}

TEST_F(PostgresStoreTest, BrokersStartingTogetherMigrateOnce) {
  constexpr int kStores = 4;
  std::vector<absl::StatusOr<std::unique_ptr<PostgresStore>>> opened(kStores);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStores; ++i) {
    threads.emplace_back(
        [&, i] { opened[i] = PostgresStore::Open(Options(), clock_); });
  }
  for (std::thread& t : threads) t.join();
  for (auto& s : opened) {
    ASSERT_TRUE(s.ok()) << s.status();
    auto v = (*s)->SchemaVersion();
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, PostgresStore::LatestSchemaVersion());
  }
  ASSERT_TRUE(
      PostgresServer::Shared()
          .Exec(db_, absl::StrCat("DO $$ BEGIN IF (SELECT COUNT(*) FROM "
                                  "schema_version) <> ",
                                  PostgresStore::LatestSchemaVersion(),
                                  " THEN RAISE EXCEPTION 'migrated "
                                  "twice'; END IF; END $$"))
          .ok());
}

TEST_F(PostgresStoreTest, NewerSchemaIsRefused) {
  ASSERT_NE(OpenStore(), nullptr);
  ASSERT_TRUE(PostgresServer::Shared()
                  .Exec(db_,
                        "INSERT INTO schema_version (version, applied_at) "
                        "VALUES (999, 0)")
                  .ok());
  auto store = PostgresStore::Open(Options(), clock_);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("newer than this broker"),
            std::string::npos)
      << store.status();
}

TEST_F(PostgresStoreTest, ValuesAreBoundNotSpliced) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Import(*store, 1, 1);
  const std::string hostile = "x'); DROP TABLE subscribers; --";
  EXPECT_EQ(store->GetSubscriber(hostile).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(store->SetImei(Imsi(1), hostile, false).ok());
  auto s = store->GetSubscriber(Imsi(1));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->imei, hostile);
  // Bytes with NULs and every value survive as bytea.
  Bytes all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  ASSERT_TRUE(store->CreateTokenApp("bytes", all, kT0).ok());
  EXPECT_EQ(*store->TokenAppKeyHash("bytes"), all);
}

TEST(PostgresStoreConnection, LostServerIsUnavailableAndTheNextCallReconnects) {
  PostgresServer server;  // its own: this test stops it
  ASSERT_TRUE(server.Start().ok()) << server.status();
  auto db = server.CreateDatabase();
  ASSERT_TRUE(db.ok()) << db.status();
  FakeClock clock{kT0};
  auto store = PostgresStore::Open({server.Uri(*db)}, clock);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Ping().ok());
  ASSERT_TRUE((*store)->NextCrlNumber().ok());

  ASSERT_TRUE(server.Stop().ok());
  EXPECT_EQ((*store)->Ping().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*store)->NextCrlNumber().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*store)->GetSubscriber(Imsi(1)).status().code(),
            absl::StatusCode::kUnavailable);

  ASSERT_TRUE(server.Start().ok()) << server.status();
  EXPECT_TRUE((*store)->Ping().ok());
  auto n = (*store)->NextCrlNumber();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);  // the first survived the restart
  // A store opened while the server is down fails with Unavailable.
  ASSERT_TRUE(server.Stop().ok());
  EXPECT_EQ(PostgresStore::Open({server.Uri(*db)}, clock).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(PostgresConnInfo, PasswordsAreRedacted) {
  EXPECT_EQ(pg::RedactConnInfo("postgresql://simprov:s3cret@db:5432/simprov"),
            "postgresql://simprov@db:5432/simprov");
  EXPECT_EQ(pg::RedactConnInfo(
                "postgres://db/simprov?sslmode=verify-full&password=s3cret"),
            "postgres://db/simprov?sslmode=verify-full");
  EXPECT_EQ(pg::RedactConnInfo("postgresql://db/simprov?password=s3cret"),
            "postgresql://db/simprov");
  EXPECT_EQ(pg::RedactConnInfo("host=db password='s 3cret' dbname=simprov"),
            "host=db dbname=simprov");
  EXPECT_EQ(pg::RedactConnInfo("postgresql://u@db/x"), "postgresql://u@db/x");
}

}  // namespace
}  // namespace simprov
