// The Access admin service (proto/simprov/v1/access.proto): remote admin
// certificates and the device CA's rollover. Every RPC is authorized by
// role (admin_auth.h) and changes are audited with the actor's name.
#ifndef SIMPROV_BROKER_ADMIN_ACCESS_SERVICE_H_
#define SIMPROV_BROKER_ADMIN_ACCESS_SERVICE_H_

#include "broker/admin/admin_auth.h"
#include "broker/ca/ca.h"
#include "broker/store/store.h"
#include "common/clock.h"
#include "simprov/v1/access.grpc.pb.h"

namespace simprov {

inline constexpr absl::Duration kDefaultAdminCertTtl = absl::Hours(24 * 90);
inline constexpr absl::Duration kMaxAdminCertTtl = absl::Hours(24 * 731);

class AccessGrpcService final : public v1::Access::Service {
 public:
  AccessGrpcService(const AdminAuthorizer& auth,
                    CertificateAuthority& device_ca,
                    CertificateAuthority& admin_ca,
                    AdminRevocations& revocations, Store& store, Clock& clock)
      : auth_(auth),
        device_ca_(device_ca),
        admin_ca_(admin_ca),
        revocations_(revocations),
        store_(store),
        clock_(clock) {}

  grpc::Status IssueAdminCertificate(
      grpc::ServerContext* ctx, const v1::IssueAdminCertificateRequest* req,
      v1::IssueAdminCertificateResponse* resp) override;
  grpc::Status RevokeAdminCertificate(
      grpc::ServerContext* ctx, const v1::RevokeAdminCertificateRequest* req,
      v1::RevokeAdminCertificateResponse* resp) override;
  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest* req,
                      v1::WhoAmIResponse* resp) override;
  grpc::Status GetCaState(grpc::ServerContext* ctx,
                          const v1::GetCaStateRequest* req,
                          v1::CaStateResponse* resp) override;
  grpc::Status ActivateCa(grpc::ServerContext* ctx,
                          const v1::ActivateCaRequest* req,
                          v1::CaStateResponse* resp) override;

 private:
  const AdminAuthorizer& auth_;
  CertificateAuthority& device_ca_;
  CertificateAuthority& admin_ca_;
  AdminRevocations& revocations_;
  Store& store_;
  Clock& clock_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_ADMIN_ACCESS_SERVICE_H_
