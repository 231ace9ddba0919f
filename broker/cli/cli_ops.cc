// simprov backup | keys rotate-kek (docs/operations.md).
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "broker/cli/cli_common.h"
#include "broker/ops/backup.h"
#include "common/clock.h"
#include "common/exit_codes.h"
#include "simprov/v1/ops.grpc.pb.h"

namespace simprov {
namespace {

int Backup(const CliContext& g, const std::string& file) {
  if (g.data_dir.empty()) {
    return Fail(absl::InvalidArgumentError(
        "backup reads the data dir: give --data-dir DIR"));
  }
  umask(077);
  auto r = CreateBackup(g.data_dir, file, Clock::Real());
  if (!r.ok()) return Fail(r.status());
  std::cout << "backed up " << g.data_dir << " to " << file << ": "
            << r->entries << " files, " << r->bytes << " bytes, KEK "
            << (r->kek_included ? "included" : "not included (--kek-file)")
            << "\n";
  if (!r->kek_included) {
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
      "Back up the data dir (store, CA, keys; the KEK when it lives there) "
      "to FILE while the broker serves");
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
