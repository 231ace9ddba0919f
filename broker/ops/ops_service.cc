#include "broker/ops/ops_service.h"

#include "broker/admin/admin_auth.h"
#include "common/grpc_status.h"

namespace simprov {

grpc::Status OpsGrpcService::RotateKek(grpc::ServerContext* ctx,
                                       const v1::RotateKekRequest*,
                                       v1::RotateKekResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Ops.RotateKek");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto r = rotator_.Rotate(*actor);
  if (!r.ok()) return ToGrpcStatus(r.status());
  resp->set_rows(r->rows);
  resp->set_rewrapped(r->rewrapped);
  resp->set_resumed(r->resumed);
  resp->set_kek_path(kek_path_);
  return grpc::Status::OK;
}

}  // namespace simprov
