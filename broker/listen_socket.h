// The broker's listening sockets: host:port helpers, why a bind failed,
// and the socket options every listener uses.
#ifndef SIMPROV_BROKER_LISTEN_SOCKET_H_
#define SIMPROV_BROKER_LISTEN_SOCKET_H_

#include <string>

#include "absl/status/status.h"

namespace simprov {

// A wildcard (or empty) listen host: any address.
bool IsWildcard(const std::string& host);
// "HOST:PORT", with an IPv6 host in brackets.
std::string JoinHostPort(const std::string& host, int port);
// Why a listener could not bind HOST:PORT: tries the bind itself the way
// the servers do (SO_REUSEADDR, never SO_REUSEPORT). "address in use" when
// another process listens there; empty when the bind works now.
std::string BindProblem(const std::string& host_port);
// Unavailable "cannot listen on WHAT: why".
absl::Status CannotListen(const std::string& what);
// Listening sockets are this broker's alone: SO_REUSEADDR so a restart
// binds while old connections linger in TIME_WAIT, but never SO_REUSEPORT
// (with it a second broker binds the same port and the kernel splits the
// connections between the two).
void ExclusiveSocketOptions(int sock);

}  // namespace simprov

#endif  // SIMPROV_BROKER_LISTEN_SOCKET_H_
