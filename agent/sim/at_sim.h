// The USIM behind a cellular modem's AT command port (`--sim at:DEVICE`).
//
// The serial port is opened raw (termios, 8N1, no flow control). Only
// widely implemented commands are relied on: AT, ATE0 and AT+CMEE
// (optional), AT+CIMI (IMSI), AT+CGSN (IMEI, optional), AT+CCID / AT+QCCID
// / AT+ICCID (ICCID, whichever answers; optional) and AT+CSIM (3GPP TS
// 27.007 8.17) for USIM AUTHENTICATE in the 3G context.
//
// Robust to echo on or off, unsolicited result codes and garbage between
// lines, and T=0 answers (61xx / 6Cxx, see usim_apdu.h). Every command has a
// deadline: a modem that stops answering yields an error naming the command
// (kAborted), and the port is then considered dead so that no later command
// waits again.
#ifndef SIMPROV_AGENT_SIM_AT_SIM_H_
#define SIMPROV_AGENT_SIM_AT_SIM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/sim/sim.h"

namespace simprov {

struct AtSimOptions {
  std::string device;
  int baud = 115200;
  absl::Duration timeout = absl::Seconds(10);  // per command
};

// Parses the part of `--sim at:...` after "at:":
// "DEVICE[,baud=N][,timeout=T]", T in seconds ("10", "0.5") or a human
// duration ("500ms", "10s"). InvalidArgument on anything else.
absl::StatusOr<AtSimOptions> ParseAtSimSpec(absl::string_view spec);

// Opens the port, checks that a modem answers, and reads IMSI, IMEI and
// ICCID. FailedPrecondition when the port cannot be opened or the modem
// refuses (no SIM, PIN needed, ...); Aborted when it stops answering.
absl::StatusOr<std::unique_ptr<SimCard>> OpenAtSim(const AtSimOptions& options);

}  // namespace simprov

#endif  // SIMPROV_AGENT_SIM_AT_SIM_H_
