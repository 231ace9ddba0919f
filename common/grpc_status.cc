#include "common/grpc_status.h"

#include <grpc/support/log.h>

#include <string>

#include "common/log.h"

namespace simprov {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

namespace {
void GrpcLogToDebug(gpr_log_func_args* args) {
  LogDebug("grpc: %s", args->message);
}
}  // namespace

void RouteGrpcLogging() { gpr_set_log_function(GrpcLogToDebug); }

}  // namespace simprov
