// The real simprov-broker on a real PostgreSQL 15 (--store postgresql://):
// subscribers imported with the real `simprov`, a device bootstrapped,
// renewed and given a token by the real simprov-agent, revocation
// enforced, everything landing in the database (no SQLite file); a
// password given by file never reaches the log; and a broker started
// before its database waits for it and then serves.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/exit_codes.h"
#include "test/testing/broker_fixture.h"
#include "test/testing/postgres_server.h"

namespace simprov {
namespace {

using testing::BrokerProcess;
using testing::MakeTempDir;
using testing::PostgresServer;
using testing::ProcessResult;
using testing::RandomSim;
using testing::RemoveTree;
using testing::RunProcess;
using testing::TestSim;
using testing::WriteFileOrDie;
using testing::WriteSoftSim;

constexpr char kImsi[] = "001010000007001";

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

class PostgresBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }

  ProcessResult Agent(const std::string& command, const BrokerProcess& broker,
                      std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        testing::kAgentBin, command, "--broker",
        broker.address(),   "--out", dir_ + "/device"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv);
  }

  std::string dir_;
};

TEST_F(PostgresBrokerTest, DeviceLifecycleOnPostgres) {
  PostgresServer& server = PostgresServer::Shared();
  ASSERT_TRUE(server.ok()) << server.status();
  auto db = server.CreateDatabase();
  ASSERT_TRUE(db.ok()) << db.status();
  // A password by file, and one in the URI (where it shows in ps, but
  // must not in the log); the server trusts the socket, so any password
  // connects.
  const std::string password = "pw-b7f1c2e9d4";
  WriteFileOrDie(dir_ + "/db-password", password + "\n");
  auto broker = BrokerProcess::Start(
      dir_ + "/broker", {"--store", server.Uri(*db) + "&password=" + password,
                         "--store-password-file", dir_ + "/db-password",
                         "--http-listen", "127.0.0.1:0"});
  ASSERT_NE(broker, nullptr);

  TestSim sim = RandomSim(kImsi);
  broker->Import({sim});
  ProcessResult r =
      broker->Bootstrap(WriteSoftSim(dir_, sim), dir_ + "/device");
  ASSERT_EQ(r.exit_code, 0) << r.err << broker->log();
  r = Agent("renew", *broker);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Agent("token", *broker, {"--audience", "billing"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());

  // It is all in PostgreSQL: two certificates (the renewal superseding
  // the bootstrap's), the SQN advanced, the audit trail; no SQLite file.
  EXPECT_EQ(
      *server.QueryValue(*db, absl::StrCat("SELECT COUNT(*) FROM certificates "
                                           "WHERE imsi = '",
                                           kImsi, "'")),
      "2");
  EXPECT_EQ(
      *server.QueryValue(
          *db, "SELECT COUNT(*) FROM certificates WHERE superseded_at > 0"),
      "1");
  EXPECT_EQ(*server.QueryValue(*db, "SELECT sqn_seq > 0 FROM subscribers"),
            "t");
  EXPECT_FALSE(Exists(dir_ + "/broker/simprov.db"));

  r = broker->Cli({"devices", "revoke", kImsi, "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Agent("token", *broker, {"--audience", "billing"});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "was revoked")) << r.err;
  r = Agent("renew", *broker);
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_EQ(*server.QueryValue(*db,
                               "SELECT COUNT(*) FROM certificates WHERE "
                               "status = 'revoked'"),
            "2");
  ProcessResult audit = broker->Cli({"audit", "--imsi", kImsi, "--json"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_TRUE(absl::StrContains(audit.out, "\"action\":\"revoke\""))
      << audit.out;

  EXPECT_EQ(broker->Stop(), 0);
  const std::string log = broker->log();
  EXPECT_TRUE(absl::StrContains(log, "store: PostgreSQL postgresql:///"))
      << log;
  EXPECT_FALSE(absl::StrContains(log, password)) << log;
}

TEST_F(PostgresBrokerTest, BrokerStartedBeforeItsDatabaseWaitsAndServes) {
  PostgresServer server;  // its own, started late
  ASSERT_TRUE(server.Start().ok()) << server.status();
  auto db = server.CreateDatabase();
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE(server.Stop().ok());

  // The broker starts first (Start() waits up to 30 s for it to serve);
  // the server comes 3 s later, from this thread (it dies with the thread
  // that started it).
  std::unique_ptr<BrokerProcess> broker;
  std::thread starting([&] {
    broker =
        BrokerProcess::Start(dir_ + "/broker", {"--store", server.Uri(*db)});
  });
  absl::SleepFor(absl::Seconds(3));
  const absl::Status started = server.Start();
  starting.join();
  ASSERT_TRUE(started.ok()) << started;
  ASSERT_NE(broker, nullptr);
  const std::string log = broker->log();
  EXPECT_TRUE(absl::StrContains(log, "not reachable (attempt 1)")) << log;

  TestSim sim = RandomSim(kImsi);
  broker->Import({sim});
  ProcessResult r =
      broker->Bootstrap(WriteSoftSim(dir_, sim), dir_ + "/device");
  ASSERT_EQ(r.exit_code, 0) << r.err << broker->log();
  EXPECT_EQ(*server.QueryValue(*db, "SELECT COUNT(*) FROM certificates"), "1");
  EXPECT_EQ(broker->Stop(), 0);
}

TEST_F(PostgresBrokerTest, MigrateStoreCopiesSqliteAndTheDeviceRenewsOnIt) {
  PostgresServer& server = PostgresServer::Shared();
  ASSERT_TRUE(server.ok()) << server.status();
  // A SQLite deployment: two SIMs, one bootstrapped.
  const std::string data = dir_ + "/broker";
  auto broker = BrokerProcess::Start(data);
  ASSERT_NE(broker, nullptr);
  TestSim first = RandomSim(kImsi);
  TestSim second = RandomSim("001010000007002");
  broker->Import({first, second});
  ProcessResult r =
      broker->Bootstrap(WriteSoftSim(dir_, first), dir_ + "/device");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(broker->Stop(), 0);

  auto db = server.CreateDatabase();
  ASSERT_TRUE(db.ok()) << db.status();
  r = RunProcess({testing::kBrokerBin, "migrate-store", "--data-dir", data,
                  "--to", server.Uri(*db)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "subscribers rows=2 sha256=")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "certificates rows=1 sha256=")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "migrated 11 tables")) << r.out;
  EXPECT_EQ(*server.QueryValue(*db, "SELECT COUNT(*) FROM subscribers"), "2");

  // Into a database that holds a store already: refused, nothing changes.
  r = RunProcess({testing::kBrokerBin, "migrate-store", "--data-dir", data,
                  "--to", server.Uri(*db)});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "not empty")) << r.err;
  EXPECT_EQ(*server.QueryValue(*db, "SELECT COUNT(*) FROM subscribers"), "2");

  // The same data dir (KEK, CA) on PostgreSQL: the device renews and the
  // other SIM bootstraps (its sealed keys and SQN came along); audit ids
  // continue after the copied ones.
  broker = BrokerProcess::Start(data, {"--store", server.Uri(*db)});
  ASSERT_NE(broker, nullptr);
  r = Agent("renew", *broker);
  ASSERT_EQ(r.exit_code, 0) << r.err << broker->log();
  r = broker->Bootstrap(WriteSoftSim(dir_, second), dir_ + "/device2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*server.QueryValue(*db, "SELECT COUNT(*) FROM certificates"), "3");
  ASSERT_EQ(broker->Stop(), 0);
}

TEST_F(PostgresBrokerTest, MigrateStoreRollsBackWhatDoesNotReadBackTheSame) {
  PostgresServer& server = PostgresServer::Shared();
  ASSERT_TRUE(server.ok()) << server.status();
  auto db = server.CreateDatabase();
  ASSERT_TRUE(db.ok()) << db.status();
  // The target's schema, from an empty store's migration.
  auto empty = BrokerProcess::Start(dir_ + "/empty");
  ASSERT_NE(empty, nullptr);
  ASSERT_EQ(empty->Stop(), 0);
  ProcessResult r =
      RunProcess({testing::kBrokerBin, "migrate-store", "--data-dir",
                  dir_ + "/empty", "--to", server.Uri(*db)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A trigger alters every subscriber written, so what is read back
  // differs from what was read.
  ASSERT_TRUE(
      server
          .Exec(*db,
                "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN NEW.iccid := 'tampered'; RETURN NEW; END $$; "
                "CREATE TRIGGER tamper BEFORE INSERT ON subscribers FOR EACH "
                "ROW EXECUTE FUNCTION tamper()")
          .ok());
  const std::string data = dir_ + "/broker";
  auto broker = BrokerProcess::Start(data);
  ASSERT_NE(broker, nullptr);
  broker->Import({RandomSim(kImsi), RandomSim("001010000007002")});
  ASSERT_EQ(broker->Stop(), 0);
  r = RunProcess({testing::kBrokerBin, "migrate-store", "--data-dir", data,
                  "--to", server.Uri(*db)});
  EXPECT_EQ(r.exit_code, kExitError) << r.err;
  EXPECT_TRUE(
      absl::StrContains(r.err, "table subscribers: read 2 rows (sha256 "))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "nothing copied")) << r.err;
  // All or nothing: not a row, and the CRL counter as it was.
  EXPECT_EQ(*server.QueryValue(*db, "SELECT COUNT(*) FROM subscribers"), "0");
  EXPECT_EQ(*server.QueryValue(*db, "SELECT COUNT(*) FROM audit"), "0");
  EXPECT_EQ(*server.QueryValue(*db, "SELECT COUNT(*) FROM crl_state"), "1");
}

}  // namespace
}  // namespace simprov
