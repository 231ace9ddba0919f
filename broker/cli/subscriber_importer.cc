#include "broker/cli/subscriber_importer.h"

#include "common/grpc_status.h"

namespace simprov {

SubscriberImporter::SubscriberImporter(v1::Admin::Stub& stub,
                                       bool skip_existing)
    : writer_(stub.ImportSubscribers(&ctx_, &result_)),
      skip_existing_(skip_existing) {
  batch_.set_skip_existing(skip_existing_);
}

SubscriberImporter::~SubscriberImporter() { Cancel(); }

bool SubscriberImporter::Add(v1::ImportRow row) {
  *batch_.add_rows() = std::move(row);
  ++total_;
  if (batch_.rows_size() < kBatchRows) return true;
  bool ok = writer_->Write(batch_);
  batch_.Clear();
  batch_.set_skip_existing(skip_existing_);
  return ok;
}

absl::StatusOr<uint64_t> SubscriberImporter::Finish() {
  open_ = false;
  batch_.set_end(true);
  batch_.set_total_rows(total_);
  writer_->Write(batch_);
  writer_->WritesDone();
  grpc::Status st = writer_->Finish();
  if (!st.ok()) return FromGrpcStatus(st);
  return result_.imported();
}

void SubscriberImporter::Cancel() {
  if (!open_) return;
  open_ = false;
  ctx_.TryCancel();
  writer_->Finish();
}

}  // namespace simprov
