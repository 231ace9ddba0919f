#include "broker/ops_service.h"

#include "broker/admin_actor.h"
#include "common/grpc_status.h"

namespace simprov {

grpc::Status OpsGrpcService::RotateKek(grpc::ServerContext* ctx,
                                       const v1::RotateKekRequest*,
                                       v1::RotateKekResponse* resp) {
  // role: admin
  auto r = rotator_.Rotate(AdminActor(ctx));
  if (!r.ok()) return ToGrpcStatus(r.status());
  resp->set_rows(r->rows);
  resp->set_rewrapped(r->rewrapped);
  resp->set_resumed(r->resumed);
  resp->set_kek_path(kek_path_);
  return grpc::Status::OK;
}

}  // namespace simprov
