// `simprov backup` as a client of Ops.Backup: the real CLI binary against a
// scripted broker on a Unix socket, so that every way the stream can go
// wrong (a damaged or short archive, a missing end, the broker's error
// midway, a refusal, a broken connection) can be produced on demand. The
// CLI writes FILE only when the whole archive arrived and checks out; on
// every failure neither FILE nor its temporary is left.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <filesystem>
#include <future>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "common/exit_codes.h"
#include "simprov/v1/ops.grpc.pb.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::WriteFileOrDie;

// What the scripted broker does with one Backup call.
struct Script {
  bool refuse = false;       // PermissionDenied, before anything
  bool announce = true;      // sends the "started" initial metadata
  std::string archive;       // sent in 64 KiB pieces
  size_t send_bytes = 0;     // of `archive` actually sent (all by default)
  bool send_done = true;     // the closing BackupDone
  std::string done_sha256;   // overrides the true SHA-256
  uint64_t done_size = 0;    // overrides the true size when non-zero
  bool kek_included = true;  //
  bool data_after_done = false;
  bool hang_after_data = false;  // waits until the call is cancelled
  grpc::Status status = grpc::Status::OK;
};

class ScriptedOps final : public v1::Ops::Service {
 public:
  explicit ScriptedOps(Script script) : script_(std::move(script)) {}

  grpc::Status Backup(grpc::ServerContext* ctx, const v1::BackupRequest*,
                      grpc::ServerWriter<v1::BackupChunk>* writer) override {
    if (script_.refuse) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          "permission denied: viewer-bob (viewer) may not "
                          "call Ops.Backup, which needs role admin");
    }
    if (script_.announce) {
      ctx->AddInitialMetadata("simprov-backup-started", "1");
      writer->SendInitialMetadata();
    }
    const std::string sent = script_.archive.substr(
        0,
        script_.send_bytes == 0 ? script_.archive.size() : script_.send_bytes);
    v1::BackupChunk chunk;
    for (size_t at = 0; at < sent.size(); at += 64 << 10) {
      chunk.set_data(sent.substr(at, 64 << 10));
      if (!writer->Write(chunk)) return grpc::Status::CANCELLED;
    }
    if (script_.hang_after_data) {
      data_sent_.Notify();
      while (!ctx->IsCancelled()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      return grpc::Status::CANCELLED;
    }
    if (script_.send_done) {
      v1::BackupDone* done = chunk.mutable_done();
      done->set_entries(7);
      done->set_bytes(1234);
      done->set_kek_included(script_.kek_included);
      done->set_archive_size(script_.done_size != 0 ? script_.done_size
                                                    : script_.archive.size());
      done->set_sha256(script_.done_sha256.empty()
                           ? HexEncode(Sha256(script_.archive))
                           : script_.done_sha256);
      done->set_data_dir("/var/lib/simprov");
      writer->Write(chunk);
    }
    if (script_.data_after_done) {
      chunk.set_data("more");
      writer->Write(chunk);
    }
    return script_.status;
  }

  absl::Notification data_sent_;

 private:
  const Script script_;
};

class BackupClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    std::filesystem::create_directories(dir_ + "/out");
    file_ = dir_ + "/out/backup.tar";
    // 200 KiB that is not all one byte: four messages, the last short.
    for (int i = 0; i < 200 * 1024; ++i) {
      archive_.push_back(static_cast<char>((i * 7919) >> 3));
    }
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    RemoveTree(dir_);
  }

  void Serve(Script script) {
    ops_ = std::make_unique<ScriptedOps>(std::move(script));
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_ + "/admin.sock",
                             grpc::InsecureServerCredentials());
    builder.RegisterService(ops_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  ProcessResult Backup() {
    return RunProcess({testing::kCliBin, "--admin-socket", dir_ + "/admin.sock",
                       "backup", file_});
  }
  std::vector<std::string> OutFiles() {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/out")) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }
  // The failure left nothing: no FILE, no temporary.
  void ExpectNothingWritten() { EXPECT_TRUE(OutFiles().empty()); }

  std::string dir_, file_, archive_;
  std::unique_ptr<ScriptedOps> ops_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(BackupClientTest, AWholeArchiveIsWrittenPrivatelyUnderItsName) {
  Script s;
  s.archive = archive_;
  Serve(s);
  ProcessResult r = Backup();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "backed up /var/lib/simprov to " + file_ +
                       ": 7 files, 1234 bytes, KEK included\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(ReadFileOrEmpty(file_), archive_);
  struct stat st;
  ASSERT_EQ(stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(OutFiles(), std::vector<std::string>{"backup.tar"});
}

TEST_F(BackupClientTest, WithoutTheKekItSaysSoOnStderr) {
  Script s;
  s.archive = archive_;
  s.kek_included = false;
  Serve(s);
  ProcessResult r = Backup();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::EndsWith(r.out, "KEK not included (--kek-file)\n"))
      << r.out;
  EXPECT_EQ(r.err,
            "simprov: this backup does not hold the KEK; keep the --kek-file "
            "safe separately: restore needs it\n");
}

TEST_F(BackupClientTest, AChecksumMismatchWritesNothing) {
  Script s;
  s.archive = archive_;
  s.done_sha256 = HexEncode(Sha256("something else"));
  Serve(s);
  ProcessResult r = Backup();
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.err,
            absl::StrCat(
                "simprov: the backup arrived damaged (", archive_.size(),
                " bytes with SHA-256 ", HexEncode(Sha256(archive_)),
                "; the broker sent ", archive_.size(), " bytes with SHA-256 ",
                HexEncode(Sha256("something else")), "); nothing written\n"));
  EXPECT_EQ(r.out, "");
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, AShortArchiveWritesNothingAndKeepsTheOldFile) {
  WriteFileOrDie(file_, "last week's backup");
  Script s;
  s.archive = archive_;
  s.send_bytes = 100 * 1024;  // the end message says 200 KiB
  Serve(s);
  ProcessResult r = Backup();
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_TRUE(absl::StartsWith(
      r.err, absl::StrCat("simprov: the backup arrived damaged (", 100 * 1024,
                          " bytes with SHA-256 ")))
      << r.err;
  EXPECT_EQ(ReadFileOrEmpty(file_), "last week's backup");
  EXPECT_EQ(OutFiles(), std::vector<std::string>{"backup.tar"});
}

TEST_F(BackupClientTest, AStreamWithoutItsEndWritesNothing) {
  Script s;
  s.archive = archive_;
  s.send_done = false;
  Serve(s);
  ProcessResult r = Backup();
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.err,
            "simprov: the backup stream ended before the broker completed "
            "it; nothing written\n");
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, DataAfterTheEndWritesNothing) {
  Script s;
  s.archive = archive_;
  s.data_after_done = true;
  Serve(s);
  ProcessResult r = Backup();
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.err,
            "simprov: the broker sent more after the end of the backup; "
            "nothing written\n");
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, TheBrokersErrorMidwayIsReportedAsItsOwn) {
  Script s;
  s.archive = archive_;
  s.send_bytes = 64 << 10;
  s.send_done = false;
  s.status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "/var/lib/simprov/ca.pem changed during the "
                          "backup; retry");
  Serve(s);
  ProcessResult r = Backup();
  // Not "cannot reach the broker": the broker answered.
  EXPECT_EQ(r.exit_code, kExitUnreachable);
  EXPECT_EQ(r.err,
            "simprov: /var/lib/simprov/ca.pem changed during the backup; "
            "retry\n");
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, AnInternalErrorAfterDataWritesNothing) {
  Script s;
  s.archive = archive_;
  s.send_bytes = 128 << 10;
  s.send_done = false;
  s.status = grpc::Status(grpc::StatusCode::INTERNAL, "disk on fire");
  Serve(s);
  ProcessResult r = Backup();
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.err, "simprov: disk on fire\n");
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, ARefusalWritesNothing) {
  Script s;
  s.refuse = true;
  Serve(s);
  ProcessResult r = Backup();
  EXPECT_EQ(r.exit_code, kExitRefused);
  EXPECT_EQ(r.err,
            "simprov: permission denied: viewer-bob (viewer) may not call "
            "Ops.Backup, which needs role admin\n");
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, AConnectionCutMidwayWritesNothing) {
  Script s;
  s.archive = archive_;
  s.send_bytes = 64 << 10;
  s.hang_after_data = true;
  Serve(s);
  auto result = std::async(std::launch::async, [this] { return Backup(); });
  ASSERT_TRUE(
      ops_->data_sent_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // The broker goes away with the call in flight.
  server_->Shutdown(std::chrono::system_clock::now());
  server_.reset();
  ProcessResult r = result.get();
  EXPECT_EQ(r.exit_code, kExitUnreachable) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.err, "simprov: ")) << r.err;
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, NoBrokerAtTheSocket) {
  ProcessResult r = Backup();
  EXPECT_EQ(r.exit_code, kExitUnreachable);
  EXPECT_EQ(r.err, "simprov: cannot reach the broker's admin API at " + dir_ +
                       "/admin.sock (is simprov-broker running with this "
                       "--data-dir?)\n");
  ExpectNothingWritten();
}

TEST_F(BackupClientTest, AFileThatCannotBeCreatedAsksNothing) {
  Script s;
  s.archive = archive_;
  Serve(s);
  file_ = dir_ + "/missing/backup.tar";
  ProcessResult r = Backup();
  // A missing directory is bad input, as for every file simprov writes.
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_TRUE(
      absl::StartsWith(r.err, "simprov: cannot create " + file_ + ".tmp."))
      << r.err;
  EXPECT_TRUE(absl::EndsWith(r.err, ": No such file or directory\n")) << r.err;
}

}  // namespace
}  // namespace simprov
