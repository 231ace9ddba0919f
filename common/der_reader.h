// A strict DER reader and the fixed DER of the P-256 / ecdsa-with-SHA256
// shapes: what the fast paths of csr.cc (a device's CSR) and leaf_check.cc
// (the agent's new certificate) walk by hand instead of through OpenSSL's
// decoders. Internal to common/.
#ifndef SIMPROV_COMMON_DER_READER_H_
#define SIMPROV_COMMON_DER_READER_H_

#include <cstddef>
#include <cstdint>

namespace simprov::der {

// A strict DER reader over [p, end): definite, minimal lengths only.
class DerReader {
 public:
  DerReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}

  // Reads one element with `tag`; `whole` spans tag..end of contents.
  bool Next(uint8_t tag, const uint8_t** contents, size_t* len,
            const uint8_t** whole = nullptr, size_t* whole_len = nullptr) {
    const uint8_t* start = p_;
    if (end_ - p_ < 2 || *p_ != tag) return false;
    ++p_;
    size_t n = *p_++;
    if (n & 0x80) {
      size_t bytes = n & 0x7f;
      if (bytes == 0 || bytes > 2 || static_cast<size_t>(end_ - p_) < bytes) {
        return false;
      }
      n = 0;
      for (size_t i = 0; i < bytes; ++i) n = (n << 8) | *p_++;
      // Minimal encoding: long form only from 128, no leading zero byte.
      if (n < 0x80 || (bytes == 2 && n < 0x100)) return false;
    }
    if (static_cast<size_t>(end_ - p_) < n) return false;
    *contents = p_;
    *len = n;
    p_ += n;
    if (whole != nullptr) {
      *whole = start;
      *whole_len = static_cast<size_t>(p_ - start);
    }
    return true;
  }
  bool AtEnd() const { return p_ == end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// SubjectPublicKeyInfo of an uncompressed P-256 point, up to the point.
inline constexpr uint8_t kP256SpkiPrefix[] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
inline constexpr size_t kP256PointSize = 65;
// AlgorithmIdentifier ecdsa-with-SHA256, no parameters (RFC 5758).
inline constexpr uint8_t kEcdsaWithSha256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                               0xce, 0x3d, 0x04, 0x03, 0x02};

}  // namespace simprov::der

#endif  // SIMPROV_COMMON_DER_READER_H_
