// The USIM in a PC/SC smart-card reader (`--sim pcsc[:READER]`), through
// pcsclite and pcscd.
//
// On open: picks the reader (the named one, or the first that holds a
// card), connects in shared mode (T=0 or T=1), finds the USIM application
// in EF_DIR (2F00), selects it by AID, reads EF_IMSI (6F07) and EF_ICCID
// (2FE2, optional). AUTHENTICATE re-selects the application first, inside
// a PC/SC transaction, since another program sharing the card may have
// selected something else. T=0 answers (61xx / 6Cxx) are handled (see
// usim_apdu.h).
#ifndef SIMPROV_AGENT_SIM_PCSC_SIM_H_
#define SIMPROV_AGENT_SIM_PCSC_SIM_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/sim/sim.h"

namespace simprov {

// `reader` is a reader's full name, or a part of it that names exactly one
// reader; empty: the first reader holding a card. FailedPrecondition with a
// clear message when pcscd is not running, there is no reader, no card, or
// the card holds no USIM.
absl::StatusOr<std::unique_ptr<SimCard>> OpenPcscSim(absl::string_view reader);

}  // namespace simprov

#endif  // SIMPROV_AGENT_SIM_PCSC_SIM_H_
