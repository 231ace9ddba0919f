// SIM access: what the agent needs from a USIM, whatever carries it
// (software SIM now; a modem's AT+CSIM and PC/SC readers implement the same
// interface).
#ifndef SIMPROV_AGENT_SIM_SIM_H_
#define SIMPROV_AGENT_SIM_SIM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/bytes.h"

namespace simprov {

// The USIM's answer to AUTHENTICATE (TS 31.102 7.1.2).
struct SimAuthResult {
  enum class Kind {
    kSuccess,      // RES, CK, IK
    kSyncFailure,  // AUTS: the SIM finds SQN stale; resynchronise
    kMacFailure,   // the SIM rejected AUTN's MAC: the network lacks its key
  };
  Kind kind = Kind::kMacFailure;
  Bytes res, ck, ik;
  Bytes auts;
  SimAuthResult() = default;
  SimAuthResult(SimAuthResult&&) = default;
  SimAuthResult& operator=(SimAuthResult&&) = default;
  ~SimAuthResult() {
    SecureWipe(res);
    SecureWipe(ck);
    SecureWipe(ik);
  }
};

struct DeviceIdentity {
  std::string imei;
  std::string iccid;
};

class SimCard {
 public:
  virtual ~SimCard() = default;
  virtual absl::StatusOr<std::string> Imsi() = 0;
  virtual absl::StatusOr<SimAuthResult> Authenticate(const Bytes& rand,
                                                     const Bytes& autn) = 0;
  // IMEI/ICCID when the SIM or modem knows them; empty otherwise.
  virtual DeviceIdentity Identity() = 0;
};

// Opens a SIM from a --sim spec: "soft:FILE".
absl::StatusOr<std::unique_ptr<SimCard>> OpenSim(absl::string_view spec);

}  // namespace simprov

#endif  // SIMPROV_AGENT_SIM_SIM_H_
