#include "broker/registry/registry_service.h"

#include <grpc/grpc_security_constants.h>

#include "absl/strings/str_cat.h"
#include "broker/admin/admin_auth.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/x509.h"

namespace simprov {

absl::StatusOr<v1::RegistrationStatusResponse>
DeviceRegistryGrpcService::StatusFor(const std::string& pem) {
  if (pem.empty()) {
    return absl::UnauthenticatedError(
        "no client certificate: the registration status needs the device "
        "certificate over mutual TLS");
  }
  auto leaf = CertFromPem(pem);
  if (!leaf.ok()) {
    return absl::UnauthenticatedError("client certificate does not parse");
  }
  const absl::Time now = clock_.Now();
  absl::Status chain = ca_.VerifyIssued(leaf->get(), now, "sslclient");
  if (!chain.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("client certificate not accepted: ", chain.message()));
  }
  CertInfo info = DescribeCert(leaf->get());
  auto record = store_.GetCertificate(info.serial_hex);
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError("certificate unknown to this broker");
    }
    return absl::UnavailableError(record.status().message());
  }
  // A revoked certificate is refused as renewal refuses it: its
  // registrations are being removed, and it has nothing to wait for.
  if (record->status != "valid") {
    LogInfo("registration status: serial %s refused: certificate %s",
            info.serial_hex, record->status);
    return absl::PermissionDeniedError(
        absl::StrCat("certificate ", info.serial_hex, " was ", record->status,
                     record->revocation_reason.empty()
                         ? ""
                         : absl::StrCat(" (", record->revocation_reason, ")"),
                     ": bootstrap again with the SIM"));
  }
  auto status = outbox_.StatusOf(info.serial_hex);
  if (!status.ok()) return absl::UnavailableError(status.status().message());
  v1::RegistrationStatusResponse resp;
  resp.set_status((*status)["status"].get<std::string>());
  resp.set_registry_info_json(status->dump());
  return resp;
}

grpc::Status DeviceRegistryGrpcService::RegistrationStatus(
    grpc::ServerContext* ctx, const v1::RegistrationStatusRequest*,
    v1::RegistrationStatusResponse* resp) {
  std::string pem;
  auto auth = ctx->auth_context();
  if (auth) {
    auto values = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (!values.empty()) pem = std::string(values[0].data(), values[0].size());
  }
  auto r = StatusFor(pem);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status RegistryAdminGrpcService::ListPending(
    grpc::ServerContext* ctx, const v1::ListPendingRequest* req,
    grpc::ServerWriter<v1::PendingRegistration>* writer) {
  auto actor = auth_.Authorize(ctx, "RegistryAdmin.ListPending");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  int64_t count = 0;
  absl::Status s = store_.ListPendingIntents(
      req->after_id(), req->limit(), [&](const RegistrationIntent& i) {
        v1::PendingRegistration p;
        p.set_id(i.id);
        p.set_registry(i.registry);
        p.set_kind(i.kind);
        p.set_serial(i.serial);
        p.set_imsi(i.imsi);
        p.set_device_id(i.device_id);
        p.set_created_at_unix(absl::ToUnixSeconds(i.created_at));
        p.set_attempts(i.attempts);
        p.set_next_attempt_unix_ms(absl::ToUnixMillis(i.next_attempt_at));
        p.set_last_error(i.last_error);
        ++count;
        return writer->Write(p);
      });
  (void)store_.AppendAudit({clock_.Now(), *actor, "registry-pending", "",
                            s.ok() ? "ok" : "failed",
                            absl::StrCat("entries=", count)});
  return ToGrpcStatus(s);
}

}  // namespace simprov
