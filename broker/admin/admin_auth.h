// Who may call which admin RPC.
//
// The admin services (admin.proto, fleet.proto, TokenAdmin in token.proto,
// access.proto) are served on the Unix socket DIR/admin.sock, where the
// socket's file permissions are the authorization (the caller is "local",
// with every right), and on --admin-listen over TLS, where the client must
// present a certificate from the broker's admin CA (DIR/admin-ca/). The
// certificate carries the admin's role and name in one URI SAN:
//
//   urn:simprov:admin:ROLE:NAME     ROLE = viewer | operator | admin
//
// Roles are ordered: viewer (read) < operator (lifecycle) < admin
// (everything, including issuing admin certificates). Every admin RPC
// handler starts with AdminAuthorizer::Authorize(ctx, "Service.Method"),
// which looks the method up in AdminMethodRoles() — a method missing from
// the table is refused (default deny) — and returns the actor name for the
// audit trail. The broker builds one AdminAuthorizer over its
// AdminRevocations and hands it to every admin service's constructor.
#ifndef SIMPROV_BROKER_ADMIN_ADMIN_AUTH_H_
#define SIMPROV_BROKER_ADMIN_ADMIN_AUTH_H_

#include <grpcpp/grpcpp.h>
#include <openssl/x509.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

enum class AdminRole { kViewer = 0, kOperator = 1, kAdmin = 2 };

absl::string_view RoleName(AdminRole role);
std::optional<AdminRole> ParseRole(absl::string_view name);

inline constexpr absl::string_view kAdminUrnPrefix = "urn:simprov:admin:";
// The actor name of the Unix socket; never a certificate's name.
inline constexpr absl::string_view kLocalActor = "local";

// An admin name: 1..64 of [A-Za-z0-9._@-], not "local".
absl::Status CheckAdminName(absl::string_view name);
// "urn:simprov:admin:ROLE:NAME".
std::string AdminUrn(AdminRole role, absl::string_view name);

struct AdminIdentity {
  std::string name;
  AdminRole role = AdminRole::kViewer;
};

// The identity in an admin certificate's URI SAN. PermissionDenied if it
// has none (e.g. a device or server certificate) or more than one.
absl::StatusOr<AdminIdentity> AdminIdentityFromCert(X509* cert);

// Revoked admin certificates by serial, in the store (so every broker on a
// shared store refuses a revoked admin certificate at once). Older
// versions kept them in a file (DIR/admin-ca/revoked, one hex serial a
// line); Open imports that file once.
class AdminRevocations {
 public:
  // Imports the serials of `legacy_path` (if it exists) into the store,
  // then renames it to legacy_path + ".imported" so that it is read only
  // once. InvalidArgument for a bad line (nothing imported, file kept).
  static absl::StatusOr<std::unique_ptr<AdminRevocations>> Open(
      Store& store, Clock& clock, const std::string& legacy_path);
  // False for a serial that does not parse; Unavailable when the store does
  // not answer.
  absl::StatusOr<bool> IsRevoked(absl::string_view serial_hex) const;
  // Adds the serial (normalized by NormalizeSerial, common/serial.h),
  // durably; false if it was revoked already.
  absl::StatusOr<bool> Revoke(absl::string_view serial_hex);

 private:
  AdminRevocations(Store& store, Clock& clock) : store_(store), clock_(clock) {}
  Store& store_;
  Clock& clock_;
};

// Every admin RPC method ("Service.Method", e.g. "Fleet.RevokeDevice") and
// the least role that may call it.
struct AdminMethodRole {
  absl::string_view method;
  AdminRole role;
};
const std::vector<AdminMethodRole>& AdminMethodRoles();

// Who is calling an admin RPC, and whether they may. Holds the admin
// certificate revocations it checks callers over TLS against (not owned:
// they outlive every service that holds this authorizer).
class AdminAuthorizer {
 public:
  explicit AdminAuthorizer(const AdminRevocations& revocations)
      : revocations_(revocations) {}

  // The caller of an admin RPC: "local"/admin on the Unix socket, the
  // certificate's identity over TLS (PermissionDenied for a revoked admin
  // certificate). PermissionDenied otherwise.
  absl::StatusOr<AdminIdentity> CallerIdentity(
      const grpc::ServerContext* ctx) const;

  // Checks that the caller's role reaches the one `method` needs; returns
  // the actor name for the audit trail. PermissionDenied (naming the
  // caller, the method and the role it needs) otherwise.
  absl::StatusOr<std::string> Authorize(const grpc::ServerContext* ctx,
                                        absl::string_view method) const;

 private:
  const AdminRevocations& revocations_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_ADMIN_ADMIN_AUTH_H_
