// The operator's API on the broker's Unix socket: subscriber import (all or
// nothing, streamed), list and show. File permissions on the socket are the
// authorization for local admin.
#ifndef SIMPROV_BROKER_ADMIN_ADMIN_SERVICE_H_
#define SIMPROV_BROKER_ADMIN_ADMIN_SERVICE_H_

#include "broker/admin/admin_auth.h"
#include "broker/keys/kek_rotation.h"
#include "broker/store/store.h"
#include "common/clock.h"
#include "simprov/v1/admin.grpc.pb.h"

namespace simprov {

inline constexpr uint16_t kDefaultAmf = 0x8000;

// Validates one CSV row and seals its keys. InvalidArgument says
// "line N: <what>" and never contains key material.
absl::StatusOr<NewSubscriber> ValidateImportRow(const v1::ImportRow& row,
                                                const Bytes& kek,
                                                Random& random);

class AdminGrpcService final : public v1::Admin::Service {
 public:
  AdminGrpcService(const AdminAuthorizer& auth, Store& store, Bytes kek,
                   Clock& clock, Random& random)
      : auth_(auth),
        owned_kek_(std::make_unique<KekRing>(std::move(kek))),
        store_(store),
        kek_(*owned_kek_),
        clock_(clock),
        random_(random) {}
  // With a KEK ring that a rotation may switch (broker/keys/kek_rotation.h).
  AdminGrpcService(const AdminAuthorizer& auth, Store& store, KekRing& kek,
                   Clock& clock, Random& random)
      : auth_(auth), store_(store), kek_(kek), clock_(clock), random_(random) {}

  grpc::Status ImportSubscribers(grpc::ServerContext* ctx,
                                 grpc::ServerReader<v1::ImportBatch>* reader,
                                 v1::ImportResult* result) override;
  grpc::Status ListSubscribers(
      grpc::ServerContext* ctx, const v1::ListSubscribersRequest* req,
      grpc::ServerWriter<v1::Subscriber>* writer) override;
  grpc::Status GetSubscriber(grpc::ServerContext* ctx,
                             const v1::GetSubscriberRequest* req,
                             v1::Subscriber* resp) override;

 private:
  const AdminAuthorizer& auth_;
  std::unique_ptr<KekRing> owned_kek_;  // set by the Bytes constructor
  Store& store_;
  KekRing& kek_;
  Clock& clock_;
  Random& random_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_ADMIN_ADMIN_SERVICE_H_
