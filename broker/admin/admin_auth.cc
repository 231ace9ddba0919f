#include "broker/admin/admin_auth.h"

#include <grpcpp/security/auth_context.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/serial.h"
#include "common/x509.h"

namespace simprov {

absl::string_view RoleName(AdminRole role) {
  switch (role) {
    case AdminRole::kViewer:
      return "viewer";
    case AdminRole::kOperator:
      return "operator";
    case AdminRole::kAdmin:
      return "admin";
  }
  return "viewer";
}

std::optional<AdminRole> ParseRole(absl::string_view name) {
  for (AdminRole r :
       {AdminRole::kViewer, AdminRole::kOperator, AdminRole::kAdmin}) {
    if (RoleName(r) == name) return r;
  }
  return std::nullopt;
}

absl::Status CheckAdminName(absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError("admin name must be 1..64 characters");
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '@' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "admin name \"", name, "\" may hold only A-Z a-z 0-9 . _ @ -"));
    }
  }
  if (name == kLocalActor) {
    return absl::InvalidArgumentError(
        "admin name \"local\" is reserved for the Unix socket");
  }
  return absl::OkStatus();
}

std::string AdminUrn(AdminRole role, absl::string_view name) {
  return absl::StrCat(kAdminUrnPrefix, RoleName(role), ":", name);
}

absl::StatusOr<AdminIdentity> AdminIdentityFromCert(X509* cert) {
  const CertInfo info = DescribeCert(cert);
  std::optional<AdminIdentity> found;
  for (const std::string& uri : info.uri_sans) {
    if (!absl::StartsWith(uri, kAdminUrnPrefix)) continue;
    if (found) {
      return absl::PermissionDeniedError(
          "admin certificate carries more than one admin identity");
    }
    absl::string_view rest =
        absl::string_view(uri).substr(kAdminUrnPrefix.size());
    size_t colon = rest.find(':');
    if (colon == absl::string_view::npos) break;
    auto role = ParseRole(rest.substr(0, colon));
    absl::string_view name = rest.substr(colon + 1);
    if (!role || !CheckAdminName(name).ok()) break;
    found = AdminIdentity{std::string(name), *role};
  }
  if (!found) {
    return absl::PermissionDeniedError(
        "client certificate is not an admin certificate (no " +
        std::string(kAdminUrnPrefix) + "ROLE:NAME URI)");
  }
  return *found;
}

absl::StatusOr<std::unique_ptr<AdminRevocations>> AdminRevocations::Open(
    Store& store, Clock& clock, const std::string& legacy_path) {
  auto r =
      std::unique_ptr<AdminRevocations>(new AdminRevocations(store, clock));
  if (!PathExists(legacy_path)) return r;
  auto text = ReadFileToString(legacy_path, 4 << 20);
  if (!text.ok()) return text.status();
  std::vector<std::string> serials;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto serial = NormalizeSerial(line);
    if (!serial.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          legacy_path, " line ", line_no, ": ", serial.status().message()));
    }
    serials.push_back(*serial);
  }
  for (const std::string& serial : serials) {
    auto added = store.RevokeAdminCertificate(serial, clock.Now());
    if (!added.ok()) return added.status();
  }
  const std::string imported = legacy_path + ".imported";
  if (std::rename(legacy_path.c_str(), imported.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", legacy_path,
                                            " to ", imported, ": ",
                                            std::strerror(errno)));
  }
  LogInfo("admin certificate revocations: imported %d from %s into the store",
          serials.size(), legacy_path);
  return r;
}

absl::StatusOr<bool> AdminRevocations::IsRevoked(
    absl::string_view serial_hex) const {
  auto serial = NormalizeSerial(serial_hex);
  if (!serial.ok()) return false;
  auto revoked = store_.AdminCertificateRevoked(*serial);
  if (!revoked.ok()) return absl::UnavailableError(revoked.status().message());
  return *revoked;
}

absl::StatusOr<bool> AdminRevocations::Revoke(absl::string_view serial_hex) {
  auto serial = NormalizeSerial(serial_hex);
  if (!serial.ok()) return serial.status();
  auto added = store_.RevokeAdminCertificate(*serial, clock_.Now());
  if (!added.ok()) return absl::UnavailableError(added.status().message());
  return *added;
}

absl::StatusOr<AdminIdentity> AdminAuthorizer::CallerIdentity(
    const grpc::ServerContext* ctx) const {
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  std::string security;
  if (auth != nullptr) {
    for (const auto& v :
         auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
      security.assign(v.data(), v.size());
    }
  }
  if (security == GRPC_SSL_TRANSPORT_SECURITY_TYPE) {
    // The TLS listener verified the chain to the admin CA (and nothing
    // else): only the identity inside is left to read.
    auto pems = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (pems.empty()) {
      return absl::PermissionDeniedError("no client certificate");
    }
    auto cert = CertFromPem(std::string(pems[0].data(), pems[0].size()));
    if (!cert.ok()) {
      return absl::PermissionDeniedError("client certificate does not parse");
    }
    const std::string serial = DescribeCert(cert->get()).serial_hex;
    auto revoked = revocations_.IsRevoked(serial);
    if (!revoked.ok()) return revoked.status();
    if (*revoked) {
      return absl::PermissionDeniedError(
          absl::StrCat("admin certificate ", serial, " is revoked"));
    }
    return AdminIdentityFromCert(cert->get());
  }
  if (absl::StartsWith(ctx->peer(), "unix:")) {
    return AdminIdentity{std::string(kLocalActor), AdminRole::kAdmin};
  }
  return absl::PermissionDeniedError("admin API caller is not authenticated");
}

// The role table. Reads are viewer, changes to the fleet are operator,
// anything that grants access or changes the CA is admin.
const std::vector<AdminMethodRole>& AdminMethodRoles() {
  using R = AdminRole;
  static const auto* table = new std::vector<AdminMethodRole>{
      {"Admin.ImportSubscribers", R::kOperator},
      {"Admin.ListSubscribers", R::kViewer},
      {"Admin.GetSubscriber", R::kViewer},
      {"Fleet.ApplyGroups", R::kOperator},
      {"Fleet.ListGroups", R::kViewer},
      {"Fleet.GetGroup", R::kViewer},
      {"Fleet.DeleteGroup", R::kOperator},
      {"Fleet.SetSubscriberGroup", R::kOperator},
      {"Fleet.SetSubscriberStatus", R::kOperator},
      {"Fleet.ClearImeiLock", R::kOperator},
      {"Fleet.RevokeDevice", R::kOperator},
      {"Fleet.ReplaceDevice", R::kOperator},
      {"Fleet.ListDevices", R::kViewer},
      {"Fleet.GetDevice", R::kViewer},
      {"Fleet.QueryAudit", R::kViewer},
      {"TokenAdmin.CreateApp", R::kAdmin},  // hands out a client secret
      {"TokenAdmin.RevokeToken", R::kOperator},
      {"TokenAdmin.RevokeDeviceTokens", R::kOperator},
      {"Access.IssueAdminCertificate", R::kAdmin},
      {"Access.RevokeAdminCertificate", R::kAdmin},
      {"Access.WhoAmI", R::kViewer},
      {"Access.GetCaState", R::kViewer},
      {"Access.ActivateCa", R::kAdmin},
      {"RegistryAdmin.ListPending", R::kViewer},
      {"Ops.RotateKek", R::kAdmin},
      {"Ops.Backup", R::kAdmin},  // the archive holds the CA keys and KEK
  };
  return *table;
}

absl::StatusOr<std::string> AdminAuthorizer::Authorize(
    const grpc::ServerContext* ctx, absl::string_view method) const {
  std::optional<AdminRole> needed;
  for (const AdminMethodRole& m : AdminMethodRoles()) {
    if (m.method == method) needed = m.role;
  }
  if (!needed) {
    LogError("admin method %s has no role in AdminMethodRoles(): refused",
             method);
    return absl::PermissionDeniedError(
        absl::StrCat(method, " has no role: refused"));
  }
  auto who = CallerIdentity(ctx);
  if (!who.ok()) return who.status();
  if (static_cast<int>(who->role) < static_cast<int>(*needed)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "permission denied: ", who->name, " (", RoleName(who->role),
        ") may not call ", method, ", which needs role ", RoleName(*needed)));
  }
  return who->name;
}

}  // namespace simprov
