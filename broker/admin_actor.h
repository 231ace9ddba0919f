// Who is calling the admin API: the audit trail's actor for admin actions.
#ifndef SIMPROV_BROKER_ADMIN_ACTOR_H_
#define SIMPROV_BROKER_ADMIN_ACTOR_H_

#include <grpcpp/grpcpp.h>

#include <string>

namespace simprov {

// "local" for the Unix socket (its file permissions are the
// authorization). Remote admin (issue 7) returns the authenticated admin's
// name here.
inline std::string AdminActor(const grpc::ServerContext* /*ctx*/) {
  return "local";
}

}  // namespace simprov

#endif  // SIMPROV_BROKER_ADMIN_ACTOR_H_
