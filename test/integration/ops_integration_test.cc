// Operating the broker, end to end with the real binaries: health and
// metrics on --http-listen, online backup (local and over remote admin)
// and restore (with the KEK in the data dir or in --kek-file), and KEK
// rotation under load.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/keys/kek_rotation.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/sealed_box.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

std::string Imsi(int n) { return absl::StrCat(1010000100000LL + n); }

// Runs agent bootstraps of `sims` round-robin (each into a fresh dir)
// until stopped; counts successes and failures.
class BootstrapLoad {
 public:
  BootstrapLoad(const BrokerProcess& broker, std::vector<std::string> sims,
                std::string dir)
      : broker_(broker), sims_(std::move(sims)), dir_(std::move(dir)) {
    thread_ = std::thread([this] {
      for (int i = 0; !stop_; ++i) {
        ProcessResult r = broker_.Bootstrap(sims_[i % sims_.size()],
                                            absl::StrCat(dir_, "/load-", i));
        (r.exit_code == 0 ? ok_ : failed_)++;
        if (r.exit_code != 0) last_error_ = r.err;
      }
    });
  }
  // Waits for at least `n` successes (or a failure).
  void WaitFor(int n) {
    while (ok_ < n && failed_ == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~BootstrapLoad() { Stop(); }
  int ok() const { return ok_; }
  int failed() const { return failed_; }
  std::string last_error_;

 private:
  const BrokerProcess& broker_;
  std::vector<std::string> sims_;
  std::string dir_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::thread thread_;
};

class OpsIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }

  // `n` SIMs imported into `broker`; returns their soft-SIM paths.
  std::vector<std::string> ImportSims(const BrokerProcess& broker, int n,
                                      int first = 0) {
    std::vector<TestSim> sims;
    std::vector<std::string> paths;
    for (int i = first; i < first + n; ++i) {
      sims.push_back(RandomSim(Imsi(i)));
      std::filesystem::create_directories(absl::StrCat(dir_, "/sims/", i));
      paths.push_back(
          WriteSoftSim(absl::StrCat(dir_, "/sims/", i), sims.back()));
    }
    broker.Import(sims);
    return paths;
  }

  int SubscriberCount(const BrokerProcess& broker) {
    ProcessResult r = broker.Cli({"subscribers", "list", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    int n = 0;
    for (char c : r.out) n += c == '\n';
    return n;
  }

  std::string dir_;
};

std::string Get(const std::string& data_dir, const std::string& path,
                int* status = nullptr) {
  auto hp = ParseHostPort(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(data_dir + "/http-address")));
  if (!hp.ok()) return "";
  httplib::Client client(hp->host, hp->port);
  auto r = client.Get(path);
  if (!r) return "";
  if (status) *status = r->status;
  return r->body;
}

TEST_F(OpsIntegrationTest, HealthReadinessAndMetricsAnswerAndCountersMove) {
  // A registry nobody answers at: registrations wait in the outbox.
  auto broker = BrokerProcess::Start(
      dir_ + "/broker", {"--http-listen", "127.0.0.1:0", "--registry",
                         "mosquitto://admin:secret@127.0.0.1:1"});
  ASSERT_NE(broker, nullptr);
  const std::string dd = broker->data_dir();
  int status = 0;
  EXPECT_EQ(Get(dd, "/healthz", &status), "ok\n");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(Get(dd, "/readyz", &status), "ready\n");
  EXPECT_EQ(status, 200);
  std::string m = Get(dd, "/metrics", &status);
  EXPECT_EQ(status, 200);
  EXPECT_TRUE(absl::StrContains(
      m,
      "# HELP simprov_bootstraps_total Bootstrap (enrol) attempts after a "
      "challenge, by result\n# TYPE simprov_bootstraps_total counter\n"
      "simprov_bootstraps_total{result=\"ok\"} 0\n"))
      << m;
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_kek_rotation_in_progress 0\n"));
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_outbox_depth 0\n")) << m;
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_outbox_oldest_age_seconds 0\n"));

  std::vector<std::string> sims = ImportSims(*broker, 1);
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(sims[0], out).exit_code, 0);
  ProcessResult renew = RunProcess({testing::kAgentBin, "renew", "--broker",
                                    broker->address(), "--out", out});
  ASSERT_EQ(renew.exit_code, 0) << renew.err;
  // An unknown IMSI gets a decoy and is refused.
  TestSim stranger = RandomSim("001019999999999");
  std::filesystem::create_directories(dir_ + "/stranger");
  EXPECT_EQ(broker
                ->Bootstrap(WriteSoftSim(dir_ + "/stranger", stranger),
                            dir_ + "/stranger-out")
                .exit_code,
            kExitRefused);

  m = Get(dd, "/metrics");
  for (const char* line : {
           "simprov_bootstraps_total{result=\"ok\"} 1\n",
           "simprov_renewals_total{result=\"ok\"} 1\n",
           "simprov_challenge_failures_total{reason=\"unknown_imsi\"} 1\n",
           "# TYPE simprov_store_write_seconds histogram\n",
           "simprov_store_write_seconds_bucket{le=\"+Inf\"} ",
       }) {
    EXPECT_TRUE(absl::StrContains(m, line)) << line << "\n" << m;
  }
  EXPECT_FALSE(absl::StrContains(m, "simprov_store_write_seconds_count 0\n"));
  // Both certificates (bootstrap, renewal) wait for the unreachable
  // registry.
  EXPECT_TRUE(absl::StrContains(m, "\nsimprov_outbox_depth 2\n")) << m;
  EXPECT_FALSE(absl::StrContains(m, "\nsimprov_outbox_oldest_age_seconds 0\n"));
}

TEST_F(OpsIntegrationTest, ReadinessFailsWhenTheStoreIsGone) {
  auto broker =
      BrokerProcess::Start(dir_ + "/broker", {"--http-listen", "127.0.0.1:0"});
  ASSERT_NE(broker, nullptr);
  // The store's file disappears under the broker (a lost volume).
  const std::string db = broker->data_dir() + "/simprov.db";
  ASSERT_EQ(rename(db.c_str(), (db + ".moved").c_str()), 0);
  int status = 0;
  std::string body = Get(broker->data_dir(), "/readyz", &status);
  EXPECT_EQ(status, 503);
  EXPECT_EQ(body, "store unreachable: " + db + " is missing\n");
  ASSERT_EQ(rename((db + ".moved").c_str(), db.c_str()), 0);
  EXPECT_EQ(Get(broker->data_dir(), "/readyz", &status), "ready\n");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(Get(broker->data_dir(), "/healthz", &status), "ok\n");
  EXPECT_EQ(status, 200);
}

TEST_F(OpsIntegrationTest, BackupUnderLoadRestoresAndTheDeviceRenews) {
  auto broker = BrokerProcess::Start(dir_ + "/broker");
  ASSERT_NE(broker, nullptr);
  std::vector<std::string> sims = ImportSims(*broker, 30);
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(sims[0], out).exit_code, 0);

  const std::string backup = dir_ + "/backup.tar";
  {
    BootstrapLoad load(*broker,
                       std::vector<std::string>(sims.begin() + 1, sims.end()),
                       dir_ + "/load");
    load.WaitFor(2);
    ProcessResult r = broker->Cli({"backup", backup});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(absl::StartsWith(r.out, "backed up " + broker->data_dir()))
        << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, "KEK included\n")) << r.out;
    load.WaitFor(load.ok() + 2);
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.last_error_;
  }
  struct stat st;
  ASSERT_EQ(stat(backup.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A plain ustar archive with a manifest, without runtime files.
  // (tar is Essential: on every Debian system.)
  ProcessResult tar = RunProcess({"/usr/bin/tar", "tf", backup});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  EXPECT_TRUE(absl::StrContains(tar.out, "simprov.db\n")) << tar.out;
  EXPECT_TRUE(absl::StrContains(tar.out, "kek\n"));
  EXPECT_TRUE(absl::StrContains(tar.out, "ca.pem\n"));
  EXPECT_TRUE(absl::StrContains(tar.out, "tokens/keys.json\n"));
  EXPECT_TRUE(absl::StrContains(tar.out, "admin-ca/ca.pem\n"));
  EXPECT_TRUE(absl::EndsWith(tar.out, "MANIFEST.json\n"));
  EXPECT_FALSE(absl::StrContains(tar.out, "listen-address"));
  EXPECT_FALSE(absl::StrContains(tar.out, "admin.sock"));
  EXPECT_FALSE(absl::StrContains(tar.out, "-wal"));
  ASSERT_EQ(broker->Stop(), 0);

  const std::string restored = dir_ + "/restored";
  ProcessResult r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", restored, backup});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "restored ")) << r.out;
  EXPECT_TRUE(absl::EndsWith(r.out, " into " + restored + "\n")) << r.out;
  ASSERT_EQ(stat(restored.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The admin CA comes back too: admin certificates stay valid.
  for (const char* f :
       {"admin-ca/ca.pem", "admin-ca/ca/issuing.key", "ca.pem"}) {
    const std::string before = ReadFileOrEmpty(broker->data_dir() + "/" + f);
    EXPECT_FALSE(before.empty()) << f;
    EXPECT_EQ(ReadFileOrEmpty(restored + "/" + f), before) << f;
  }

  auto again = BrokerProcess::Start(restored);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(SubscriberCount(*again), 30);
  r = RunProcess({testing::kAgentBin, "renew", "--broker", again->address(),
                  "--out", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // And a SIM of the original bootstraps on the restored broker.
  EXPECT_EQ(again->Bootstrap(sims[1], dir_ + "/fresh").exit_code, 0);
}

TEST_F(OpsIntegrationTest, RestoreRefusesANonEmptyDirAndATamperedBackup) {
  auto broker = BrokerProcess::Start(dir_ + "/broker");
  ASSERT_NE(broker, nullptr);
  ImportSims(*broker, 3);
  const std::string backup = dir_ + "/backup.tar";
  ASSERT_EQ(broker->Cli({"backup", backup}).exit_code, 0);

  // Non-empty target.
  const std::string busy = dir_ + "/busy";
  std::filesystem::create_directories(busy);
  WriteFileOrDie(busy + "/something", "x");
  ProcessResult r =
      RunProcess({testing::kBrokerBin, "restore", "--data-dir", busy, backup});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err, "simprov-broker: " + busy +
                       " is not empty; restore needs a new or empty "
                       "directory\n");
  EXPECT_EQ(ReadFileOrEmpty(busy + "/something"), "x");

  // One flipped byte in the middle of the store entry.
  std::string bytes = ReadFileOrEmpty(backup);
  const std::string tampered = dir_ + "/tampered.tar";
  bytes[512 + 4096 + 7] ^= 0x01;
  WriteFileOrDie(tampered, bytes);
  const std::string target = dir_ + "/target";
  r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", target, tampered});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err,
            "simprov-broker: checksum mismatch for simprov.db: the backup is "
            "corrupt\n");
  EXPECT_FALSE(PathExists(target));
  // Nothing left behind next to it either.
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_FALSE(absl::StrContains(e.path().string(), ".restore.tmp."))
        << e.path();
  }

  // Truncated.
  WriteFileOrDie(tampered, ReadFileOrEmpty(backup).substr(0, 3000));
  r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", target, tampered});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err, "simprov-broker: the backup is truncated\n");
  EXPECT_FALSE(PathExists(target));

  // Not a backup at all.
  WriteFileOrDie(tampered, std::string(2048, 'z'));
  r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", target, tampered});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "is not a simprov backup")) << r.err;

  // An empty existing directory is fine.
  std::filesystem::create_directories(target);
  r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", target, backup});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(PathExists(target + "/simprov.db"));
  EXPECT_TRUE(PathExists(target + "/kek"));
}

TEST_F(OpsIntegrationTest, KekFileOutsideTheDataDirBackupSaysSoRestoreAsks) {
  const std::string kek = dir_ + "/secrets/kek";
  std::filesystem::create_directories(dir_ + "/secrets");
  auto broker = BrokerProcess::Start(dir_ + "/broker", {"--kek-file", kek});
  ASSERT_NE(broker, nullptr);
  EXPECT_TRUE(PathExists(kek));
  EXPECT_FALSE(PathExists(broker->data_dir() + "/kek"));
  std::vector<std::string> sims = ImportSims(*broker, 2);
  const std::string out = dir_ + "/device";
  ASSERT_EQ(broker->Bootstrap(sims[0], out).exit_code, 0);

  const std::string backup = dir_ + "/backup.tar";
  ProcessResult r = broker->Cli({"backup", backup});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::EndsWith(r.out, "KEK not included (--kek-file)\n"))
      << r.out;
  ASSERT_EQ(broker->Stop(), 0);

  const std::string target = dir_ + "/restored";
  r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", target, backup});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err,
            "simprov-broker: this backup does not include the KEK (the broker "
            "ran with --kek-file); give it with --kek-file FILE\n");
  EXPECT_FALSE(PathExists(target));

  const std::string wrong = dir_ + "/wrong-kek";
  WriteFileOrDie(wrong, std::string(64, 'a') + "\n");
  r = RunProcess({testing::kBrokerBin, "restore", "--data-dir", target, backup,
                  "--kek-file", wrong});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err, "simprov-broker: the KEK in " + wrong +
                       " does not open the backup's sealed keys (wrong "
                       "KEK?)\n");
  EXPECT_FALSE(PathExists(target));

  r = RunProcess({testing::kBrokerBin, "restore", "--data-dir", target, backup,
                  "--kek-file", kek});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(PathExists(target + "/kek"));
  auto again = BrokerProcess::Start(target, {"--kek-file", kek});
  ASSERT_NE(again, nullptr);
  r = RunProcess({testing::kAgentBin, "renew", "--broker", again->address(),
                  "--out", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(again->Bootstrap(sims[1], dir_ + "/second").exit_code, 0);
  ASSERT_EQ(again->Stop(), 0);

  // A broker on a data dir with sealed keys refuses a missing --kek-file.
  r = RunProcess({testing::kBrokerBin, "--data-dir", target, "--listen",
                  "127.0.0.1:0", "--kek-file", dir_ + "/nope"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(
      absl::StrContains(r.err, "--kek-file " + dir_ + "/nope does not exist"))
      << r.err;
}

// The files in `dir` whose name starts with `prefix`.
std::vector<std::string> FilesLike(const std::string& dir,
                                   const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (absl::StartsWith(name, prefix)) out.push_back(name);
  }
  return out;
}

// One integer from `sql` on the SQLite file `db` (-1 on error).
int64_t QueryInt(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  int64_t v = -1;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return v;
}

std::string QueryText(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  std::string v;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return v;
}

// `simprov --admin HOST:PORT --admin-cert DIR backup FILE`: the broker
// takes the backup and streams it; only the admin role may.
class RemoteBackupTest : public OpsIntegrationTest {
 protected:
  void SetUp() override {
    OpsIntegrationTest::SetUp();
    // The broker's temporary directory, to see that it cleans up.
    const char* old = std::getenv("TMPDIR");
    if (old != nullptr) old_tmpdir_ = old;
    broker_tmp_ = dir_ + "/broker-tmp";
    std::filesystem::create_directories(broker_tmp_);
    setenv("TMPDIR", broker_tmp_.c_str(), 1);
    broker_ = BrokerProcess::Start(dir_ + "/broker",
                                   {"--admin-listen", "127.0.0.1:0"});
    ASSERT_NE(broker_, nullptr);
    admin_ = std::string(absl::StripAsciiWhitespace(
        ReadFileOrEmpty(broker_->data_dir() + "/admin-address")));
    ASSERT_FALSE(admin_.empty());
    for (const char* role : {"viewer", "operator", "admin"}) {
      ProcessResult r =
          broker_->Cli({"admin", "issue-cert", "--role", role, "--out",
                        Certs(role), "--name", std::string(role) + "-bob"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    std::filesystem::create_directories(dir_ + "/out");
  }
  void TearDown() override {
    if (old_tmpdir_) {
      setenv("TMPDIR", old_tmpdir_->c_str(), 1);
    } else {
      unsetenv("TMPDIR");
    }
    OpsIntegrationTest::TearDown();
  }
  std::string Certs(const std::string& role) { return dir_ + "/certs-" + role; }
  ProcessResult RemoteBackup(const std::string& role, const std::string& file) {
    return RunProcess({testing::kCliBin, "--admin", admin_, "--admin-cert",
                       Certs(role), "backup", file});
  }
  std::unique_ptr<BrokerProcess> broker_;
  std::string admin_;
  std::string broker_tmp_;
  std::optional<std::string> old_tmpdir_;
};

TEST_F(RemoteBackupTest, AdminBacksUpUnderLoadAndTheArchiveRestores) {
  std::vector<std::string> sims = ImportSims(*broker_, 30);
  const std::string device = dir_ + "/device";
  ASSERT_EQ(broker_->Bootstrap(sims[0], device).exit_code, 0);

  const std::string backup = dir_ + "/out/remote.tar";
  int ok_before = 0, started_after = 0;
  {
    BootstrapLoad load(*broker_,
                       std::vector<std::string>(sims.begin() + 1, sims.end()),
                       dir_ + "/load");
    load.WaitFor(3);
    ok_before = load.ok();
    ProcessResult r = RemoteBackup("admin", backup);
    // Every bootstrap that can be in the archive has started by now.
    started_after = load.ok() + load.failed() + 1;
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(absl::StartsWith(
        r.out, "backed up " + broker_->data_dir() + " to " + backup + ": "))
        << r.out;
    EXPECT_TRUE(absl::EndsWith(r.out, " bytes, KEK included\n")) << r.out;
    EXPECT_EQ(r.err, "");
    load.WaitFor(load.ok() + 2);
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.last_error_;
  }
  struct stat st;
  ASSERT_EQ(stat(backup.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(FilesLike(dir_ + "/out", ""),
            std::vector<std::string>{"remote.tar"});
  ProcessResult tar = RunProcess({"/usr/bin/tar", "tf", backup});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  EXPECT_TRUE(absl::StartsWith(tar.out, "simprov.db\n")) << tar.out;
  EXPECT_TRUE(absl::StrContains(tar.out, "\nkek\n")) << tar.out;
  EXPECT_TRUE(absl::EndsWith(tar.out, "\nMANIFEST.json\n")) << tar.out;
  EXPECT_FALSE(absl::StrContains(tar.out, "admin-address")) << tar.out;
  EXPECT_FALSE(absl::StrContains(tar.out, "-wal")) << tar.out;
  // The broker built the archive in a temporary directory and removed it.
  EXPECT_TRUE(FilesLike(broker_tmp_, "").empty());
  // The audit names who took the archive.
  ProcessResult audit = broker_->Cli({"audit", "--json"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  bool audited = false;
  for (absl::string_view line : absl::StrSplit(audit.out, '\n')) {
    if (absl::StrContains(line, "\"action\":\"backup\"")) {
      audited = true;
      EXPECT_TRUE(absl::StrContains(line, "admin-bob")) << line;
      EXPECT_TRUE(absl::StrContains(line, "\"result\":\"ok\"")) << line;
      EXPECT_TRUE(absl::StrContains(line, "KEK included")) << line;
    }
  }
  EXPECT_TRUE(audited) << audit.out;
  ASSERT_EQ(broker_->Stop(), 0);

  const std::string restored = dir_ + "/restored";
  ProcessResult r = RunProcess(
      {testing::kBrokerBin, "restore", "--data-dir", restored, backup});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // One consistent snapshot taken while bootstraps committed: an intact
  // database; every certificate's subscriber bound to its device in the
  // same transaction; every bootstrap finished before the backup is in it,
  // none that started after it.
  const std::string db = restored + "/simprov.db";
  EXPECT_EQ(QueryText(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(QueryInt(db, "SELECT COUNT(*) FROM subscribers"), 30);
  EXPECT_EQ(QueryInt(db,
                     "SELECT COUNT(*) FROM certificates c JOIN subscribers s "
                     "ON c.imsi = s.imsi WHERE s.device_id != c.device_id"),
            0);
  const int64_t certs = QueryInt(db, "SELECT COUNT(*) FROM certificates");
  EXPECT_GE(certs, 1 + ok_before);
  EXPECT_LE(certs, 1 + started_after);

  auto again = BrokerProcess::Start(restored);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(SubscriberCount(*again), 30);
  r = RunProcess({testing::kAgentBin, "renew", "--broker", again->address(),
                  "--out", device});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(RemoteBackupTest, ViewerAndOperatorAreRefusedAndNothingIsWritten) {
  ImportSims(*broker_, 2);
  const std::string backup = dir_ + "/out/refused.tar";
  for (const char* role : {"viewer", "operator"}) {
    ProcessResult r = RemoteBackup(role, backup);
    EXPECT_EQ(r.exit_code, kExitRefused) << role << ": " << r.err;
    EXPECT_TRUE(absl::StartsWith(
        r.err, absl::StrCat("simprov: permission denied: ", role, "-bob")))
        << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "Ops.Backup")) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(FilesLike(dir_ + "/out", "").empty()) << role;
    EXPECT_TRUE(FilesLike(broker_tmp_, "").empty()) << role;
  }
  // A file already there stays as it was.
  WriteFileOrDie(backup, "older backup");
  EXPECT_EQ(RemoteBackup("viewer", backup).exit_code, kExitRefused);
  EXPECT_EQ(ReadFileOrEmpty(backup), "older backup");
  EXPECT_EQ(FilesLike(dir_ + "/out", ""),
            std::vector<std::string>{"refused.tar"});
  // The admin may, and replaces it.
  ProcessResult r = RemoteBackup("admin", backup);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(ReadFileOrEmpty(backup), "older backup");
  EXPECT_EQ(FilesLike(dir_ + "/out", ""),
            std::vector<std::string>{"refused.tar"});
  EXPECT_TRUE(FilesLike(broker_tmp_, "").empty());
}

TEST_F(RemoteBackupTest, AnUnreachableBrokerLeavesNoFile) {
  const std::string backup = dir_ + "/out/none.tar";
  ASSERT_EQ(broker_->Stop(), 0);
  ProcessResult r = RemoteBackup("admin", backup);
  EXPECT_EQ(r.exit_code, kExitUnreachable) << r.err;
  EXPECT_EQ(r.err, "simprov: cannot reach the broker's remote admin API at " +
                       admin_ +
                       " (is --admin-listen set there, and does --admin-cert "
                       "hold a certificate from its admin CA?)\n");
  EXPECT_TRUE(FilesLike(dir_ + "/out", "").empty());
  // Locally too: the backup goes through the admin socket.
  r = broker_->Cli({"backup", backup});
  EXPECT_EQ(r.exit_code, kExitUnreachable) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "cannot reach the broker's admin API"))
      << r.err;
  EXPECT_TRUE(FilesLike(dir_ + "/out", "").empty());
}

// Opens the first subscriber row of `db` with `kek`.
bool RowOpensUnder(const std::string& db, const Bytes& kek) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(h, "SELECT imsi, sealed_keys FROM subscribers LIMIT 1", -1,
                     &st, nullptr);
  bool ok = false;
  if (sqlite3_step(st) == SQLITE_ROW) {
    std::string imsi(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 1));
    Bytes box(p, p + sqlite3_column_bytes(st, 1));
    ok = OpenBox(kek, box, ToBytes(imsi)).ok();
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return ok;
}

TEST_F(OpsIntegrationTest, RotateKekUnderLoadThenEverySubscriberBootstraps) {
  auto broker = BrokerProcess::Start(dir_ + "/broker");
  ASSERT_NE(broker, nullptr);
  const int kSims = 12;
  std::vector<std::string> sims = ImportSims(*broker, kSims);
  const std::string kek_path = broker->data_dir() + "/kek";
  auto old_kek = ReadKekFile(kek_path);
  ASSERT_TRUE(old_kek.ok());
  {
    BootstrapLoad load(*broker, sims, dir_ + "/load");
    load.WaitFor(2);
    ProcessResult r = broker->Cli({"keys", "rotate-kek"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, absl::StrCat("rotated the KEK: ", kSims, " of ", kSims,
                                  " sealed keys re-wrapped; new KEK in ",
                                  kek_path, "\n"));
    load.WaitFor(load.ok() + 3);
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.last_error_;
  }
  auto new_kek = ReadKekFile(kek_path);
  ASSERT_TRUE(new_kek.ok());
  EXPECT_NE(*new_kek, *old_kek);
  EXPECT_FALSE(PathExists(NextKekPath(kek_path)));
  struct stat st;
  ASSERT_EQ(stat(kek_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string db = broker->data_dir() + "/simprov.db";
  EXPECT_TRUE(RowOpensUnder(db, *new_kek));
  EXPECT_FALSE(RowOpensUnder(db, *old_kek));

  for (int i = 0; i < kSims; ++i) {
    ProcessResult r =
        broker->Bootstrap(sims[i], absl::StrCat(dir_, "/after-", i));
    EXPECT_EQ(r.exit_code, 0) << i << ": " << r.err;
  }
  // The audit names the rotation.
  ProcessResult audit = broker->Cli({"audit", "--json"});
  EXPECT_TRUE(absl::StrContains(audit.out, "rotate-kek")) << audit.out;

  // After a restart the new KEK is the KEK.
  ASSERT_EQ(broker->Stop(), 0);
  auto again = BrokerProcess::Start(dir_ + "/broker");
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->Bootstrap(sims[0], dir_ + "/restarted").exit_code, 0);
}

TEST_F(OpsIntegrationTest, ARotationLeftInProgressIsFinishedAtStart) {
  auto broker = BrokerProcess::Start(dir_ + "/broker");
  ASSERT_NE(broker, nullptr);
  std::vector<std::string> sims = ImportSims(*broker, 3);
  ASSERT_EQ(broker->Stop(), 0);
  // The state a crash right after step 1 leaves: KEKFILE.next written,
  // no row re-wrapped yet.
  const std::string kek_path = broker->data_dir() + "/kek";
  const Bytes next = Random::Real().Generate(kKekSize);
  ASSERT_TRUE(
      WriteFileAtomic(NextKekPath(kek_path), HexEncode(next) + "\n", 0600)
          .ok());
  auto again = BrokerProcess::Start(dir_ + "/broker");
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(absl::StrContains(
      again->log(), "rotate-kek: finishing the rotation in progress"))
      << again->log();
  EXPECT_FALSE(PathExists(NextKekPath(kek_path)));
  EXPECT_EQ(*ReadKekFile(kek_path), next);
  EXPECT_TRUE(RowOpensUnder(again->data_dir() + "/simprov.db", next));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(again->Bootstrap(sims[i], absl::StrCat(dir_, "/d", i)).exit_code,
              0);
  }
}

TEST_F(OpsIntegrationTest, ImportDrawsAProgressBarOnlyOnATerminal) {
  auto broker = BrokerProcess::Start(dir_ + "/broker");
  ASSERT_NE(broker, nullptr);
  std::string csv = "imsi,ki,opc\n";
  for (int i = 0; i < 3000; ++i) {
    TestSim s = RandomSim(Imsi(500 + i));
    absl::StrAppend(&csv, s.imsi, ",", s.k, ",", s.opc, "\n");
  }
  WriteFileOrDie(dir_ + "/a.csv", csv);
  // Not a terminal: stdout's one line, nothing on stderr.
  ProcessResult r = broker->Cli({"subscribers", "import", dir_ + "/a.csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 3000 subscribers\n");
  EXPECT_EQ(r.err, "");
  if (!PathExists("/usr/bin/script")) {
    GTEST_SKIP() << "script(1) is not installed";
  }
  std::string csv2 = "imsi,ki,opc\n";
  for (int i = 0; i < 3000; ++i) {
    TestSim s = RandomSim(Imsi(5000 + i));
    absl::StrAppend(&csv2, s.imsi, ",", s.k, ",", s.opc, "\n");
  }
  WriteFileOrDie(dir_ + "/b.csv", csv2);
  // A terminal (script(1) runs the CLI on a pty).
  r = RunProcess(
      {"/usr/bin/script", "-qec",
       absl::StrCat(testing::kCliBin, " --data-dir ", broker->data_dir(),
                    " subscribers import ", dir_, "/b.csv"),
       "/dev/null"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "100% 3000 rows")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "3000 rows in ")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "imported 3000 subscribers")) << r.out;
}

TEST_F(OpsIntegrationTest, HelpListsTheOperationsCommands) {
  ProcessResult r = RunProcess({testing::kCliBin, "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "backup")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "keys")) << r.out;
  r = RunProcess({testing::kBrokerBin, "restore", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "--kek-file")) << r.out;
  r = RunProcess({testing::kBrokerBin});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(absl::StrContains(r.err, "--data-dir")) << r.err;
  // backup asks the broker: it needs to know where that is.
  r = RunProcess({testing::kCliBin, "backup", dir_ + "/x.tar"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.err,
            "simprov: say where the broker is: --data-dir DIR or "
            "--admin-socket PATH (or SIMPROV_DATA_DIR, SIMPROV_ADMIN_SOCKET, "
            "SIMPROV_ADMIN)\n");
  EXPECT_FALSE(PathExists(dir_ + "/x.tar"));
}

}  // namespace
}  // namespace simprov
