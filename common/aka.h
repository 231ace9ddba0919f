// 3G AKA operations (3GPP TS 33.102 section 6.3) on top of Milenage: the
// home environment's authentication vector and resynchronisation check, and
// the USIM's AUTHENTICATE command for soft and test SIMs.
//
// Guarantees: MAC-A and MAC-S are compared in constant time; a USIM result
// other than kSuccess carries no RES/CK/IK; errors never contain key bytes.
// SQN values are 48-bit integers (SEQ || IND, see common/sqn.h); on the wire
// they are big-endian 6-byte strings, concealed by xor with AK or AK*.
#ifndef SIMPROV_COMMON_AKA_H_
#define SIMPROV_COMMON_AKA_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/bytes.h"
#include "common/milenage.h"
#include "common/sqn.h"

namespace simprov {

inline constexpr size_t kAutnLen = 16;  // (SQN xor AK) || AMF || MAC-A
inline constexpr size_t kAutsLen = 14;  // (SQN_MS xor AK*) || MAC-S

struct AuthVector {
  Bytes rand;  // 16 bytes
  Bytes xres;  // 8 bytes, expected RES
  Bytes ck;    // 16 bytes
  Bytes ik;    // 16 bytes
  Bytes autn;  // 16 bytes: (SQN xor AK) || AMF || MAC-A
};

// Builds the vector for rand (16 bytes), sqn (48-bit; higher bits ignored)
// and amf (2 bytes). Wrong lengths abort (see Milenage).
AuthVector GenerateVector(const Milenage& m, const Bytes& rand, uint64_t sqn,
                          const Bytes& amf);

struct UsimResult {
  enum class Kind { kSuccess, kSyncFailure, kMacFailure };
  Kind kind = Kind::kMacFailure;
  Bytes res, ck, ik;  // kSuccess only: 8, 16, 16 bytes
  Bytes auts;         // kSyncFailure only: 14 bytes
};

// What a USIM does on AUTHENTICATE: recovers SQN with AK, checks MAC-A
// (constant time), then checks SQN freshness with window (recording it on
// success). A stale SQN yields kSyncFailure with AUTS built from
// window.HighestSqn(). RAND or AUTN of the wrong length yield kMacFailure.
// The window changes only on kSuccess.
UsimResult UsimAuthenticate(const Milenage& m, const Bytes& rand,
                            const Bytes& autn, UsimSqnWindow& window);

// AUTS = (SQN_MS xor AK*) || MAC-S, MAC-S = f1*(SQN_MS, RAND, AMF = 0000)
// (TS 33.102 6.3.3); 14 bytes. rand must be 16 bytes.
Bytes BuildAuts(const Milenage& m, const Bytes& rand, uint64_t sqn_ms);

// Broker side of resynchronisation: recovers SQN_MS (48-bit) from auts and
// checks MAC-S in constant time. InvalidArgument if rand is not 16 bytes or
// auts not 14; Unauthenticated if MAC-S does not verify.
absl::StatusOr<uint64_t> RecoverSqnMs(const Milenage& m, const Bytes& rand,
                                      const Bytes& auts);

}  // namespace simprov

#endif  // SIMPROV_COMMON_AKA_H_
