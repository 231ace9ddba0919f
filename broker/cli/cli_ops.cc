// simprov backup | keys rotate-kek (docs/operations.md).

#include <CLI/CLI.hpp>
#include <chrono>
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

// Receives the archive of Ops.Backup into `out` and checks its size and
// SHA-256 against the broker's last message.
absl::StatusOr<v1::BackupDone> ReceiveBackup(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& where,
    AtomicFileWriter& out) {
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
      s = out.Append(data);
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
  return *done;
}

int Backup(const CliContext& g, const std::string& file) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  // The archive holds the CA keys (and maybe the KEK): private from the
  // first byte, and only ever complete under its name.
  auto out = AtomicFileWriter::Create(file, 0600);
  if (!out.ok()) return Fail(out.status());
  auto done = ReceiveBackup(*channel, where, **out);
  if (!done.ok()) return Fail(done.status());
  if (absl::Status s = (*out)->Commit(); !s.ok()) return Fail(s);
  if (g.json) {
    PrintJson({{"data_dir", done->data_dir()},
               {"file", file},
               {"entries", done->entries()},
               {"bytes", done->bytes()},
               {"archive_bytes", done->archive_size()},
               {"sha256", done->sha256()},
               {"kek_included", done->kek_included()}});
  } else {
    std::cout << "backed up " << done->data_dir() << " to " << file << ": "
              << done->entries() << " files, " << done->bytes()
              << " bytes, KEK "
              << (done->kek_included() ? "included"
                                       : "not included (--kek-file)")
              << "\n";
  }
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
  if (g.json) {
    PrintJson({{"resumed", resp.resumed()},
               {"rewrapped", resp.rewrapped()},
               {"rows", resp.rows()},
               {"kek_path", resp.kek_path()}});
    return kExitOk;
  }
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
  AddJsonFlag(backup, ctx);
  backup->callback([&ctx, file] { ctx.rc = Backup(ctx, *file); });

  auto* keys = app.add_subcommand("keys", "Keys at rest");
  keys->require_subcommand(1);
  auto* rotate = keys->add_subcommand(
      "rotate-kek",
      "Re-wrap every sealed subscriber key under a new random KEK while the "
      "broker serves");
  AddJsonFlag(rotate, ctx);
  rotate->callback([&ctx] { ctx.rc = RotateKek(ctx); });
}

}  // namespace simprov
