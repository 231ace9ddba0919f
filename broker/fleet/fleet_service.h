// The fleet lifecycle admin API (proto/simprov/v1/fleet.proto): group
// policies, suspend/resume/terminate, revocation with CRL regeneration,
// device replacement, IMEI lock, devices and the audit trail. Every action
// is audited with the caller from AdminAuthorizer::Authorize()
// (admin_auth.h); revocations are reported to the DeviceRevokedListener
// (fleet_hooks.h) the service is built with.
#ifndef SIMPROV_BROKER_FLEET_FLEET_SERVICE_H_
#define SIMPROV_BROKER_FLEET_FLEET_SERVICE_H_

#include "broker/admin/admin_auth.h"
#include "broker/ca/crl_publisher.h"
#include "broker/fleet/fleet_hooks.h"
#include "broker/policy/group_policies.h"
#include "broker/store/store.h"
#include "common/clock.h"
#include "simprov/v1/fleet.grpc.pb.h"

namespace simprov {

class FleetGrpcService final : public v1::Fleet::Service {
 public:
  // `on_revoked` and `on_groups_applied` may be empty (nothing listens).
  FleetGrpcService(const AdminAuthorizer& auth, Store& store,
                   GroupPolicies& policies, CrlPublisher& crl, Clock& clock,
                   Random& random, DeviceRevokedListener on_revoked,
                   GroupsAppliedListener on_groups_applied = {})
      : auth_(auth),
        store_(store),
        policies_(policies),
        crl_(crl),
        clock_(clock),
        random_(random),
        on_revoked_(std::move(on_revoked)),
        on_groups_applied_(std::move(on_groups_applied)) {}

  grpc::Status ApplyGroups(grpc::ServerContext* ctx,
                           const v1::ApplyGroupsRequest* req,
                           v1::ApplyGroupsResponse* resp) override;
  grpc::Status ListGroups(grpc::ServerContext* ctx,
                          const v1::ListGroupsRequest* req,
                          grpc::ServerWriter<v1::Group>* writer) override;
  grpc::Status GetGroup(grpc::ServerContext* ctx,
                        const v1::GetGroupRequest* req,
                        v1::Group* resp) override;
  grpc::Status DeleteGroup(grpc::ServerContext* ctx,
                           const v1::DeleteGroupRequest* req,
                           v1::DeleteGroupResponse* resp) override;
  grpc::Status SetSubscriberGroup(grpc::ServerContext* ctx,
                                  const v1::SetSubscriberGroupRequest* req,
                                  v1::LifecycleResponse* resp) override;
  grpc::Status SetSubscriberStatus(grpc::ServerContext* ctx,
                                   const v1::SetSubscriberStatusRequest* req,
                                   v1::LifecycleResponse* resp) override;
  grpc::Status ClearImeiLock(grpc::ServerContext* ctx,
                             const v1::ClearImeiLockRequest* req,
                             v1::LifecycleResponse* resp) override;
  grpc::Status RevokeDevice(grpc::ServerContext* ctx,
                            const v1::RevokeDeviceRequest* req,
                            v1::RevokeDeviceResponse* resp) override;
  grpc::Status ReplaceDevice(grpc::ServerContext* ctx,
                             const v1::ReplaceDeviceRequest* req,
                             v1::ReplaceDeviceResponse* resp) override;
  grpc::Status ListDevices(grpc::ServerContext* ctx,
                           const v1::ListDevicesRequest* req,
                           grpc::ServerWriter<v1::Device>* writer) override;
  grpc::Status GetDevice(grpc::ServerContext* ctx,
                         const v1::GetDeviceRequest* req,
                         v1::Device* resp) override;
  grpc::Status QueryAudit(grpc::ServerContext* ctx,
                          const v1::QueryAuditRequest* req,
                          grpc::ServerWriter<v1::AuditRecord>* writer) override;

 private:
  absl::Status FillDevice(const SubscriberRecord& r, v1::Device* out);
  // Logs the revocation and tells the listener.
  void Revoked(const DeviceRevocation& r);

  const AdminAuthorizer& auth_;
  Store& store_;
  GroupPolicies& policies_;
  CrlPublisher& crl_;
  Clock& clock_;
  Random& random_;
  const DeviceRevokedListener on_revoked_;
  const GroupsAppliedListener on_groups_applied_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_FLEET_FLEET_SERVICE_H_
