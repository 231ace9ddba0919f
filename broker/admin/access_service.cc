#include "broker/admin/access_service.h"

#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "broker/admin/admin_auth.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/serial.h"
#include "common/x509.h"

namespace simprov {
namespace {

void FillState(const CaState& st, v1::CaStateResponse* resp) {
  resp->set_active_subject(st.active.subject);
  resp->set_active_serial(st.active.serial_hex);
  resp->set_active_not_after_unix(absl::ToUnixSeconds(st.active.not_after));
  resp->set_staged(st.staged);
  if (st.staged) {
    resp->set_staged_subject(st.staged_issuing.subject);
    resp->set_staged_root_subject(st.staged_root_subject);
    resp->set_activate_at_unix(absl::ToUnixSeconds(st.activate_at));
  }
  resp->set_retired(static_cast<uint32_t>(st.retired));
}

}  // namespace

grpc::Status AccessGrpcService::IssueAdminCertificate(
    grpc::ServerContext* ctx, const v1::IssueAdminCertificateRequest* req,
    v1::IssueAdminCertificateResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Access.IssueAdminCertificate");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto role = ParseRole(req->role());
  if (!role) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "role must be viewer, operator or admin, not \"", req->role(), "\"")));
  }
  if (absl::Status s = CheckAdminName(req->name()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::Duration ttl = req->ttl_seconds() == 0
                           ? kDefaultAdminCertTtl
                           : absl::Seconds(req->ttl_seconds());
  if (ttl < absl::Minutes(1) || ttl > kMaxAdminCertTtl) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "admin certificate lifetime must be between 1m and 731d"));
  }
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(req->public_key_der().data());
  EvpPkeyPtr key(
      d2i_PUBKEY(nullptr, &p, static_cast<long>(req->public_key_der().size())));
  if (key == nullptr || !EVP_PKEY_is_a(key.get(), "EC")) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "public key must be a DER SubjectPublicKeyInfo (EC P-256)"));
  }
  DeviceCertRequest cert_req;
  cert_req.public_key = key.get();
  cert_req.common_name = req->name();
  cert_req.device_id_uri = AdminUrn(*role, req->name());
  cert_req.ttl = ttl;
  auto issued = admin_ca_.IssueDevice(cert_req);
  if (!issued.ok()) return ToGrpcStatus(issued.status());
  auto cert = CertFromDer(issued->der);
  if (!cert.ok()) return ToGrpcStatus(cert.status());
  resp->set_chain_pem(CertToPem(cert->get()) + admin_ca_.ChainPem());
  resp->set_ca_pem(admin_ca_.TrustAnchorsPem());
  resp->set_serial(issued->info.serial_hex);
  resp->set_not_after_unix(absl::ToUnixSeconds(issued->info.not_after));
  if (absl::Status s = store_.AppendAudit(
          {clock_.Now(), *actor, "admin-cert", req->name(), "ok",
           absl::StrCat("role=", RoleName(*role),
                        " serial=", issued->info.serial_hex)});
      !s.ok()) {
    LogWarning("audit: %s", s.message());
  }
  LogInfo("admin certificate for %s (%s) issued by %s, serial %s", req->name(),
          RoleName(*role), *actor, issued->info.serial_hex);
  return grpc::Status::OK;
}

grpc::Status AccessGrpcService::RevokeAdminCertificate(
    grpc::ServerContext* ctx, const v1::RevokeAdminCertificateRequest* req,
    v1::RevokeAdminCertificateResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Access.RevokeAdminCertificate");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto serial = NormalizeSerial(req->serial());
  if (!serial.ok()) return ToGrpcStatus(serial.status());
  auto added = revocations_.Revoke(*serial);
  if (!added.ok()) return ToGrpcStatus(added.status());
  resp->set_serial(*serial);
  resp->set_already_revoked(!*added);
  if (*added) {
    if (absl::Status s = store_.AppendAudit(
            {clock_.Now(), *actor, "revoke-admin-cert", *serial, "ok", ""});
        !s.ok()) {
      LogWarning("audit: %s", s.message());
    }
    LogInfo("admin certificate %s revoked by %s", *serial, *actor);
  }
  return grpc::Status::OK;
}

grpc::Status AccessGrpcService::WhoAmI(grpc::ServerContext* ctx,
                                       const v1::WhoAmIRequest*,
                                       v1::WhoAmIResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Access.WhoAmI");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto who = auth_.CallerIdentity(ctx);
  if (!who.ok()) return ToGrpcStatus(who.status());
  resp->set_name(who->name);
  resp->set_role(std::string(RoleName(who->role)));
  return grpc::Status::OK;
}

grpc::Status AccessGrpcService::GetCaState(grpc::ServerContext* ctx,
                                           const v1::GetCaStateRequest*,
                                           v1::CaStateResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Access.GetCaState");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  FillState(device_ca_.State(), resp);
  return grpc::Status::OK;
}

grpc::Status AccessGrpcService::ActivateCa(grpc::ServerContext* ctx,
                                           const v1::ActivateCaRequest*,
                                           v1::CaStateResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Access.ActivateCa");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto activated = device_ca_.MaybeActivateStaged(/*force=*/true);
  if (!activated.ok()) return ToGrpcStatus(activated.status());
  const CaState st = device_ca_.State();
  if (absl::Status s = store_.AppendAudit(
          {clock_.Now(), *actor, "ca-activate", st.active.subject, "ok",
           absl::StrCat("serial=", st.active.serial_hex)});
      !s.ok()) {
    LogWarning("audit: %s", s.message());
  }
  LogInfo("CA %s activated by %s", st.active.subject, *actor);
  FillState(st, resp);
  return grpc::Status::OK;
}

}  // namespace simprov
