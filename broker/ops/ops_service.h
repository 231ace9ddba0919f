// The admin API's operations service (proto/simprov/v1/ops.proto): KEK
// rotation, and backups streamed to `simprov backup` (broker/ops/backup.h).
#ifndef SIMPROV_BROKER_OPS_OPS_SERVICE_H_
#define SIMPROV_BROKER_OPS_OPS_SERVICE_H_

#include <cstddef>
#include <string>

#include "broker/admin/admin_auth.h"
#include "broker/keys/kek_rotation.h"
#include "broker/store/store.h"
#include "common/clock.h"
#include "simprov/v1/ops.grpc.pb.h"

namespace simprov {

// The archive travels in messages of this many bytes (the last may be
// shorter).
inline constexpr size_t kBackupChunkBytes = 64 << 10;
// Initial metadata Ops.Backup sends once authorized (ops.proto).
inline constexpr char kBackupStartedMetadata[] = "simprov-backup-started";

class OpsGrpcService final : public v1::Ops::Service {
 public:
  // `store` and `data_dir`: what a backup copies.
  OpsGrpcService(const AdminAuthorizer& auth, KekRotator& rotator,
                 std::string kek_path, Store& store, std::string data_dir,
                 Clock& clock)
      : auth_(auth),
        rotator_(rotator),
        kek_path_(std::move(kek_path)),
        store_(store),
        data_dir_(std::move(data_dir)),
        clock_(clock) {}

  grpc::Status RotateKek(grpc::ServerContext* ctx,
                         const v1::RotateKekRequest* req,
                         v1::RotateKekResponse* resp) override;
  grpc::Status Backup(grpc::ServerContext* ctx, const v1::BackupRequest* req,
                      grpc::ServerWriter<v1::BackupChunk>* writer) override;

 private:
  const AdminAuthorizer& auth_;
  KekRotator& rotator_;
  const std::string kek_path_;
  Store& store_;
  const std::string data_dir_;
  Clock& clock_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_OPS_OPS_SERVICE_H_
