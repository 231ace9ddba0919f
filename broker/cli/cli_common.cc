#include "broker/cli/cli_common.h"

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "broker/cli/admin_client.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"

namespace simprov {

CliContext CliContext::WithEnvironment(const EnvLookup& env) const {
  CliContext c = *this;
  auto fill = [&env](std::string& field, const char* name) {
    if (!field.empty()) return;
    const char* v = env(name);
    if (v != nullptr) field = v;
  };
  const bool local_flag = !data_dir.empty() || !admin_socket.empty();
  const bool remote_flag = !admin_address.empty() || !admin_cert_dir.empty();
  if (remote_flag) {
    // --admin with the certificate directory from the environment, or the
    // other way round.
    fill(c.admin_address, "SIMPROV_ADMIN");
    fill(c.admin_cert_dir, "SIMPROV_ADMIN_CERT");
  } else if (local_flag) {
    // --data-dir or --admin-socket on the command line: only a missing
    // --data-dir comes from the environment (never the socket, which
    // would take precedence over the flag).
    if (c.admin_socket.empty()) fill(c.data_dir, "SIMPROV_DATA_DIR");
  } else {
    fill(c.admin_address, "SIMPROV_ADMIN");
    fill(c.admin_cert_dir, "SIMPROV_ADMIN_CERT");
    if (c.admin_address.empty() && c.admin_cert_dir.empty()) {
      fill(c.admin_socket, "SIMPROV_ADMIN_SOCKET");
      fill(c.data_dir, "SIMPROV_DATA_DIR");
    }
  }
  return c;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CliContext::Channel(
    std::string* where) const {
  const CliContext c =
      WithEnvironment([](const char* name) { return std::getenv(name); });
  if (!c.admin_address.empty() || !c.admin_cert_dir.empty()) {
    *where = c.admin_address;
    return RemoteAdminChannel(c.admin_address, c.admin_cert_dir);
  }
  std::string path = c.admin_socket;
  if (path.empty() && !c.data_dir.empty()) path = c.data_dir + "/admin.sock";
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "say where the broker is: --data-dir DIR or --admin-socket PATH "
        "(or SIMPROV_DATA_DIR, SIMPROV_ADMIN_SOCKET, SIMPROV_ADMIN)");
  }
  *where = path;
  return grpc::CreateChannel("unix:" + path,
                             grpc::InsecureChannelCredentials());
}

int Fail(const absl::Status& s) {
  std::cerr << "simprov: " << s.message() << "\n";
  int rc = ExitCodeFor(s);
  return rc == kExitOk ? kExitError : rc;
}

absl::Status Explain(const grpc::Status& s, const std::string& where) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE &&
      where.find('/') == std::string::npos) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach the broker's remote admin API at ", where,
        " (is --admin-listen set there, and does --admin-cert hold a "
        "certificate from its admin CA?)"));
  }
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the broker's admin API at ", where,
                     " (is simprov-broker running with this --data-dir?)"));
  }
  return FromGrpcStatus(s);
}

std::string FormatTime(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

void AddJsonFlag(CLI::App* cmd, CliContext& ctx) {
  cmd->add_flag("--json", ctx.json,
                "Print one JSON object instead of text (docs/cli.md)");
}

void PrintJson(const nlohmann::json& j) { std::cout << j.dump() << "\n"; }

}  // namespace simprov
