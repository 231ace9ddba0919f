// The registry gRPC services (proto/simprov/v1/registry.proto): a device
// asks the registration state of its certificate (mTLS, like renewal), an
// operator lists what waits in the outbox (`simprov registry pending`).
#ifndef SIMPROV_BROKER_REGISTRY_REGISTRY_SERVICE_H_
#define SIMPROV_BROKER_REGISTRY_REGISTRY_SERVICE_H_

#include "broker/admin/admin_auth.h"
#include "broker/ca/ca.h"
#include "broker/registry/registry_outbox.h"
#include "broker/store/store.h"
#include "common/clock.h"
#include "simprov/v1/registry.grpc.pb.h"

namespace simprov {

class DeviceRegistryGrpcService final : public v1::DeviceRegistry::Service {
 public:
  DeviceRegistryGrpcService(RegistryOutbox& outbox, Store& store,
                            CertificateAuthority& ca, Clock& clock)
      : outbox_(outbox), store_(store), ca_(ca), clock_(clock) {}
  grpc::Status RegistrationStatus(
      grpc::ServerContext* ctx, const v1::RegistrationStatusRequest* req,
      v1::RegistrationStatusResponse* resp) override;

  // The check behind it: `pem` is the TLS peer's leaf certificate.
  absl::StatusOr<v1::RegistrationStatusResponse> StatusFor(
      const std::string& pem);

 private:
  RegistryOutbox& outbox_;
  Store& store_;
  CertificateAuthority& ca_;
  Clock& clock_;
};

class RegistryAdminGrpcService final : public v1::RegistryAdmin::Service {
 public:
  RegistryAdminGrpcService(const AdminAuthorizer& auth, Store& store,
                           Clock& clock)
      : auth_(auth), store_(store), clock_(clock) {}
  grpc::Status ListPending(
      grpc::ServerContext* ctx, const v1::ListPendingRequest* req,
      grpc::ServerWriter<v1::PendingRegistration>* writer) override;

 private:
  const AdminAuthorizer& auth_;
  Store& store_;
  Clock& clock_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_REGISTRY_REGISTRY_SERVICE_H_
