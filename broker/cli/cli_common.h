// Pieces every `simprov` subcommand shares: where the broker's admin API is,
// how a failure becomes one line on stderr and an exit code, and formatting.
// Each group of subcommands lives in its own cli_*.cc and registers itself
// with an Add*Commands function called from simprov_cli.cc.
#ifndef SIMPROV_BROKER_CLI_CLI_COMMON_H_
#define SIMPROV_BROKER_CLI_CLI_COMMON_H_

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace simprov {

struct CliContext {
  std::string data_dir;
  std::string admin_socket;
  // Remote admin (docs/broker.md): --admin HOST:PORT with the certificate
  // directory of `simprov admin issue-cert` (admin.key, admin.pem, ca.pem).
  std::string admin_address;
  std::string admin_cert_dir;
  // --json on the subcommand that ran: one JSON object on stdout instead
  // of text (the schemas are in docs/cli.md, "JSON output").
  bool json = false;
  // Exit code of the subcommand that ran.
  int rc = 0;

  // Reads one environment variable (nullptr when unset).
  using EnvLookup = std::function<const char*(const char*)>;
  // This context with the environment filling what the command line left
  // out: SIMPROV_ADMIN and SIMPROV_ADMIN_CERT (remote), SIMPROV_ADMIN_SOCKET
  // and SIMPROV_DATA_DIR (local). A flag always wins over a variable, and a
  // target named on the command line is never redirected by a variable of the
  // other kind (--data-dir ignores SIMPROV_ADMIN and SIMPROV_ADMIN_SOCKET).
  CliContext WithEnvironment(const EnvLookup& env) const;

  // A channel to the broker's admin API (after WithEnvironment with the
  // process's environment). `where` names it for messages.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(
      std::string* where) const;
};

// Prints "simprov: MESSAGE" on stderr and returns the exit code for `s`.
int Fail(const absl::Status& s);

// Turns an RPC failure into a status whose message says what to do.
absl::Status Explain(const grpc::Status& s, const std::string& where);

// RFC 3339 UTC, e.g. 2026-11-28T04:08:42Z.
std::string FormatTime(int64_t unix_seconds);

// Adds --json to `cmd` (sets ctx.json).
void AddJsonFlag(CLI::App* cmd, CliContext& ctx);
// Prints `j` as one line of JSON on stdout.
void PrintJson(const nlohmann::json& j);

// subscribers import|list|show
void AddSubscriberCommands(CLI::App& app, CliContext& ctx);
// groups, devices, audit, subscribers suspend|resume|terminate|... (after
// AddSubscriberCommands)
void AddFleetCommands(CLI::App& app, CliContext& ctx);
// apps create, tokens revoke, token verify (cli_tokens.cc)
void AddTokenCommands(CLI::App& app, CliContext& ctx);
// registry pending (cli_registry.cc)
void AddRegistryCommands(CLI::App& app, CliContext& ctx);
// admin issue-cert|whoami, ca status|activate (cli_admin.cc)
void AddAdminCommands(CLI::App& app, CliContext& ctx);
// backup, keys rotate-kek (cli_ops.cc)
void AddOpsCommands(CLI::App& app, CliContext& ctx);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CLI_CLI_COMMON_H_
