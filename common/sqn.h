// Sequence numbers for AKA, per 3GPP TS 33.102 Annex C (profile C.1.1.2 with
// C.2.2 and the optional delta check of C.2.3).
//
// SQN is 48 bits, big-endian on the wire: SQN = SEQ || IND, with IND the
// low kIndBits = 5 bits (32 array slots) and SEQ the high 43 bits. The home
// environment (broker) hands out SEQ values in increasing order and cycles
// IND; the USIM keeps the highest SEQ accepted per IND slot, so vectors may
// be used out of order but never twice.
#ifndef SIMPROV_COMMON_SQN_H_
#define SIMPROV_COMMON_SQN_H_

#include <array>
#include <cstdint>

namespace simprov {

inline constexpr int kIndBits = 5;
inline constexpr uint32_t kIndSlots = 32;  // 2^kIndBits
inline constexpr uint64_t kSqnMask = (1ull << 48) - 1;
static_assert(kIndSlots == 1u << kIndBits);

// SQN = (SEQ << 5) | IND, truncated to 48 bits; only the low 5 bits of ind
// are used.
uint64_t MakeSqn(uint64_t seq, uint32_t ind);
// The high 43 bits of a 48-bit SQN.
uint64_t SeqOf(uint64_t sqn);
// The low 5 bits of SQN, in [0, 32).
uint32_t IndOf(uint64_t sqn);

// Home-environment side (broker): per-subscriber state, persisted by the
// caller. Invariant: next_ind < kIndSlots.
struct HeSqnState {
  uint64_t seq_he = 0;    // highest SEQ handed out (0: none yet)
  uint32_t next_ind = 0;  // IND slot of the next vector
};

// Advances the state and returns the SQN of the next vector:
// seq_he += 1; sqn = MakeSqn(seq_he, next_ind); next_ind = (next_ind+1) % 32.
// SEQ is 43 bits; 2^43 vectors per subscriber is beyond any lifetime.
uint64_t NextSqn(HeSqnState& s);

// Resynchronisation in the HE (Annex C.3.4) after a sync failure whose AUTS
// carried sqn_ms (already verified with RecoverSqnMs): seq_he = SEQ of
// sqn_ms, so the next vector has SEQ_MS + 1, which the USIM accepts on any
// IND slot and which passes its delta check. next_ind is kept.
void ResyncHe(HeSqnState& s, uint64_t sqn_ms);

// USIM side (soft SIM, test SIMs): the array SEQ_MS(0..31) of the highest
// SEQ accepted per IND slot. Not thread-safe; the caller serialises.
class UsimSqnWindow {
 public:
  // Delta of C.2.3: a SEQ more than 2^28 above the highest accepted one is
  // rejected, so that SQN cannot be wrapped around by a flood of vectors.
  static constexpr uint64_t kDelta = 1ull << 28;

  UsimSqnWindow();  // all slots 0: any SEQ in [1, kDelta] is fresh
  explicit UsimSqnWindow(std::array<uint64_t, kIndSlots> seq_ms);

  // Returns true and records SEQ in slot IND if sqn is fresh:
  // SEQ > SEQ_MS(IND) and, if SEQ exceeds max_i SEQ_MS(i), by at most
  // kDelta. Otherwise returns false and leaves the state unchanged.
  bool Accept(uint64_t sqn);

  // SQN_MS for AUTS: MakeSqn(max_i SEQ_MS(i), i) for the lowest slot i
  // holding that maximum; 0 if nothing was ever accepted.
  uint64_t HighestSqn() const;

  const std::array<uint64_t, kIndSlots>& seq_ms() const { return seq_ms_; }

 private:
  std::array<uint64_t, kIndSlots> seq_ms_;
};

}  // namespace simprov

#endif  // SIMPROV_COMMON_SQN_H_
