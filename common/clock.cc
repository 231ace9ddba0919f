#include "common/clock.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <time.h>

#include <cstdlib>

#include "absl/strings/string_view.h"
#include "common/digest.h"

namespace simprov {

namespace {
class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

class BoottimeClock : public Clock {
 public:
  absl::Time Now() const override {
    timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return absl::TimeFromTimespec(ts);
  }
};

class OpenSslRandom : public Random {
 public:
  Bytes Generate(size_t len) override {
    Bytes out(len);
    if (len > 0 && RAND_bytes(out.data(), static_cast<int>(len)) != 1) {
      // Without randomness nothing here is safe; never continue.
      std::abort();
    }
    return out;
  }
};
}  // namespace

Clock& Clock::Real() {
  static RealClock* clock = new RealClock;
  return *clock;
}

Clock& Clock::Boottime() {
  static BoottimeClock* clock = new BoottimeClock;
  return *clock;
}

Random& Random::Real() {
  static OpenSslRandom* random = new OpenSslRandom;
  return *random;
}

Bytes BufferedRandom::Generate(size_t len) {
  if (len > chunk_) return source_.Generate(len);
  std::lock_guard<std::mutex> lock(mu_);
  if (buffer_.size() - used_ < len) {
    OPENSSL_cleanse(buffer_.data(), buffer_.size());
    buffer_ = source_.Generate(chunk_);
    used_ = 0;
  }
  const auto first = buffer_.begin() + static_cast<ptrdiff_t>(used_);
  Bytes out(first, first + static_cast<ptrdiff_t>(len));
  // Handed-out bytes do not stay behind in the buffer.
  OPENSSL_cleanse(buffer_.data() + used_, len);
  used_ += len;
  return out;
}

Bytes DeterministicRandom::Generate(size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  Bytes out;
  out.reserve(len + kSha256Size);
  while (out.size() < len) {
    uint8_t block[8];
    for (int i = 0; i < 8; ++i) block[i] = (counter_ >> (56 - 8 * i)) & 0xff;
    ++counter_;
    const Bytes digest = Sha256(
        absl::string_view(reinterpret_cast<const char*>(block), sizeof block));
    out.insert(out.end(), digest.begin(), digest.end());
  }
  out.resize(len);
  return out;
}

}  // namespace simprov
