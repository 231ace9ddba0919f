// Time and randomness, injected so that tests are deterministic.
//
// Certificates, sessions, rate limits and SQN freshness all depend on time;
// session ids, RAND, nonces and serials depend on chance. Production code
// takes a Clock& and a Random& and never calls time() or RAND_bytes itself.
#ifndef SIMPROV_COMMON_CLOCK_H_
#define SIMPROV_COMMON_CLOCK_H_

#include <atomic>
#include <cstdint>
#include <mutex>

#include "absl/time/time.h"
#include "common/bytes.h"

namespace simprov {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // The process-wide real clock.
  static Clock& Real();
  // Time since boot (CLOCK_BOOTTIME) as a Time after the Unix epoch: for
  // measuring intervals that no wall-clock step can distort, suspend
  // included.
  static Clock& Boottime();
};

// A clock that only moves when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_ns_(absl::ToUnixNanos(start)) {}
  absl::Time Now() const override {
    return absl::FromUnixNanos(now_ns_.load());
  }
  void Advance(absl::Duration d) { now_ns_ += absl::ToInt64Nanoseconds(d); }
  void Set(absl::Time t) { now_ns_ = absl::ToUnixNanos(t); }

 private:
  std::atomic<int64_t> now_ns_;
};

class Random {
 public:
  virtual ~Random() = default;
  // Fills `len` bytes. The real source is OpenSSL's CSPRNG.
  virtual Bytes Generate(size_t len) = 0;
  static Random& Real();
};

// Bytes drawn from `source` in chunks: one RAND_bytes call (and its
// fork-check getpid) per `chunk` bytes instead of one per caller. For
// values that must be unpredictable and unique but are not keys (token
// ids); keys come from the source directly. Thread-safe.
class BufferedRandom : public Random {
 public:
  explicit BufferedRandom(Random& source, size_t chunk = 4096)
      : source_(source), chunk_(chunk) {}
  Bytes Generate(size_t len) override;

 private:
  Random& source_;
  const size_t chunk_;
  std::mutex mu_;
  Bytes buffer_;     // guarded by mu_
  size_t used_ = 0;  // guarded by mu_; bytes of buffer_ handed out
};

// Deterministic byte stream for tests (NOT for production): a counter
// hashed with SHA-256.
class DeterministicRandom : public Random {
 public:
  explicit DeterministicRandom(uint64_t seed) : counter_(seed << 32) {}
  Bytes Generate(size_t len) override;

 private:
  std::mutex mu_;
  uint64_t counter_;
};

}  // namespace simprov

#endif  // SIMPROV_COMMON_CLOCK_H_
