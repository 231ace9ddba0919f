// A software USIM, for tests and SIM-less devices.
//
// File format (JSON): {"imsi": "...", "k": "<32 hex>", "opc": "<32 hex>",
// optional "iccid", "imei", and "seq_ms": [32 integers]}. Like a real USIM
// it keeps SEQ_MS per IND slot (TS 33.102 Annex C): it rejects a stale or
// replayed AUTN and answers with AUTS. The state is persisted atomically
// into the same file before a RES is released, as a card commits its
// EEPROM before answering.
#ifndef SIMPROV_AGENT_SIM_SOFT_SIM_H_
#define SIMPROV_AGENT_SIM_SOFT_SIM_H_

#include <mutex>
#include <optional>

#include "agent/sim/sim.h"
#include "common/milenage.h"
#include "common/sqn.h"

namespace simprov {

class SoftSim : public SimCard {
 public:
  // Loads a soft SIM file; state changes are written back to it.
  static absl::StatusOr<std::unique_ptr<SoftSim>> Load(const std::string& path);
  // An in-memory SIM (benchmarks): state lives only in the object.
  static absl::StatusOr<std::unique_ptr<SoftSim>> InMemory(std::string imsi,
                                                           const Bytes& k,
                                                           const Bytes& opc);

  absl::StatusOr<std::string> Imsi() override { return imsi_; }
  absl::StatusOr<SimAuthResult> Authenticate(const Bytes& rand,
                                             const Bytes& autn) override;
  DeviceIdentity Identity() override { return identity_; }

 private:
  SoftSim(std::string imsi, Milenage m)
      : imsi_(std::move(imsi)), m_(std::move(m)) {}
  absl::Status Persist();

  const std::string imsi_;
  const Milenage m_;
  DeviceIdentity identity_;
  std::string path_;             // empty: in memory
  std::string k_hex_, opc_hex_;  // re-written verbatim on persist

  std::mutex mu_;
  UsimSqnWindow window_;  // guarded by mu_
};

}  // namespace simprov

#endif  // SIMPROV_AGENT_SIM_SOFT_SIM_H_
