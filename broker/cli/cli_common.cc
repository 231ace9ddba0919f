#include "broker/cli/cli_common.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "broker/cli/admin_client.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"

namespace simprov {

absl::StatusOr<std::shared_ptr<grpc::Channel>> CliContext::Channel(
    std::string* where) const {
  if (!admin_address.empty() || !admin_cert_dir.empty()) {
    *where = admin_address;
    return RemoteAdminChannel(admin_address, admin_cert_dir);
  }
  std::string path = admin_socket;
  if (path.empty() && !data_dir.empty()) path = data_dir + "/admin.sock";
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "say where the broker is: --data-dir DIR or --admin-socket PATH");
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

}  // namespace simprov
