// Byte strings, hex and constant-time comparison.
//
// Everything on the wire and in the store is a byte string; keys, RAND,
// AUTN, RES and MACs are Bytes. Hex is lower case on output and accepted in
// either case on input.
#ifndef SIMPROV_COMMON_BYTES_H_
#define SIMPROV_COMMON_BYTES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace simprov {

using Bytes = std::vector<uint8_t>;

std::string HexEncode(const uint8_t* data, size_t len);
inline std::string HexEncode(const Bytes& b) {
  return HexEncode(b.data(), b.size());
}
// Decodes hex (even length, [0-9a-fA-F]). The error never echoes the input,
// since the input may be a secret key.
absl::StatusOr<Bytes> HexDecode(std::string_view hex);

Bytes ToBytes(std::string_view s);
std::string ToString(const Bytes& b);

// Constant-time equality: runtime depends only on the lengths.
bool ConstantTimeEqual(const uint8_t* a, size_t alen, const uint8_t* b,
                       size_t blen);
inline bool ConstantTimeEqual(const Bytes& a, const Bytes& b) {
  return ConstantTimeEqual(a.data(), a.size(), b.data(), b.size());
}

// Overwrites a buffer in a way the compiler cannot elide.
void SecureWipe(Bytes& b);

// Big-endian 48-bit integer <-> 6 bytes (SQN, AK).
Bytes Uint48ToBytes(uint64_t v);
uint64_t BytesToUint48(const uint8_t* p);

}  // namespace simprov

#endif  // SIMPROV_COMMON_BYTES_H_
