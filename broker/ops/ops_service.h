// The admin API's operations service (proto/simprov/v1/ops.proto): KEK
// rotation. Backups need no RPC: `simprov backup` reads the data dir with
// SQLite's online backup API (broker/ops/backup.h).
#ifndef SIMPROV_BROKER_OPS_OPS_SERVICE_H_
#define SIMPROV_BROKER_OPS_OPS_SERVICE_H_

#include <string>

#include "broker/admin/admin_auth.h"
#include "broker/keys/kek_rotation.h"
#include "simprov/v1/ops.grpc.pb.h"

namespace simprov {

class OpsGrpcService final : public v1::Ops::Service {
 public:
  OpsGrpcService(const AdminAuthorizer& auth, KekRotator& rotator,
                 std::string kek_path)
      : auth_(auth), rotator_(rotator), kek_path_(std::move(kek_path)) {}

  grpc::Status RotateKek(grpc::ServerContext* ctx,
                         const v1::RotateKekRequest* req,
                         v1::RotateKekResponse* resp) override;

 private:
  const AdminAuthorizer& auth_;
  KekRotator& rotator_;
  const std::string kek_path_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_OPS_OPS_SERVICE_H_
