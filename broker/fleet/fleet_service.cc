#include "broker/fleet/fleet_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/admin/admin_auth.h"
#include "broker/policy/policy.h"
#include "broker/registry/registry_outbox.h"
#include "common/bytes.h"
#include "common/grpc_status.h"
#include "common/imsi.h"
#include "common/log.h"

namespace simprov {
namespace {

constexpr size_t kMaxGroupsJson = 1024 * 1024;

absl::Status CheckImsi(const std::string& imsi) {
  if (!IsValidImsi(imsi)) {
    return absl::InvalidArgumentError(
        absl::StrCat("IMSI must be 6 to 15 decimal digits: \"", imsi, "\""));
  }
  return absl::OkStatus();
}

AuditEvent AdminEvent(const std::string& actor, absl::Time at,
                      std::string action, std::string target,
                      std::string reason = "") {
  return {
      at, actor, std::move(action), std::move(target), "ok", std::move(reason)};
}

}  // namespace

void FleetGrpcService::Revoked(const DeviceRevocation& r) {
  LogInfo("revoked device %s (IMSI %s): %s [%s] by %s", r.device_id, r.imsi,
          absl::StrJoin(r.serials, ","), r.reason, r.actor);
  if (on_revoked_) on_revoked_(r);
}

grpc::Status FleetGrpcService::ApplyGroups(grpc::ServerContext* ctx,
                                           const v1::ApplyGroupsRequest* req,
                                           v1::ApplyGroupsResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.ApplyGroups");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  if (req->groups_json().size() > kMaxGroupsJson) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("groups file larger than 1 MiB"));
  }
  auto parsed = ParseGroupsFile(req->groups_json());
  if (!parsed.ok()) return ToGrpcStatus(parsed.status());
  const absl::Time now = clock_.Now();
  std::vector<GroupRow> rows;
  std::string names;
  for (const auto& [policy, json] : *parsed) {
    rows.push_back({policy.name, json, now});
    absl::StrAppend(&names, names.empty() ? "" : ",", policy.name);
    resp->add_applied(policy.name);
  }
  absl::Status s =
      store_.PutGroups(rows, AdminEvent(*actor, now, "group-apply", names,
                                        absl::StrCat(rows.size(), " groups")));
  policies_.Invalidate();
  if (!s.ok()) return ToGrpcStatus(s);
  LogInfo("groups applied: %s", names);
  if (on_groups_applied_) {
    std::vector<GroupPolicy> applied;
    for (const auto& [policy, json] : *parsed) applied.push_back(policy);
    if (absl::Status r = on_groups_applied_(applied); !r.ok()) {
      return ToGrpcStatus(absl::UnavailableError(absl::StrCat(
          "groups applied, but registering their devices again failed (apply "
          "them again): ",
          r.message())));
    }
  }
  return grpc::Status::OK;
}

grpc::Status FleetGrpcService::ListGroups(
    grpc::ServerContext* ctx, const v1::ListGroupsRequest* req,
    grpc::ServerWriter<v1::Group>* writer) {
  auto actor = auth_.Authorize(ctx, "Fleet.ListGroups");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  std::vector<GroupRow> rows;
  // The default group is listed first, stored or not.
  bool default_listed = !req->after().empty();
  if (!default_listed) {
    auto d = store_.GetGroup(kDefaultGroup);
    if (d.ok()) {
      rows.push_back(*d);
    } else if (d.status().code() == absl::StatusCode::kNotFound) {
      rows.push_back({kDefaultGroup, "", absl::UnixEpoch()});
    } else {
      return ToGrpcStatus(d.status());
    }
  }
  absl::Status s =
      store_.ListGroups(req->after(), req->limit(), [&](const GroupRow& g) {
        if (g.name != kDefaultGroup) rows.push_back(g);
        return true;
      });
  if (!s.ok()) return ToGrpcStatus(s);
  size_t sent = 0;
  for (const GroupRow& g : rows) {
    if (req->limit() != 0 && sent == req->limit()) break;
    v1::Group out;
    out.set_name(g.name);
    out.set_implicit(g.policy_json.empty());
    out.set_policy_json(g.policy_json.empty() ? "{}" : g.policy_json);
    out.set_updated_unix(
        g.policy_json.empty() ? 0 : absl::ToUnixSeconds(g.updated_at));
    auto n = store_.CountSubscribersInGroup(g.name);
    if (!n.ok()) return ToGrpcStatus(n.status());
    out.set_subscribers(*n);
    if (ctx->IsCancelled() || !writer->Write(out)) break;
    ++sent;
  }
  return grpc::Status::OK;
}

grpc::Status FleetGrpcService::GetGroup(grpc::ServerContext* ctx,
                                        const v1::GetGroupRequest* req,
                                        v1::Group* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.GetGroup");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto g = store_.GetGroup(req->name());
  if (!g.ok() && !(g.status().code() == absl::StatusCode::kNotFound &&
                   req->name() == kDefaultGroup)) {
    return ToGrpcStatus(g.status());
  }
  resp->set_name(req->name());
  resp->set_implicit(!g.ok());
  resp->set_policy_json(g.ok() ? g->policy_json : "{}");
  resp->set_updated_unix(g.ok() ? absl::ToUnixSeconds(g->updated_at) : 0);
  auto n = store_.CountSubscribersInGroup(req->name());
  if (!n.ok()) return ToGrpcStatus(n.status());
  resp->set_subscribers(*n);
  return grpc::Status::OK;
}

grpc::Status FleetGrpcService::DeleteGroup(grpc::ServerContext* ctx,
                                           const v1::DeleteGroupRequest* req,
                                           v1::DeleteGroupResponse*) {
  auto actor = auth_.Authorize(ctx, "Fleet.DeleteGroup");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  if (req->name() == kDefaultGroup) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        "the default group cannot be deleted (apply it again to change it)"));
  }
  absl::Status s = store_.DeleteGroup(
      req->name(),
      AdminEvent(*actor, clock_.Now(), "group-delete", req->name()));
  policies_.Invalidate();
  return ToGrpcStatus(s);
}

grpc::Status FleetGrpcService::SetSubscriberGroup(
    grpc::ServerContext* ctx, const v1::SetSubscriberGroupRequest* req,
    v1::LifecycleResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.SetSubscriberGroup");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  if (absl::Status s = CheckImsi(req->imsi()); !s.ok()) return ToGrpcStatus(s);
  if (!IsValidGroupName(req->group())) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "group must be 1-64 letters, digits, '-', '_' or '.'"));
  }
  absl::Status s = store_.SetSubscriberGroup(
      req->imsi(), req->group(),
      AdminEvent(*actor, clock_.Now(), "set-group", req->imsi(),
                 absl::StrCat("group=", req->group())));
  if (!s.ok()) return ToGrpcStatus(s);
  auto sub = store_.GetSubscriber(req->imsi());
  if (sub.ok()) resp->set_status(sub->status);
  return grpc::Status::OK;
}

grpc::Status FleetGrpcService::SetSubscriberStatus(
    grpc::ServerContext* ctx, const v1::SetSubscriberStatusRequest* req,
    v1::LifecycleResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.SetSubscriberStatus");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  if (absl::Status s = CheckImsi(req->imsi()); !s.ok()) return ToGrpcStatus(s);
  std::vector<std::string> from;
  std::string to;
  if (req->action() == "suspend") {
    from = {kStatusActive};
    to = kStatusSuspended;
  } else if (req->action() == "resume") {
    // Also reactivates a replaced SIM (it provisions as a new device).
    from = {kStatusSuspended, kStatusReplaced};
    to = kStatusActive;
  } else if (req->action() == "terminate") {
    from = {kStatusActive, kStatusSuspended, kStatusReplaced};
    to = kStatusTerminated;
  } else {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "action must be suspend, resume or terminate"));
  }
  // Used only when a replaced SIM is reactivated: its old device id now
  // belongs to the SIM that replaced it, so it becomes a device of its own.
  const std::string reactivated_device_id =
      absl::StrCat(req->imsi(), "-", HexEncode(random_.Generate(4)));
  absl::Status s = store_.SetSubscriberStatus(
      req->imsi(), from, to, reactivated_device_id,
      AdminEvent(*actor, clock_.Now(), req->action(), req->imsi()));
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      s = absl::FailedPreconditionError(
          absl::StrCat("cannot ", req->action(), ": ", s.message()));
    }
    return ToGrpcStatus(s);
  }
  LogInfo("subscriber %s: %s", req->imsi(), req->action());
  resp->set_status(to);
  return grpc::Status::OK;
}

grpc::Status FleetGrpcService::ClearImeiLock(
    grpc::ServerContext* ctx, const v1::ClearImeiLockRequest* req,
    v1::LifecycleResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.ClearImeiLock");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  if (absl::Status s = CheckImsi(req->imsi()); !s.ok()) return ToGrpcStatus(s);
  auto sub = store_.GetSubscriber(req->imsi());
  if (!sub.ok()) return ToGrpcStatus(sub.status());
  absl::Status s = store_.ClearImei(
      req->imsi(), AdminEvent(*actor, clock_.Now(), "clear-imei-lock",
                              req->imsi(), absl::StrCat("was=", sub->imei)));
  if (!s.ok()) return ToGrpcStatus(s);
  resp->set_status(sub->status);
  return grpc::Status::OK;
}

grpc::Status FleetGrpcService::RevokeDevice(grpc::ServerContext* ctx,
                                            const v1::RevokeDeviceRequest* req,
                                            v1::RevokeDeviceResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.RevokeDevice");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  if (req->imsi().empty() == req->serial().empty()) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("name an IMSI or a --serial (not both)"));
  }
  if (!req->imsi().empty()) {
    if (absl::Status s = CheckImsi(req->imsi()); !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  RevocationRequest r;
  r.imsi = req->imsi();
  r.serial = req->serial();
  r.reason = req->reason().empty() ? "unspecified" : req->reason();
  if (auto code = CrlReasonCode(r.reason); !code.ok()) {
    return ToGrpcStatus(code.status());
  }
  r.at = clock_.Now();
  const std::string target = r.imsi.empty() ? r.serial : r.imsi;
  auto revoked = store_.RevokeCertificates(
      r, AdminEvent(*actor, r.at, "revoke", target,
                    absl::StrCat("reason=", r.reason)));
  if (!revoked.ok()) return ToGrpcStatus(revoked.status());
  // The CRL is regenerated before the command returns.
  if (absl::Status s = crl_.Regenerate(); !s.ok()) {
    LogError("CRL: %s", s.message());
    return ToGrpcStatus(absl::UnavailableError(absl::StrCat(
        "certificates revoked, but the CRL could not be regenerated: ",
        s.message())));
  }
  DeviceRevocation hook;
  hook.reason = r.reason;
  hook.actor = *actor;
  for (const CertificateRecord& c : *revoked) {
    resp->add_serials(c.serial);
    hook.serials.push_back(c.serial);
    hook.imsi = c.imsi;
    hook.device_id = c.device_id;
  }
  if (!revoked->empty()) Revoked(hook);
  return grpc::Status::OK;
}

grpc::Status FleetGrpcService::ReplaceDevice(
    grpc::ServerContext* ctx, const v1::ReplaceDeviceRequest* req,
    v1::ReplaceDeviceResponse* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.ReplaceDevice");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  for (const std::string* imsi : {&req->old_imsi(), &req->new_imsi()}) {
    if (absl::Status s = CheckImsi(*imsi); !s.ok()) return ToGrpcStatus(s);
  }
  if (req->old_imsi() == req->new_imsi()) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("old and new IMSI are the same"));
  }
  auto old_sub = store_.GetSubscriber(req->old_imsi());
  if (!old_sub.ok()) return ToGrpcStatus(old_sub.status());
  const absl::Time now = clock_.Now();
  auto revoked =
      store_.ReplaceDevice(req->old_imsi(), req->new_imsi(), now,
                           AdminEvent(*actor, now, "replace", req->old_imsi()));
  if (!revoked.ok()) return ToGrpcStatus(revoked.status());
  if (absl::Status s = crl_.Regenerate(); !s.ok()) {
    LogError("CRL: %s", s.message());
    return ToGrpcStatus(absl::UnavailableError(
        absl::StrCat("device replaced, but the CRL could not be regenerated: ",
                     s.message())));
  }
  const std::string device_id =
      old_sub->device_id.empty() ? old_sub->imsi : old_sub->device_id;
  DeviceRevocation hook;
  hook.imsi = req->old_imsi();
  hook.device_id = device_id;
  hook.reason = "superseded";
  hook.actor = *actor;
  hook.replaced = true;
  for (const CertificateRecord& c : *revoked) {
    hook.serials.push_back(c.serial);
    resp->add_revoked_serials(c.serial);
  }
  Revoked(hook);
  resp->set_device_id(device_id);
  LogInfo("device %s: SIM %s replaced by %s", device_id, req->old_imsi(),
          req->new_imsi());
  return grpc::Status::OK;
}

absl::Status FleetGrpcService::FillDevice(const SubscriberRecord& r,
                                          v1::Device* out) {
  out->set_imsi(r.imsi);
  out->set_device_id(r.device_id);
  out->set_group(r.group);
  out->set_status(r.status);
  out->set_imei(r.imei);
  out->set_iccid(r.iccid);
  out->set_replaced_by(r.replaced_by);
  out->set_last_seen_unix(
      r.last_seen == absl::UnixEpoch() ? 0 : absl::ToUnixSeconds(r.last_seen));
  out->set_registry_status("-");
  auto certs = store_.CertificatesOf(r.imsi);
  if (!certs.ok()) return certs.status();
  if (!certs->empty()) {
    const CertificateRecord& c = certs->front();  // newest
    // A store without an outbox (Unimplemented) has nothing to say.
    if (auto intents = store_.IntentsOf(c.serial); intents.ok()) {
      out->set_registry_status(RegistryStatusLine(*intents));
    }
    out->set_serial(c.serial);
    out->set_not_after_unix(absl::ToUnixSeconds(c.not_after));
    out->set_cert_status(c.status == "valid" && c.not_after <= clock_.Now()
                             ? "expired"
                             : c.status);
  }
  return absl::OkStatus();
}

grpc::Status FleetGrpcService::ListDevices(
    grpc::ServerContext* ctx, const v1::ListDevicesRequest* req,
    grpc::ServerWriter<v1::Device>* writer) {
  auto actor = auth_.Authorize(ctx, "Fleet.ListDevices");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  // Collected first: FillDevice reads the store too.
  std::vector<SubscriberRecord> page;
  SubscriberFilter f;
  f.group = req->group();
  f.after = req->after();
  f.limit = req->limit() == 0 ? 0 : req->limit();
  f.provisioned_only = true;
  constexpr size_t kChunk = 1000;
  while (true) {
    page.clear();
    SubscriberFilter chunk = f;
    chunk.limit = f.limit == 0 ? kChunk : std::min(f.limit, kChunk);
    absl::Status s =
        store_.ListSubscribersPage(chunk, [&](const SubscriberRecord& r) {
          page.push_back(r);
          return true;
        });
    if (!s.ok()) return ToGrpcStatus(s);
    for (const SubscriberRecord& r : page) {
      v1::Device d;
      if (absl::Status st = FillDevice(r, &d); !st.ok()) {
        return ToGrpcStatus(st);
      }
      if (ctx->IsCancelled() || !writer->Write(d)) return grpc::Status::OK;
    }
    if (page.size() < chunk.limit) return grpc::Status::OK;
    f.after = page.back().imsi;
    if (f.limit != 0) {
      f.limit -= page.size();
      if (f.limit == 0) return grpc::Status::OK;
    }
  }
}

grpc::Status FleetGrpcService::GetDevice(grpc::ServerContext* ctx,
                                         const v1::GetDeviceRequest* req,
                                         v1::Device* resp) {
  auto actor = auth_.Authorize(ctx, "Fleet.GetDevice");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  // A device id first: after `devices replace` the device keeps the old
  // SIM's IMSI as its id, and the device is what this command shows (the
  // old SIM itself: `subscribers show`).
  absl::StatusOr<SubscriberRecord> sub =
      store_.GetSubscriberByDeviceId(req->id());
  if (!sub.ok() && sub.status().code() == absl::StatusCode::kNotFound &&
      IsValidImsi(req->id())) {
    sub = store_.GetSubscriber(req->id());
  }
  if (!sub.ok()) {
    if (sub.status().code() == absl::StatusCode::kNotFound) {
      return ToGrpcStatus(absl::NotFoundError(
          absl::StrCat("no device with IMSI or device id ", req->id())));
    }
    return ToGrpcStatus(sub.status());
  }
  return ToGrpcStatus(FillDevice(*sub, resp));
}

grpc::Status FleetGrpcService::QueryAudit(
    grpc::ServerContext* ctx, const v1::QueryAuditRequest* req,
    grpc::ServerWriter<v1::AuditRecord>* writer) {
  auto actor = auth_.Authorize(ctx, "Fleet.QueryAudit");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  AuditQuery q;
  q.imsi = req->imsi();
  if (req->since_unix() != 0)
    q.since = absl::FromUnixSeconds(req->since_unix());
  q.after_id = req->after();
  // In chunks, so that a slow reader never holds the store's read lock.
  constexpr size_t kChunk = 1000;
  size_t remaining = req->limit();
  std::vector<AuditEvent> chunk;
  while (true) {
    chunk.clear();
    q.limit = remaining == 0 ? kChunk : std::min(remaining, kChunk);
    absl::Status s = store_.QueryAudit(q, [&](const AuditEvent& e) {
      chunk.push_back(e);
      return true;
    });
    if (!s.ok()) return ToGrpcStatus(s);
    for (const AuditEvent& e : chunk) {
      v1::AuditRecord out;
      out.set_id(e.id);
      out.set_at_unix(absl::ToUnixSeconds(e.at));
      out.set_actor(e.actor);
      out.set_action(e.action);
      out.set_target(e.target);
      out.set_result(e.result);
      out.set_reason(e.reason);
      if (ctx->IsCancelled() || !writer->Write(out)) return grpc::Status::OK;
    }
    if (chunk.size() < q.limit) return grpc::Status::OK;
    q.after_id = chunk.back().id;
    if (remaining != 0) {
      remaining -= chunk.size();
      if (remaining == 0) return grpc::Status::OK;
    }
  }
}

}  // namespace simprov
