#include "broker/ops/ops_service.h"

#include "absl/strings/str_cat.h"
#include "broker/admin/admin_auth.h"
#include "broker/ops/backup.h"
#include "common/grpc_status.h"
#include "common/log.h"

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

grpc::Status OpsGrpcService::Backup(
    grpc::ServerContext* ctx, const v1::BackupRequest*,
    grpc::ServerWriter<v1::BackupChunk>* writer) {
  auto actor = auth_.Authorize(ctx, "Ops.Backup");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  // Tells the client that the broker took the call: a failure from here on
  // is the broker's answer, not an unreachable broker.
  ctx->AddInitialMetadata(kBackupStartedMetadata, "1");
  writer->SendInitialMetadata();
  v1::BackupChunk chunk;
  auto r = StreamBackup(store_, data_dir_, clock_, kBackupChunkBytes,
                        [&](absl::string_view piece) {
                          chunk.set_data(piece.data(), piece.size());
                          return writer->Write(chunk);
                        });
  if (!r.ok()) {
    LogWarning("backup for %s failed: %s", *actor, r.status().message());
    (void)store_.AppendAudit({clock_.Now(), *actor, "backup", data_dir_,
                              "failed", std::string(r.status().message())});
    return ToGrpcStatus(r.status());
  }
  v1::BackupDone* done = chunk.mutable_done();
  done->set_entries(r->summary.entries);
  done->set_bytes(r->summary.bytes);
  done->set_kek_included(r->summary.kek_included);
  done->set_archive_size(r->archive_size);
  done->set_sha256(r->sha256);
  done->set_data_dir(data_dir_);
  if (!writer->Write(chunk)) {
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        "the receiver of the backup went away");
  }
  LogInfo("backup for %s: %d files, %d bytes, archive of %d bytes", *actor,
          r->summary.entries, r->summary.bytes, r->archive_size);
  // Who took the archive (it may hold the KEK and the CA keys) and where it
  // was sent from is on the audit trail, not only in the log.
  (void)store_.AppendAudit(
      {clock_.Now(), *actor, "backup", data_dir_, "ok",
       absl::StrCat(r->summary.entries, " files, ", r->archive_size,
                    " bytes, KEK ",
                    r->summary.kek_included ? "included" : "not included")});
  return grpc::Status::OK;
}

}  // namespace simprov
