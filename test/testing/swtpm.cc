#include "test/testing/swtpm.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace simprov::testing {

namespace {

// Binds `port` (0: any) on loopback and lets it go; the port it got.
int TryPort(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof a;
  int got = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    got = ntohs(a.sin_port);
  }
  close(fd);
  return got;
}

// Two free consecutive ports: the swtpm TCTI finds the control channel at
// the command port + 1.
int FreePortPair() {
  for (int i = 0; i < 20; ++i) {
    const int p = TryPort(0);
    if (p != 0 && p < 65535 && TryPort(p + 1) == p + 1) return p;
  }
  return 0;
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::unique_ptr<Swtpm> Swtpm::Start() {
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<Swtpm> t(new Swtpm);
    t->dir_ = MakeTempDir();
    t->port_ = FreePortPair();
    const int ctrl = t->port_ + 1;
    if (t->port_ == 0) continue;
    t->process_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{
            "/usr/bin/swtpm", "socket", "--tpm2", "--server",
            absl::StrCat("type=tcp,port=", t->port_, ",bindaddr=127.0.0.1"),
            "--ctrl",
            absl::StrCat("type=tcp,port=", ctrl, ",bindaddr=127.0.0.1"),
            "--tpmstate", absl::StrCat("dir=", t->dir_), "--flags",
            "startup-clear,not-need-init"},
        t->dir_ + "/swtpm.log");
    for (int i = 0; i < 100 && t->process_->Running(); ++i) {
      if (Accepts(t->port_)) {
        t->tcti_ = absl::StrCat("swtpm:host=127.0.0.1,port=", t->port_);
        return t;
      }
      usleep(20000);
    }
    std::cerr << "swtpm did not come up: "
              << ReadFileOrEmpty(t->dir_ + "/swtpm.log") << "\n";
  }
  return nullptr;
}

Swtpm::~Swtpm() {
  if (process_) process_->Stop();
  if (!dir_.empty()) RemoveTree(dir_);
}

int Swtpm::TransientObjects() const {
  ProcessResult r =
      RunProcess({"/usr/bin/tpm2_getcap", "-T", tcti_, "handles-transient"},
                 absl::Seconds(20));
  if (r.exit_code != 0) return -1;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    if (absl::StrContains(line, "0x")) ++n;
  }
  return n;
}

}  // namespace simprov::testing
