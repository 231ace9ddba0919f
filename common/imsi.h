// The one rule for what an IMSI looks like, shared by the agent (soft SIM
// files, AT+CIMI answers, EF_IMSI) and the broker (device API, admin API).
#ifndef SIMPROV_COMMON_IMSI_H_
#define SIMPROV_COMMON_IMSI_H_

#include "absl/strings/string_view.h"

namespace simprov {

// The shortest and longest IMSI accepted, in decimal digits. 3GPP TS 23.003
// allows at most 15; 6 keeps test and private-network identities possible.
inline constexpr size_t kMinImsiDigits = 6;
inline constexpr size_t kMaxImsiDigits = 15;

// True when `imsi` is 6 to 15 ASCII decimal digits and nothing else.
bool IsValidImsi(absl::string_view imsi);

}  // namespace simprov

#endif  // SIMPROV_COMMON_IMSI_H_
