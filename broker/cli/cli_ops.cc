// simprov backup | keys rotate-kek (docs/operations.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "broker/cli/cli_common.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "simprov/v1/ops.grpc.pb.h"

namespace simprov {
namespace {

// The initial metadata Ops.Backup sends once it has authorized the caller
// (proto/simprov/v1/ops.proto).
constexpr char kBackupStartedMetadata[] = "simprov-backup-started";

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

absl::Status WriteAll(int fd, const std::string& data,
                      const std::string& path) {
  const char* p = data.data();
  size_t n = data.size();
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Errno("cannot write", path);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// Receives the archive of Ops.Backup into `fd` (the file `tmp`), checks
// its size and SHA-256 against the broker's last message, and fsyncs it.
absl::StatusOr<v1::BackupDone> ReceiveBackup(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& where,
    int fd, const std::string& tmp) {
  auto stub = v1::Ops::NewStub(channel);
  grpc::ClientContext ctx;
  // A large store takes a while to snapshot and send; leave room.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(1));
  auto reader = stub->Backup(&ctx, v1::BackupRequest());
  Sha256Hasher sha;
  uint64_t size = 0;
  std::optional<v1::BackupDone> done;
  absl::Status s;
  v1::BackupChunk chunk;
  while (s.ok() && reader->Read(&chunk)) {
    if (done) {
      s = absl::DataLossError(
          "the broker sent more after the end of the backup; nothing "
          "written");
    } else if (chunk.has_done()) {
      done = chunk.done();
    } else if (chunk.part_case() == v1::BackupChunk::kData) {
      const std::string& data = chunk.data();
      sha.Update(data);
      size += data.size();
      s = WriteAll(fd, data, tmp);
    } else {
      s = absl::DataLossError(
          "the broker sent an empty backup message; nothing written");
    }
  }
  if (!s.ok()) ctx.TryCancel();
  grpc::Status st = reader->Finish();
  if (!s.ok()) return s;
  if (!st.ok()) {
    // Once the broker has taken the call, UNAVAILABLE is its own answer
    // (e.g. a file changed during the backup), not an unreachable broker.
    const bool answered =
        ctx.GetServerInitialMetadata().count(kBackupStartedMetadata) > 0;
    return answered ? FromGrpcStatus(st) : Explain(st, where);
  }
  if (!done) {
    return absl::DataLossError(
        "the backup stream ended before the broker completed it; nothing "
        "written");
  }
  const std::string got = HexEncode(sha.Final());
  if (size != done->archive_size() || got != done->sha256()) {
    return absl::DataLossError(absl::StrCat(
        "the backup arrived damaged (", size, " bytes with SHA-256 ", got,
        "; the broker sent ", done->archive_size(), " bytes with SHA-256 ",
        done->sha256(), "); nothing written"));
  }
  if (fsync(fd) != 0) return Errno("cannot fsync", tmp);
  return *done;
}

int Backup(const CliContext& g, const std::string& file) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  // The archive holds the CA keys (and maybe the KEK): private from the
  // first byte, and only ever complete under its name.
  umask(077);
  const std::string tmp = absl::StrCat(file, ".tmp.", getpid());
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(),
                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Fail(Errno("cannot create", tmp));
  fchmod(fd, 0600);
  auto done = ReceiveBackup(*channel, where, fd, tmp);
  if (close(fd) != 0 && done.ok()) done = Errno("cannot close", tmp);
  if (done.ok() && rename(tmp.c_str(), file.c_str()) != 0) {
    done = Errno("cannot rename to", file);
  }
  if (!done.ok()) {
    unlink(tmp.c_str());
    return Fail(done.status());
  }
  if (absl::Status s = FsyncDirectory(DirName(file)); !s.ok()) return Fail(s);
  std::cout << "backed up " << done->data_dir() << " to " << file << ": "
            << done->entries() << " files, " << done->bytes() << " bytes, KEK "
            << (done->kek_included() ? "included" : "not included (--kek-file)")
            << "\n";
  if (!done->kek_included()) {
    std::cerr << "simprov: this backup does not hold the KEK; keep the "
                 "--kek-file safe separately: restore needs it\n";
  }
  return kExitOk;
}

int RotateKek(const CliContext& g) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::Ops::NewStub(*channel);
  grpc::ClientContext ctx;
  // A million rows take seconds; leave room.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(1));
  v1::RotateKekRequest req;
  v1::RotateKekResponse resp;
  grpc::Status st = stub->RotateKek(&ctx, req, &resp);
  if (!st.ok()) return Fail(Explain(st, where));
  std::cout << (resp.resumed() ? "finished the KEK rotation in progress: "
                               : "rotated the KEK: ")
            << resp.rewrapped() << " of " << resp.rows()
            << " sealed keys re-wrapped; new KEK in " << resp.kek_path()
            << "\n";
  return kExitOk;
}

}  // namespace

void AddOpsCommands(CLI::App& app, CliContext& ctx) {
  auto file = std::make_shared<std::string>();
  auto* backup = app.add_subcommand(
      "backup",
      "Have the broker back up its data dir (store, CA, keys; the KEK when "
      "it lives there) while it serves, and write the archive to FILE");
  backup->add_option("FILE", *file, "Archive to write (0600, atomic)")
      ->required();
  backup->callback([&ctx, file] { ctx.rc = Backup(ctx, *file); });

  auto* keys = app.add_subcommand("keys", "Keys at rest");
  keys->require_subcommand(1);
  auto* rotate = keys->add_subcommand(
      "rotate-kek",
      "Re-wrap every sealed subscriber key under a new random KEK while the "
      "broker serves");
  rotate->callback([&ctx] { ctx.rc = RotateKek(ctx); });
}

}  // namespace simprov
