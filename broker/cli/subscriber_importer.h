// The client side of Admin.ImportSubscribers: rows go out in batches, and
// the end marker (with the row count) only on Finish(), so a client that
// gives up — Cancel(), or just destruction — imports nothing.
#ifndef SIMPROV_BROKER_CLI_SUBSCRIBER_IMPORTER_H_
#define SIMPROV_BROKER_CLI_SUBSCRIBER_IMPORTER_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "simprov/v1/admin.grpc.pb.h"

namespace simprov {

class SubscriberImporter {
 public:
  static constexpr int kBatchRows = 500;

  // With skip_existing, rows whose IMSI the broker already holds are
  // skipped rather than failing the import.
  explicit SubscriberImporter(v1::Admin::Stub& stub,
                              bool skip_existing = false);
  ~SubscriberImporter();

  // False when the broker has already refused the import (Finish says why).
  bool Add(v1::ImportRow row);
  // Sends the end marker and waits: the number of rows imported.
  absl::StatusOr<uint64_t> Finish();
  // After a successful Finish: rows skipped because the IMSI existed.
  uint64_t skipped() const { return result_.skipped(); }
  // Abandons the import; the broker rolls everything back.
  void Cancel();

 private:
  grpc::ClientContext ctx_;
  v1::ImportResult result_;
  std::unique_ptr<grpc::ClientWriter<v1::ImportBatch>> writer_;
  v1::ImportBatch batch_;
  uint64_t total_ = 0;
  bool skip_existing_ = false;
  bool open_ = true;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CLI_SUBSCRIBER_IMPORTER_H_
