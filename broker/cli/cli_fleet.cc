// simprov groups|devices|audit and the lifecycle subcommands of
// `simprov subscribers` (suspend, resume, terminate, set-group,
// clear-imei-lock). See docs/fleet.md.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "broker/cli/cli_common.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/serial.h"
#include "simprov/v1/fleet.grpc.pb.h"

namespace simprov {
namespace {

using nlohmann::json;

constexpr size_t kMaxGroupsFile = 1024 * 1024;

struct Paging {
  bool json = false;
  uint32_t limit = 0;
  std::string after;
};

void AddPaging(CLI::App* cmd, Paging& p) {
  cmd->add_flag("--json", p.json, "One JSON object per line");
  cmd->add_option("--limit", p.limit,
                  "At most N rows (0: all); when the page is full the "
                  "cursor for the next page is printed on stderr");
  cmd->add_option("--after", p.after,
                  "Continue after this cursor (from the previous page)");
}

void PrintNextPage(const Paging& p, size_t rows, const std::string& cursor) {
  if (p.limit != 0 && rows == p.limit) {
    std::cerr << "next page: --after " << cursor << "\n";
  }
}

// Runs `fn(stub, where)`; exits through Fail on a channel problem.
template <typename Fn>
int WithFleet(const CliContext& g, Fn fn) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::Fleet::NewStub(*channel);
  return fn(*stub, where);
}

void SetDeadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }
std::string TimeOrDash(int64_t unix) {
  return unix == 0 ? "-" : FormatTime(unix);
}

// ---- groups ----------------------------------------------------------------

int GroupsApply(const CliContext& g, const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("cannot open ", file)));
  }
  std::string text(kMaxGroupsFile + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxGroupsFile) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat(file, ": larger than 1 MiB")));
  }
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::ApplyGroupsRequest req;
        req.set_groups_json(text);
        v1::ApplyGroupsResponse resp;
        grpc::Status st = stub.ApplyGroups(&ctx, req, &resp);
        if (!st.ok()) {
          absl::Status s = Explain(st, where);
          return Fail(
              absl::Status(s.code(), absl::StrCat(file, ": ", s.message())));
        }
        if (g.json) {
          PrintJson({{"applied",
                      json(std::vector<std::string>(resp.applied().begin(),
                                                    resp.applied().end()))}});
          return kExitOk;
        }
        std::cout << "applied " << resp.applied_size()
                  << " groups: " << absl::StrJoin(resp.applied(), ", ") << "\n";
        return kExitOk;
      });
}

json GroupJson(const v1::Group& gr) {
  json j = {
      {"name", gr.name()},
      {"subscribers", gr.subscribers()},
      {"implicit", gr.implicit()},
      {"updated", gr.updated_unix() == 0 ? "" : FormatTime(gr.updated_unix())}};
  json policy = json::parse(gr.policy_json(), nullptr, false);
  j["policy"] = policy.is_discarded() ? json::object() : policy;
  return j;
}

int GroupsList(const CliContext& g, const Paging& p) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        v1::ListGroupsRequest req;
        req.set_after(p.after);
        req.set_limit(p.limit);
        auto reader = stub.ListGroups(&ctx, req);
        v1::Group gr;
        size_t rows = 0;
        std::string last;
        if (!p.json) {
          std::cout << absl::StrFormat("%-24s %-11s %-20s %s\n", "NAME",
                                       "SUBSCRIBERS", "UPDATED", "POLICY");
        }
        while (reader->Read(&gr)) {
          ++rows;
          last = gr.name();
          if (p.json) {
            std::cout << GroupJson(gr).dump() << "\n";
          } else {
            std::cout << absl::StrFormat(
                "%-24s %-11d %-20s %s\n", gr.name(), gr.subscribers(),
                TimeOrDash(gr.updated_unix()),
                gr.implicit() ? "(implicit: broker flags)" : "stored");
          }
        }
        grpc::Status st = reader->Finish();
        if (!st.ok()) return Fail(Explain(st, where));
        PrintNextPage(p, rows, last);
        return kExitOk;
      });
}

int GroupsShow(const CliContext& g, const std::string& name, bool as_json) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::GetGroupRequest req;
        req.set_name(name);
        v1::Group gr;
        grpc::Status st = stub.GetGroup(&ctx, req, &gr);
        if (!st.ok()) return Fail(Explain(st, where));
        json j = GroupJson(gr);
        if (as_json) {
          std::cout << j.dump() << "\n";
          return kExitOk;
        }
        std::cout << "name:        " << gr.name() << "\n"
                  << "subscribers: " << gr.subscribers() << "\n"
                  << "updated:     " << TimeOrDash(gr.updated_unix()) << "\n"
                  << "policy:      "
                  << (gr.implicit() ? "(implicit: subject CN=#{imsi}, the "
                                      "broker's --cert-ttl, every key type)"
                                    : j["policy"].dump(2))
                  << "\n";
        return kExitOk;
      });
}

int GroupsDelete(const CliContext& g, const std::string& name) {
  return WithFleet(g,
                   [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
                     grpc::ClientContext ctx;
                     SetDeadline(ctx);
                     v1::DeleteGroupRequest req;
                     req.set_name(name);
                     v1::DeleteGroupResponse resp;
                     grpc::Status st = stub.DeleteGroup(&ctx, req, &resp);
                     if (!st.ok()) return Fail(Explain(st, where));
                     if (g.json) {
                       PrintJson({{"deleted", name}});
                       return kExitOk;
                     }
                     std::cout << "deleted group " << name << "\n";
                     return kExitOk;
                   });
}

// ---- subscriber lifecycle
// ----------------------------------------------------

int SetStatus(const CliContext& g, const std::string& imsi,
              const std::string& action) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::SetSubscriberStatusRequest req;
        req.set_imsi(imsi);
        req.set_action(action);
        v1::LifecycleResponse resp;
        grpc::Status st = stub.SetSubscriberStatus(&ctx, req, &resp);
        if (!st.ok()) return Fail(Explain(st, where));
        if (g.json) {
          PrintJson({{"imsi", imsi}, {"status", resp.status()}});
          return kExitOk;
        }
        std::cout << "subscriber " << imsi << " is " << resp.status() << "\n";
        return kExitOk;
      });
}

int SetGroup(const CliContext& g, const std::string& imsi,
             const std::string& group) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::SetSubscriberGroupRequest req;
        req.set_imsi(imsi);
        req.set_group(group);
        v1::LifecycleResponse resp;
        grpc::Status st = stub.SetSubscriberGroup(&ctx, req, &resp);
        if (!st.ok()) return Fail(Explain(st, where));
        if (g.json) {
          PrintJson(
              {{"imsi", imsi}, {"group", group}, {"status", resp.status()}});
          return kExitOk;
        }
        std::cout << "subscriber " << imsi << " is in group " << group
                  << " (applies at its next issuance or renewal)\n";
        return kExitOk;
      });
}

int ClearImeiLock(const CliContext& g, const std::string& imsi) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::ClearImeiLockRequest req;
        req.set_imsi(imsi);
        v1::LifecycleResponse resp;
        grpc::Status st = stub.ClearImeiLock(&ctx, req, &resp);
        if (!st.ok()) return Fail(Explain(st, where));
        if (g.json) {
          PrintJson({{"imsi", imsi}, {"status", resp.status()}});
          return kExitOk;
        }
        std::cout << "subscriber " << imsi
                  << ": IMEI lock cleared; the next IMEI seen binds\n";
        return kExitOk;
      });
}

// ---- devices ---------------------------------------------------------------

int Revoke(const CliContext& g, const std::string& imsi,
           const std::string& serial, const std::string& reason) {
  if (imsi.empty() == serial.empty()) {
    return Fail(absl::InvalidArgumentError(
        "devices revoke: name an IMSI or --serial S (not both)"));
  }
  std::string normalized;
  if (!serial.empty()) {
    auto n = NormalizeSerial(serial);
    if (!n.ok()) return Fail(n.status());
    normalized = *n;
  }
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::RevokeDeviceRequest req;
        req.set_imsi(imsi);
        req.set_serial(normalized);
        req.set_reason(reason);
        v1::RevokeDeviceResponse resp;
        grpc::Status st = stub.RevokeDevice(&ctx, req, &resp);
        if (!st.ok()) return Fail(Explain(st, where));
        if (g.json) {
          PrintJson(
              {{"revoked", json(std::vector<std::string>(
                               resp.serials().begin(), resp.serials().end()))},
               {"crl_number", resp.crl_number()}});
          return kExitOk;
        }
        if (resp.serials().empty()) {
          std::cout << "nothing to revoke (no valid certificate); CRL "
                       "regenerated\n";
        } else {
          std::cout << "revoked " << resp.serials_size() << " certificate"
                    << (resp.serials_size() == 1 ? "" : "s") << ": "
                    << absl::StrJoin(resp.serials(), ", ")
                    << "; CRL regenerated\n";
        }
        return kExitOk;
      });
}

int Replace(const CliContext& g, const std::string& old_imsi,
            const std::string& new_imsi) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::ReplaceDeviceRequest req;
        req.set_old_imsi(old_imsi);
        req.set_new_imsi(new_imsi);
        v1::ReplaceDeviceResponse resp;
        grpc::Status st = stub.ReplaceDevice(&ctx, req, &resp);
        if (!st.ok()) return Fail(Explain(st, where));
        if (g.json) {
          PrintJson({{"device_id", resp.device_id()},
                     {"old_imsi", old_imsi},
                     {"new_imsi", new_imsi},
                     {"revoked", json(std::vector<std::string>(
                                     resp.revoked_serials().begin(),
                                     resp.revoked_serials().end()))}});
          return kExitOk;
        }
        std::cout << "device " << resp.device_id() << ": SIM " << old_imsi
                  << " replaced by " << new_imsi << "; revoked "
                  << resp.revoked_serials_size() << " certificate"
                  << (resp.revoked_serials_size() == 1 ? "" : "s")
                  << "; the new SIM provisions by itself\n";
        return kExitOk;
      });
}

json DeviceJson(const v1::Device& d) {
  return {{"imsi", d.imsi()},
          {"device_id", d.device_id()},
          {"group", d.group()},
          {"status", d.status()},
          {"imei", d.imei()},
          {"iccid", d.iccid()},
          {"serial", d.serial()},
          {"not_after",
           d.not_after_unix() == 0 ? "" : FormatTime(d.not_after_unix())},
          {"cert_status", d.cert_status()},
          {"last_seen",
           d.last_seen_unix() == 0 ? "" : FormatTime(d.last_seen_unix())},
          {"registry_status", d.registry_status()},
          {"replaced_by", d.replaced_by()}};
}

int DevicesList(const CliContext& g, const std::string& group,
                const Paging& p) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        v1::ListDevicesRequest req;
        req.set_group(group);
        req.set_after(p.after);
        req.set_limit(p.limit);
        auto reader = stub.ListDevices(&ctx, req);
        if (!p.json) {
          std::cout << absl::StrFormat(
              "%-16s %-16s %-12s %-10s %-34s %-8s %-20s "
              "%-20s %s\n",
              "IMSI", "DEVICE_ID", "GROUP", "STATUS", "SERIAL", "CERT",
              "EXPIRES", "LAST_SEEN", "REGISTRY");
        }
        v1::Device d;
        size_t rows = 0;
        std::string last;
        while (reader->Read(&d)) {
          ++rows;
          last = d.imsi();
          if (p.json) {
            std::cout << DeviceJson(d).dump() << "\n";
            continue;
          }
          std::cout << absl::StrFormat(
              "%-16s %-16s %-12s %-10s %-34s %-8s %-20s %-20s %s\n", d.imsi(),
              OrDash(d.device_id()), d.group(), d.status(), OrDash(d.serial()),
              OrDash(d.cert_status()), TimeOrDash(d.not_after_unix()),
              TimeOrDash(d.last_seen_unix()), d.registry_status());
        }
        grpc::Status st = reader->Finish();
        if (!st.ok()) return Fail(Explain(st, where));
        PrintNextPage(p, rows, last);
        return kExitOk;
      });
}

int DevicesShow(const CliContext& g, const std::string& id, bool as_json) {
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        v1::GetDeviceRequest req;
        req.set_id(id);
        v1::Device d;
        grpc::Status st = stub.GetDevice(&ctx, req, &d);
        if (!st.ok()) return Fail(Explain(st, where));
        if (as_json) {
          std::cout << DeviceJson(d).dump() << "\n";
          return kExitOk;
        }
        std::cout << "imsi:        " << d.imsi() << "\n"
                  << "device_id:   " << OrDash(d.device_id()) << "\n"
                  << "group:       " << d.group() << "\n"
                  << "status:      " << d.status() << "\n"
                  << "imei:        " << OrDash(d.imei()) << "\n"
                  << "iccid:       " << OrDash(d.iccid()) << "\n"
                  << "serial:      " << OrDash(d.serial()) << "\n"
                  << "certificate: " << OrDash(d.cert_status()) << "\n"
                  << "expires:     " << TimeOrDash(d.not_after_unix()) << "\n"
                  << "last_seen:   " << TimeOrDash(d.last_seen_unix()) << "\n"
                  << "registry:    " << d.registry_status() << "\n";
        if (!d.replaced_by().empty()) {
          std::cout << "replaced_by: " << d.replaced_by() << "\n";
        }
        return kExitOk;
      });
}

// ---- audit -----------------------------------------------------------------

// RFC 3339 ("2026-11-28T04:00:00Z") or a duration ago ("1h").
absl::StatusOr<int64_t> ParseSince(const std::string& text) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::ToUnixSeconds(t);
  }
  auto d = ParseHumanDuration(text);
  if (d.ok()) return absl::ToUnixSeconds(absl::Now() - *d);
  return absl::InvalidArgumentError(absl::StrCat(
      "--since: \"", text,
      "\" is neither an RFC 3339 time (2026-11-28T04:00:00Z) nor a duration "
      "ago (90m, 2h, 7d)"));
}

int Audit(const CliContext& g, const std::string& imsi,
          const std::string& since, const Paging& p) {
  int64_t since_unix = 0;
  if (!since.empty()) {
    auto s = ParseSince(since);
    if (!s.ok()) return Fail(s.status());
    since_unix = *s;
  }
  int64_t after = 0;
  if (!p.after.empty() && !absl::SimpleAtoi(p.after, &after)) {
    return Fail(absl::InvalidArgumentError("--after must be a record id"));
  }
  return WithFleet(
      g, [&](v1::Fleet::Stub& stub, const std::string& where) -> int {
        grpc::ClientContext ctx;
        v1::QueryAuditRequest req;
        req.set_imsi(imsi);
        req.set_since_unix(since_unix);
        req.set_after(after);
        req.set_limit(p.limit);
        auto reader = stub.QueryAudit(&ctx, req);
        if (!p.json) {
          std::cout << absl::StrFormat("%-8s %-20s %-16s %-16s %-16s %-8s %s\n",
                                       "ID", "TIME", "ACTOR", "ACTION",
                                       "TARGET", "RESULT", "REASON");
        }
        v1::AuditRecord r;
        size_t rows = 0;
        int64_t last = 0;
        while (reader->Read(&r)) {
          ++rows;
          last = r.id();
          if (p.json) {
            std::cout << json{{"id", r.id()},
                              {"time", FormatTime(r.at_unix())},
                              {"actor", r.actor()},
                              {"action", r.action()},
                              {"target", r.target()},
                              {"result", r.result()},
                              {"reason", r.reason()}}
                             .dump()
                      << "\n";
            continue;
          }
          std::cout << absl::StrFormat(
              "%-8d %-20s %-16s %-16s %-16s %-8s %s\n", r.id(),
              FormatTime(r.at_unix()), r.actor(), r.action(),
              OrDash(r.target()), r.result(), r.reason());
        }
        grpc::Status st = reader->Finish();
        if (!st.ok()) return Fail(Explain(st, where));
        PrintNextPage(p, rows, absl::StrCat(last));
        return kExitOk;
      });
}

}  // namespace

void AddFleetCommands(CLI::App& app, CliContext& ctx) {
  // groups
  auto* groups = app.add_subcommand("groups", "Manage group policies");
  groups->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto name = std::make_shared<std::string>();
  auto paging = std::make_shared<Paging>();
  auto as_json = std::make_shared<bool>(false);
  auto* apply = groups->add_subcommand(
      "apply", "Create or update the groups of a JSON file (all or nothing)");
  apply->add_option("FILE", *file, "{\"groups\": [{\"name\": ...}, ...]}")
      ->required();
  AddJsonFlag(apply, ctx);
  apply->callback([&ctx, file] { ctx.rc = GroupsApply(ctx, *file); });
  auto* glist = groups->add_subcommand("list", "List groups");
  AddPaging(glist, *paging);
  glist->callback([&ctx, paging] { ctx.rc = GroupsList(ctx, *paging); });
  auto* gshow = groups->add_subcommand("show", "Show a group's policy");
  gshow->add_option("NAME", *name, "Group name")->required();
  gshow->add_flag("--json", *as_json, "As one JSON object");
  gshow->callback(
      [&ctx, name, as_json] { ctx.rc = GroupsShow(ctx, *name, *as_json); });
  auto* gdel = groups->add_subcommand(
      "delete", "Delete a group (refused while subscribers belong to it)");
  gdel->add_option("NAME", *name, "Group name")->required();
  AddJsonFlag(gdel, ctx);
  gdel->callback([&ctx, name] { ctx.rc = GroupsDelete(ctx, *name); });

  // subscribers lifecycle (the group is created by AddSubscriberCommands)
  CLI::App* subs = app.get_subcommand("subscribers");
  auto imsi = std::make_shared<std::string>();
  auto group = std::make_shared<std::string>();
  for (const char* action : {"suspend", "resume", "terminate"}) {
    std::string help =
        std::string(action) == "suspend"
            ? "Refuse the SIM at bootstrap, renewal and token issuance until "
              "resumed"
        : std::string(action) == "resume"
            ? "Reactivate a suspended (or replaced) SIM"
            : "Refuse the SIM for good (resume does not undo it)";
    auto* c = subs->add_subcommand(action, help);
    c->add_option("IMSI", *imsi, "The subscriber's IMSI")->required();
    AddJsonFlag(c, ctx);
    std::string a = action;
    c->callback([&ctx, imsi, a] { ctx.rc = SetStatus(ctx, *imsi, a); });
  }
  auto* sg = subs->add_subcommand(
      "set-group", "Move a subscriber to a group (applies at next issuance)");
  sg->add_option("IMSI", *imsi, "The subscriber's IMSI")->required();
  sg->add_option("GROUP", *group, "An existing group")->required();
  AddJsonFlag(sg, ctx);
  sg->callback([&ctx, imsi, group] { ctx.rc = SetGroup(ctx, *imsi, *group); });
  auto* cil = subs->add_subcommand(
      "clear-imei-lock", "Forget the bound IMEI; the next IMEI seen binds");
  cil->add_option("IMSI", *imsi, "The subscriber's IMSI")->required();
  AddJsonFlag(cil, ctx);
  cil->callback([&ctx, imsi] { ctx.rc = ClearImeiLock(ctx, *imsi); });

  // devices
  auto* devices = app.add_subcommand("devices", "Provisioned devices");
  devices->require_subcommand(1);
  auto serial = std::make_shared<std::string>();
  auto reason = std::make_shared<std::string>();
  auto* rev = devices->add_subcommand(
      "revoke",
      "Revoke a device's certificates (or one serial); the CRL is "
      "regenerated before this returns");
  rev->add_option("IMSI", *imsi, "The device's IMSI (all valid certificates)");
  rev->add_option("--serial", *serial,
                  "Revoke only this certificate (hex, as simprov or openssl "
                  "prints it)");
  rev->add_option("--reason", *reason,
                  "RFC 5280 reason: unspecified, keyCompromise, cACompromise, "
                  "affiliationChanged, superseded, cessationOfOperation, "
                  "privilegeWithdrawn, aACompromise");
  AddJsonFlag(rev, ctx);
  rev->callback([&ctx, imsi, serial, reason] {
    ctx.rc = Revoke(ctx, *imsi, *serial, *reason);
  });
  auto old_imsi = std::make_shared<std::string>();
  auto new_imsi = std::make_shared<std::string>();
  auto* rep = devices->add_subcommand(
      "replace",
      "Give a device a new SIM: NEW_IMSI inherits the device id and group, "
      "OLD_IMSI's certificates are revoked and it is marked replaced");
  rep->add_option("OLD_IMSI", *old_imsi, "The SIM being replaced")->required();
  rep->add_option("NEW_IMSI", *new_imsi, "The new SIM (imported, unused)")
      ->required();
  AddJsonFlag(rep, ctx);
  rep->callback([&ctx, old_imsi, new_imsi] {
    ctx.rc = Replace(ctx, *old_imsi, *new_imsi);
  });
  auto* dlist = devices->add_subcommand("list", "List provisioned devices");
  dlist->add_option("--group", *group, "Only this group");
  AddPaging(dlist, *paging);
  dlist->callback(
      [&ctx, group, paging] { ctx.rc = DevicesList(ctx, *group, *paging); });
  auto* dshow = devices->add_subcommand("show", "Show one device");
  dshow->add_option("ID", *name, "IMSI or device id")->required();
  dshow->add_flag("--json", *as_json, "As one JSON object");
  dshow->callback(
      [&ctx, name, as_json] { ctx.rc = DevicesShow(ctx, *name, *as_json); });

  // audit
  auto* audit = app.add_subcommand("audit", "Read the audit trail");
  auto since = std::make_shared<std::string>();
  audit->add_option("--imsi", *imsi, "Only records whose actor or target is I");
  audit->add_option("--since", *since,
                    "Only records at or after T (RFC 3339, or a duration ago "
                    "such as 2h)");
  AddPaging(audit, *paging);
  audit->callback([&ctx, imsi, since, paging] {
    ctx.rc = Audit(ctx, *imsi, *since, *paging);
  });
}

}  // namespace simprov
