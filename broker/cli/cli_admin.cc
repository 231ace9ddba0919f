// simprov admin issue-cert|revoke-cert|whoami, ca status|activate
// (docs/broker.md).
#include <openssl/crypto.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "broker/cli/cli_common.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/serial.h"
#include "common/x509.h"
#include "simprov/v1/access.grpc.pb.h"

namespace simprov {
namespace {

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(30);
}

// Calls the Access service: `call(stub, ctx)` with a 30 s deadline. The
// exit code: 0, or the failure explained in one line.
template <typename F>
int CallAccess(const CliContext& g, F call) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::Access::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  grpc::Status st = call(*stub, ctx);
  if (!st.ok()) return Fail(Explain(st, where));
  return kExitOk;
}

struct IssueArgs {
  std::string role;
  std::string out;
  std::string name;
  std::string ttl = "90d";
  bool force = false;
};

std::string DefaultName() {
  const char* user = getenv("USER");
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string name = user != nullptr && *user != '\0' ? user : "admin";
  if (host[0] != '\0') absl::StrAppend(&name, "@", host);
  return name.substr(0, 64);
}

int IssueCert(const CliContext& g, const IssueArgs& a) {
  auto ttl = ParseHumanDuration(a.ttl);
  if (!ttl.ok()) return Fail(ttl.status());
  const std::string key_path = a.out + "/admin.key";
  if (!a.force && PathExists(key_path)) {
    return Fail(absl::AlreadyExistsError(
        absl::StrCat(key_path, " already exists (--force replaces it)")));
  }
  // The key is made here and never leaves this machine.
  EvpPkeyPtr key = GenerateP256Key();
  auto pub = PublicKeyToDer(key.get());
  if (!pub.ok()) return Fail(pub.status());
  v1::IssueAdminCertificateRequest req;
  req.set_role(a.role);
  req.set_name(a.name.empty() ? DefaultName() : a.name);
  req.set_ttl_seconds(absl::ToInt64Seconds(*ttl));
  req.set_public_key_der(std::string(pub->begin(), pub->end()));
  v1::IssueAdminCertificateResponse resp;
  if (int rc =
          CallAccess(g,
                     [&](v1::Access::Stub& stub, grpc::ClientContext& ctx) {
                       return stub.IssueAdminCertificate(&ctx, req, &resp);
                     });
      rc != kExitOk) {
    return rc;
  }
  if (absl::Status s = MakeDirectories(a.out, 0700); !s.ok()) return Fail(s);
  auto key_pem = PrivateKeyToPkcs8Pem(key.get());
  if (!key_pem.ok()) return Fail(key_pem.status());
  // Key first: a certificate on disk always has its key.
  absl::Status s = WriteFileAtomic(key_path, *key_pem, 0600);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (s.ok()) s = WriteFileAtomic(a.out + "/admin.pem", resp.chain_pem(), 0644);
  if (s.ok()) s = WriteFileAtomic(a.out + "/ca.pem", resp.ca_pem(), 0644);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson({{"name", req.name()},
               {"role", a.role},
               {"serial", resp.serial()},
               {"not_after", FormatTime(resp.not_after_unix())},
               {"dir", a.out}});
    return kExitOk;
  }
  std::cout << "admin certificate for " << req.name() << " (" << a.role
            << "), serial " << resp.serial() << ", valid until "
            << FormatTime(resp.not_after_unix()) << ": " << a.out << "\n";
  return kExitOk;
}

int WhoAmI(const CliContext& g) {
  v1::WhoAmIResponse resp;
  int rc = CallAccess(g, [&](v1::Access::Stub& stub, grpc::ClientContext& ctx) {
    return stub.WhoAmI(&ctx, v1::WhoAmIRequest(), &resp);
  });
  if (rc != kExitOk) return rc;
  if (g.json) {
    PrintJson({{"name", resp.name()}, {"role", resp.role()}});
    return kExitOk;
  }
  std::cout << resp.name() << " " << resp.role() << "\n";
  return kExitOk;
}

int RevokeCert(const CliContext& g, const std::string& serial) {
  auto normalized = NormalizeSerial(serial);
  if (!normalized.ok()) return Fail(normalized.status());
  v1::RevokeAdminCertificateRequest req;
  req.set_serial(*normalized);
  v1::RevokeAdminCertificateResponse resp;
  int rc = CallAccess(g, [&](v1::Access::Stub& stub, grpc::ClientContext& ctx) {
    return stub.RevokeAdminCertificate(&ctx, req, &resp);
  });
  if (rc != kExitOk) return rc;
  if (g.json) {
    PrintJson({{"serial", resp.serial()},
               {"already_revoked", resp.already_revoked()}});
    return kExitOk;
  }
  std::cout << "admin certificate " << resp.serial()
            << (resp.already_revoked() ? " was already revoked"
                                       : " revoked: it is refused from now on")
            << "\n";
  return kExitOk;
}

nlohmann::json CaStateJson(const v1::CaStateResponse& r) {
  nlohmann::json j = {{"active",
                       {{"subject", r.active_subject()},
                        {"serial", r.active_serial()},
                        {"not_after", FormatTime(r.active_not_after_unix())}}},
                      {"staged", nullptr},
                      {"retired", r.retired()}};
  if (r.staged()) {
    j["staged"] = {{"subject", r.staged_subject()},
                   {"root_subject", r.staged_root_subject()},
                   {"activate_at", FormatTime(r.activate_at_unix())}};
  }
  return j;
}

void PrintCaState(const v1::CaStateResponse& r) {
  std::cout << "active:  " << r.active_subject() << " (serial "
            << r.active_serial() << ", until "
            << FormatTime(r.active_not_after_unix()) << ")\n";
  if (r.staged()) {
    std::cout << "staged:  " << r.staged_subject() << " under "
              << r.staged_root_subject() << ", signs from "
              << FormatTime(r.activate_at_unix()) << "\n";
  } else {
    std::cout << "staged:  none\n";
  }
  std::cout << "retired: " << r.retired() << "\n";
}

int CaStatus(const CliContext& g, bool activate) {
  v1::CaStateResponse resp;
  int rc = CallAccess(g, [&](v1::Access::Stub& stub, grpc::ClientContext& ctx) {
    return activate ? stub.ActivateCa(&ctx, v1::ActivateCaRequest(), &resp)
                    : stub.GetCaState(&ctx, v1::GetCaStateRequest(), &resp);
  });
  if (rc != kExitOk) return rc;
  if (g.json) {
    PrintJson(CaStateJson(resp));
    return kExitOk;
  }
  PrintCaState(resp);
  return kExitOk;
}

}  // namespace

void AddAdminCommands(CLI::App& app, CliContext& ctx) {
  CLI::App* admin =
      app.add_subcommand("admin", "Remote admin access (admin certificates)");
  admin->require_subcommand(1);
  auto issue = std::make_shared<IssueArgs>();
  CLI::App* ic = admin->add_subcommand(
      "issue-cert",
      "Issue an admin certificate (role admin needed) and write admin.key, "
      "admin.pem and ca.pem into --out");
  ic->add_option("--role", issue->role, "viewer, operator or admin")
      ->required()
      ->check(CLI::IsMember({"viewer", "operator", "admin"}));
  ic->add_option("--out", issue->out, "Directory to write into (0700)")
      ->required();
  ic->add_option("--name", issue->name,
                 "The admin's name in the audit trail (default USER@HOST)");
  ic->add_option("--ttl", issue->ttl, "Certificate lifetime (at most 731d)")
      ->capture_default_str();
  ic->add_flag("--force", issue->force, "Replace an existing admin.key");
  AddJsonFlag(ic, ctx);
  ic->callback([&ctx, issue] { ctx.rc = IssueCert(ctx, *issue); });
  auto serial = std::make_shared<std::string>();
  CLI::App* rc = admin->add_subcommand(
      "revoke-cert",
      "Revoke an admin certificate by serial (role admin): the broker "
      "refuses it from the next call on");
  rc->add_option("SERIAL", *serial,
                 "Serial as issue-cert or openssl printed it")
      ->required();
  AddJsonFlag(rc, ctx);
  rc->callback([&ctx, serial] { ctx.rc = RevokeCert(ctx, *serial); });
  CLI::App* who = admin->add_subcommand(
      "whoami", "Print the name and role the broker sees");
  AddJsonFlag(who, ctx);
  who->callback([&ctx] { ctx.rc = WhoAmI(ctx); });

  CLI::App* ca = app.add_subcommand("ca", "The device CA and its rollover");
  ca->require_subcommand(1);
  CLI::App* status =
      ca->add_subcommand("status", "Active, staged and retired CAs");
  AddJsonFlag(status, ctx);
  status->callback([&ctx] { ctx.rc = CaStatus(ctx, false); });
  CLI::App* activate = ca->add_subcommand(
      "activate", "Let the staged CA sign from now on (role admin)");
  AddJsonFlag(activate, ctx);
  activate->callback([&ctx] { ctx.rc = CaStatus(ctx, true); });
}

}  // namespace simprov
