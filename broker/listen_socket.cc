#include "broker/listen_socket.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/duration.h"

namespace simprov {

bool IsWildcard(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host.empty();
}

std::string JoinHostPort(const std::string& host, int port) {
  return host.find(':') != std::string::npos
             ? absl::StrCat("[", host, "]:", port)
             : absl::StrCat(host, ":", port);
}

std::string BindProblem(const std::string& host_port) {
  auto hp = ParseHostPort(host_port);
  if (!hp.ok() || hp->port == 0) return "";
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp->port);
  if (getaddrinfo(hp->host.empty() ? nullptr : hp->host.c_str(), port.c_str(),
                  &hints, &res) != 0) {
    return "";
  }
  std::string problem;
  for (addrinfo* a = res; a != nullptr && problem.empty(); a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1) != 0) {
      problem = errno == EADDRINUSE
                    ? "address in use (another process listens there)"
                    : strerror(errno);
    }
    close(fd);
  }
  freeaddrinfo(res);
  return problem;
}

absl::Status CannotListen(const std::string& what) {
  const std::string why = BindProblem(what);
  return absl::UnavailableError(
      absl::StrCat("cannot listen on ", what, why.empty() ? "" : ": ", why));
}

void ExclusiveSocketOptions(int sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

}  // namespace simprov
