// Secrets at rest: AES-256-GCM under a 32-byte key-encryption key (KEK).
//
// Format (version 1): 0x01 || nonce (12 random bytes) || ciphertext || tag
// (16 bytes). The associated data binds a box to its owner: for subscriber
// keys it is the IMSI, so a box moved to another row does not open.
#ifndef SIMPROV_COMMON_SEALED_BOX_H_
#define SIMPROV_COMMON_SEALED_BOX_H_

#include "absl/status/statusor.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

inline constexpr uint8_t kSealedBoxVersion = 1;
inline constexpr size_t kKekSize = 32;

Bytes SealBox(const Bytes& kek, const Bytes& plaintext, const Bytes& aad,
              Random& random);
// Fails (without detail) when the KEK, the associated data or any byte of
// the box is wrong.
absl::StatusOr<Bytes> OpenBox(const Bytes& kek, const Bytes& box,
                              const Bytes& aad);

}  // namespace simprov

#endif  // SIMPROV_COMMON_SEALED_BOX_H_
