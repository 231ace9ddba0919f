// simprov: the operator's command line. Talks to the broker's admin API on
// its Unix socket (DIR/admin.sock, or --admin-socket), or remotely over
// mTLS (--admin HOST:PORT --admin-cert DIR). Each group of
// subcommands lives in a cli_*.cc file.
#include <CLI/CLI.hpp>
#include <iostream>

#include "broker/cli/cli_common.h"
#include "common/cli/completion.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "common/version.h"

int main(int argc, char** argv) {
  simprov::RouteGrpcLogging();
  simprov::CliContext ctx;
  CLI::App app{"simprov: operate a simprov broker (subscribers, ...)"};
  app.set_version_flag("--version",
                       std::string("simprov ") + simprov::kVersion);
  app.require_subcommand(1);
  app.add_option(
      "--data-dir", ctx.data_dir,
      "The broker's data directory (its admin socket is DIR/admin.sock; "
      "env SIMPROV_DATA_DIR)");
  app.add_option("--admin-socket", ctx.admin_socket,
                 "Path of the broker's admin socket (overrides --data-dir; "
                 "env SIMPROV_ADMIN_SOCKET)");
  app.add_option("--admin", ctx.admin_address,
                 "Remote admin API HOST:PORT (the broker's --admin-listen; "
                 "env SIMPROV_ADMIN)");
  app.add_option("--admin-cert", ctx.admin_cert_dir,
                 "Directory from `simprov admin issue-cert` (admin.key, "
                 "admin.pem, ca.pem) for --admin (env SIMPROV_ADMIN_CERT)");
  simprov::AddSubscriberCommands(app, ctx);
  simprov::AddFleetCommands(app, ctx);
  simprov::AddTokenCommands(app, ctx);
  simprov::AddRegistryCommands(app, ctx);
  simprov::AddAdminCommands(app, ctx);
  simprov::AddOpsCommands(app, ctx);

  std::string completion_shell;
  CLI::App* completion = simprov::AddCompletionCommand(app, &completion_shell);
  if (simprov::HandleCompletion(app, "simprov", argc, argv)) return 0;

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : simprov::kExitUsage;
  }
  if (completion->parsed()) {
    std::cout << simprov::CompletionScript(app, "simprov", completion_shell);
    return 0;
  }
  return ctx.rc;
}
