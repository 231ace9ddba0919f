#include "agent/sim/soft_sim.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/aka.h"
#include "common/atomic_file.h"
#include "common/imsi.h"

namespace simprov {

namespace {
absl::Status Bad(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("soft SIM ", path, ": ", what));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SoftSim>> SoftSim::Load(
    const std::string& path) {
  auto text = ReadFileToString(path, 64 * 1024);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read soft SIM: ", text.status().message()));
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad(path, "not a JSON object");
  for (const char* key : {"imsi", "k", "opc"}) {
    if (!j.contains(key) || !j[key].is_string()) {
      return Bad(path, absl::StrCat("missing string field '", key, "'"));
    }
  }
  std::string imsi = j["imsi"];
  if (!IsValidImsi(imsi)) return Bad(path, "imsi must be 6 to 15 digits");
  std::string k_hex = j["k"], opc_hex = j["opc"];
  auto k = HexDecode(k_hex);
  if (!k.ok() || k->size() != 16) return Bad(path, "k must be 32 hex digits");
  auto opc = HexDecode(opc_hex);
  if (!opc.ok() || opc->size() != 16) {
    return Bad(path, "opc must be 32 hex digits");
  }
  auto m = Milenage::Create(*k, *opc);
  SecureWipe(*k);
  SecureWipe(*opc);
  if (!m.ok()) return m.status();
  auto sim = std::unique_ptr<SoftSim>(new SoftSim(imsi, std::move(*m)));
  sim->path_ = path;
  sim->k_hex_ = k_hex;
  sim->opc_hex_ = opc_hex;
  if (j.contains("iccid") && j["iccid"].is_string()) {
    sim->identity_.iccid = j["iccid"];
  }
  if (j.contains("imei") && j["imei"].is_string()) {
    sim->identity_.imei = j["imei"];
  }
  if (j.contains("seq_ms")) {
    const auto& arr = j["seq_ms"];
    if (!arr.is_array() || arr.size() != kIndSlots) {
      return Bad(path, "seq_ms must be an array of 32 integers");
    }
    std::array<uint64_t, kIndSlots> seq{};
    for (size_t i = 0; i < kIndSlots; ++i) {
      if (!arr[i].is_number_unsigned() ||
          arr[i].get<uint64_t>() > (kSqnMask >> kIndBits)) {
        return Bad(path, "seq_ms entries must be integers below 2^43");
      }
      seq[i] = arr[i].get<uint64_t>();
    }
    sim->window_ = UsimSqnWindow(seq);
  }
  return sim;
}

absl::StatusOr<std::unique_ptr<SoftSim>> SoftSim::InMemory(std::string imsi,
                                                           const Bytes& k,
                                                           const Bytes& opc) {
  auto m = Milenage::Create(k, opc);
  if (!m.ok()) return m.status();
  return std::unique_ptr<SoftSim>(new SoftSim(std::move(imsi), std::move(*m)));
}

absl::Status SoftSim::Persist() {
  if (path_.empty()) return absl::OkStatus();
  nlohmann::json j;
  j["imsi"] = imsi_;
  j["k"] = k_hex_;
  j["opc"] = opc_hex_;
  if (!identity_.iccid.empty()) j["iccid"] = identity_.iccid;
  if (!identity_.imei.empty()) j["imei"] = identity_.imei;
  j["seq_ms"] = window_.seq_ms();
  return WriteFileAtomic(path_, j.dump(2) + "\n", 0600);
}

absl::StatusOr<SimAuthResult> SoftSim::Authenticate(const Bytes& rand,
                                                    const Bytes& autn) {
  if (rand.size() != 16 || autn.size() != 16) {
    return absl::InvalidArgumentError("RAND and AUTN must be 16 bytes");
  }
  std::lock_guard<std::mutex> lock(mu_);
  UsimSqnWindow before = window_;
  UsimResult r = UsimAuthenticate(m_, rand, autn, window_);
  SimAuthResult out;
  switch (r.kind) {
    case UsimResult::Kind::kSuccess:
      if (absl::Status s = Persist(); !s.ok()) {
        window_ = before;  // the card did not commit: release nothing
        return s;
      }
      out.kind = SimAuthResult::Kind::kSuccess;
      out.res = std::move(r.res);
      out.ck = std::move(r.ck);
      out.ik = std::move(r.ik);
      break;
    case UsimResult::Kind::kSyncFailure:
      out.kind = SimAuthResult::Kind::kSyncFailure;
      out.auts = std::move(r.auts);
      break;
    case UsimResult::Kind::kMacFailure:
      out.kind = SimAuthResult::Kind::kMacFailure;
      break;
  }
  return out;
}

}  // namespace simprov
