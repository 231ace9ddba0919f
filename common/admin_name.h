// The admin API's TLS server name. The broker's remote admin listener
// (--admin-listen) presents a certificate for this name from its admin CA,
// and the CLI checks it against that CA: the listener may be a wildcard
// address, and the admin CA belongs to this one broker.
#ifndef SIMPROV_COMMON_ADMIN_NAME_H_
#define SIMPROV_COMMON_ADMIN_NAME_H_

namespace simprov {

inline constexpr char kAdminServerName[] = "simprov-admin";

}  // namespace simprov

#endif  // SIMPROV_COMMON_ADMIN_NAME_H_
