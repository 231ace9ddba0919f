// The client side of remote admin: a gRPC channel over mTLS to a broker's
// --admin-listen, with a certificate directory written by
// `simprov admin issue-cert`:
//   DIR/admin.key   the admin's private key (0600)
//   DIR/admin.pem   the admin certificate, then the admin issuing CA
//   DIR/ca.pem      the broker's admin CA: verifies the admin listener
#ifndef SIMPROV_BROKER_CLI_ADMIN_CLIENT_H_
#define SIMPROV_BROKER_CLI_ADMIN_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace simprov {

absl::StatusOr<std::shared_ptr<grpc::Channel>> RemoteAdminChannel(
    const std::string& address, const std::string& cert_dir);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CLI_ADMIN_CLIENT_H_
