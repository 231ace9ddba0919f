// The agent's AT modem conversation (agent/sim/at_sim): OpenAtSim and one
// Authenticate against a pseudo-terminal whose master side answers each
// command with the next piece of the input, so the line reader, result
// codes, +CIMI/+CGSN/+CCID values, +CSIM answers and the T=0 handling
// beneath them see hostile modem output. The port hangs up when the pieces
// run out. Also the `--sim at:` spec parser.
//
// Input: one mode byte, then, mode bit 0 clear, the answers separated by
// '|' (one per command, in order); set, a spec after "at:".
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "agent/sim/at_sim.h"
#include "common/bytes.h"

namespace simprov::fuzz {
namespace {

// Answers on `master`: after each command (up to '\r'), the next piece.
// Closes the master when the pieces run out, when the agent closes its side,
// or when no command comes within a second.
void Answer(int master, std::vector<std::string> pieces) {
  std::string got;
  for (const std::string& piece : pieces) {
    while (got.find('\r') == std::string::npos) {
      pollfd p = {master, POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) goto done;
      char buf[512];
      ssize_t n = read(master, buf, sizeof buf);
      if (n <= 0) goto done;
      got.append(buf, static_cast<size_t>(n));
    }
    got.erase(0, got.find('\r') + 1);
    for (size_t off = 0; off < piece.size();) {
      ssize_t n = write(master, piece.data() + off, piece.size() - off);
      if (n <= 0) goto done;
      off += static_cast<size_t>(n);
    }
  }
done:
  close(master);
}

}  // namespace
}  // namespace simprov::fuzz

using namespace simprov;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    (void)ParseAtSimSpec(in);
    return 0;
  }
  int master = -1, slave = -1;
  char name[128];
  if (openpty(&master, &slave, name, nullptr, nullptr) != 0) abort();
  std::thread answerer(fuzz::Answer, master,
                       std::vector<std::string>(absl::StrSplit(in, '|')));
  AtSimOptions options;
  options.device = name;
  options.timeout = absl::Milliseconds(50);
  {
    // The agent opens the port by name, as a modem's. Until it has, the
    // harness keeps its own slave fd open: with no slave open, the master
    // sees a hang-up and the answerer would stop before the first command.
    absl::StatusOr<std::unique_ptr<SimCard>> sim = OpenAtSim(options);
    close(slave);
    if (sim.ok()) {
      (void)(*sim)->Imsi();
      (void)(*sim)->Identity();
      (void)(*sim)->Authenticate(Bytes(16, 0xA5), Bytes(16, 0x5A));
    }
  }  // closes the port: the answerer sees it and stops
  answerer.join();
  return 0;
}
