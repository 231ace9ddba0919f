// TLS for the remote admin listener (--admin-listen): a server certificate
// from the admin CA, and client certificates required and verified against
// the admin CA only — device certificates (another CA) never get through.
// Clients check the server certificate against the admin CA with the fixed
// name kAdminServerName (common/admin_name.h).
#ifndef SIMPROV_BROKER_ADMIN_ADMIN_LISTENER_H_
#define SIMPROV_BROKER_ADMIN_ADMIN_LISTENER_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "broker/ca/ca.h"
#include "common/admin_name.h"

namespace simprov {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> AdminServerCredentials(
    CertificateAuthority& admin_ca, const std::string& listen);

}  // namespace simprov

#endif  // SIMPROV_BROKER_ADMIN_ADMIN_LISTENER_H_
