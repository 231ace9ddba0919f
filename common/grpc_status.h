// The one place where absl::Status meets grpc::Status, in both directions.
#ifndef SIMPROV_COMMON_GRPC_STATUS_H_
#define SIMPROV_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace simprov {

grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

// gRPC's core logs to stderr on its own; command-line tools promise one
// line per error, so they route gRPC's log into ours at debug level.
void RouteGrpcLogging();

}  // namespace simprov

#endif  // SIMPROV_COMMON_GRPC_STATUS_H_
