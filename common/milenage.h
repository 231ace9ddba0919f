// Milenage: the 3GPP authentication and key generation functions f1, f1*,
// f2, f3, f4, f5 and f5* (3GPP TS 35.206), built on AES-128.
//
// Guarantees: output matches the conformance sets of TS 35.208; K never
// leaves the OpenSSL cipher context and, with OPc, is wiped when the object
// is destroyed; errors never contain key bytes. All byte strings are
// big-endian as in the specification (SQN is 48-bit, AMF 16-bit).
//
// A Milenage object is cheap to call (two or three AES block operations per
// function, one cipher context reused) and its const methods may be called
// from several threads at once: they are serialised on an internal mutex.
#ifndef SIMPROV_COMMON_MILENAGE_H_
#define SIMPROV_COMMON_MILENAGE_H_

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "common/bytes.h"

namespace simprov {

class Milenage {
 public:
  // Lengths in bytes.
  static constexpr size_t kKeyLen = 16;   // K, OP, OPc
  static constexpr size_t kRandLen = 16;  // RAND
  static constexpr size_t kSqnLen = 6;    // SQN, AK
  static constexpr size_t kAmfLen = 2;    // AMF
  static constexpr size_t kMacLen = 8;    // MAC-A, MAC-S
  static constexpr size_t kResLen = 8;    // RES (Milenage f2 is 64 bits)
  static constexpr size_t kCkLen = 16;    // CK
  static constexpr size_t kIkLen = 16;    // IK
  static constexpr size_t kAkLen = 6;     // AK, AK*

  // k and opc must be 16 bytes each; otherwise InvalidArgument (the message
  // gives lengths only, never bytes).
  static absl::StatusOr<Milenage> Create(const Bytes& k, const Bytes& opc);
  // OPc = OP xor E_K(OP). k and op must be 16 bytes each.
  static absl::StatusOr<Bytes> ComputeOpc(const Bytes& k, const Bytes& op);

  Milenage(Milenage&&) noexcept;
  Milenage& operator=(Milenage&&) noexcept;
  Milenage(const Milenage&) = delete;
  Milenage& operator=(const Milenage&) = delete;
  ~Milenage();

  // The F-functions take rand (16 bytes), sqn6 (6 bytes, big-endian 48-bit)
  // and amf2 (2 bytes). A wrong length is a programming error: the process
  // aborts. Calling them on a moved-from object also aborts.

  // f1: network authentication code MAC-A, 8 bytes.
  Bytes F1(const Bytes& rand, const Bytes& sqn6, const Bytes& amf2) const;
  // f1*: resynchronisation authentication code MAC-S, 8 bytes.
  Bytes F1Star(const Bytes& rand, const Bytes& sqn6, const Bytes& amf2) const;

  struct Outputs {
    Bytes res;  // f2, 8 bytes
    Bytes ck;   // f3, 16 bytes
    Bytes ik;   // f4, 16 bytes
    Bytes ak;   // f5, 6 bytes
  };
  // f2, f3, f4 and f5 together (they share E_K(RAND xor OPc)).
  Outputs F2345(const Bytes& rand) const;
  // f5*: anonymity key for resynchronisation AK*, 6 bytes.
  Bytes F5Star(const Bytes& rand) const;

 private:
  struct State;
  explicit Milenage(std::unique_ptr<State> state);

  // Never null except in a moved-from object.
  std::unique_ptr<State> state_;
};

}  // namespace simprov

#endif  // SIMPROV_COMMON_MILENAGE_H_
