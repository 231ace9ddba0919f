// Outstanding AKA challenges: the SessionTable interface and its two
// implementations.
//
// A session is single-use: Take() removes it atomically, so of two
// concurrent Enrols on one session at most one gets it. Sessions expire
// after their TTL (at most 60 s); at most `max_per_imsi` are open per IMSI,
// and a new one beyond that replaces the oldest; at most `max_total` are
// open in all, a new one beyond that replacing the oldest of anybody.
//
// InMemorySessionTable keeps them in this process: the default (one broker
// on its SQLite store), no store round trip. Losing them on restart is
// harmless: a device just asks for a new challenge. StoreSessionTable keeps
// them in the Store, so that any broker sharing it can complete a
// challenge another answered, single use and the caps holding across
// brokers; the broker uses it when its store is shared (Store::IsShared)
// or BootstrapOptions::shared_state says so. At rest it keeps XRES only as
// SHA-256(session id || XRES) and CK || IK sealed under the KEK ring.
#ifndef SIMPROV_BROKER_ENROL_SESSION_TABLE_H_
#define SIMPROV_BROKER_ENROL_SESSION_TABLE_H_

#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/keys/kek_rotation.h"
#include "broker/store/store.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

struct Session {
  Bytes id;  // 16 random bytes
  std::string imsi;
  Bytes rand;
  Bytes autn;
  // XRES in memory; a session read back from the store has xres_hash
  // (SHA-256(id || XRES)) instead. Compare with ResMatches.
  Bytes xres;
  Bytes xres_hash;
  Bytes ck;
  Bytes ik;
  absl::Time created;
  // A decoy for an unknown or inactive IMSI: its vector comes from
  // throwaway keys, so it looks and costs like a real one; no RES passes.
  bool decoy = false;
  std::string decoy_reason;
  std::string device_id;  // empty until first provisioning
  std::string group;
};

// SHA-256(id || xres): what the store keeps instead of XRES.
Bytes XresHash(const Bytes& id, const Bytes& xres);
// Whether `res` is the session's XRES (in constant time).
bool ResMatches(const Session& s, const Bytes& res);

class SessionTable {
 public:
  virtual ~SessionTable() = default;
  // Adds `s`, replacing the oldest beyond the caps.
  virtual absl::Status Insert(Session s) = 0;
  // Removes and returns the session with this id, whatever its age;
  // nullopt when there is none.
  virtual absl::StatusOr<std::optional<Session>> Take(const Bytes& id) = 0;
  // Removes and returns the open session of `imsi` whose RAND is `rand`.
  virtual absl::StatusOr<std::optional<Session>> TakeByRand(
      const std::string& imsi, const Bytes& rand) = 0;
  // Drops sessions created before `cutoff`.
  virtual absl::Status ExpireBefore(absl::Time cutoff) = 0;
  virtual absl::StatusOr<size_t> Count() = 0;
};

class InMemorySessionTable : public SessionTable {
 public:
  // Caps below 1 are raised to 1.
  InMemorySessionTable(size_t max_per_imsi, size_t max_total)
      : max_per_imsi_(max_per_imsi < 1 ? 1 : max_per_imsi),
        max_total_(max_total < 1 ? 1 : max_total) {}

  absl::Status Insert(Session s) override;
  absl::StatusOr<std::optional<Session>> Take(const Bytes& id) override;
  absl::StatusOr<std::optional<Session>> TakeByRand(const std::string& imsi,
                                                    const Bytes& rand) override;
  absl::Status ExpireBefore(absl::Time cutoff) override;
  absl::StatusOr<size_t> Count() override;

 private:
  // Removes a session from both maps and returns it (mu_ held).
  Session RemoveLocked(std::unordered_map<std::string, Session>::iterator it);
  void EraseLocked(const std::string& key);

  const size_t max_per_imsi_;
  const size_t max_total_;

  std::mutex mu_;
  // Keyed by the session id as a string of bytes.
  std::unordered_map<std::string, Session> by_id_;  // guarded by mu_
  // Open session ids per IMSI, oldest first.
  std::unordered_map<std::string, std::deque<std::string>> by_imsi_;
  // All session ids, oldest first (for expiry and the global cap).
  std::deque<std::string> order_;  // guarded by mu_
};

// Sessions in the Store (PutSession, TakeSession, ...): atomic there, so
// single use and the caps hold across every broker on the store. Store
// trouble is Unavailable. A session whose sealed keys no longer open
// (sealed under a KEK since dropped by a finished rotation) is treated as
// gone.
class StoreSessionTable : public SessionTable {
 public:
  StoreSessionTable(Store& store, const KekRing& kek, Random& random,
                    size_t max_per_imsi, size_t max_total)
      : store_(store),
        kek_(kek),
        random_(random),
        caps_{max_per_imsi, max_total} {}

  absl::Status Insert(Session s) override;
  absl::StatusOr<std::optional<Session>> Take(const Bytes& id) override;
  absl::StatusOr<std::optional<Session>> TakeByRand(const std::string& imsi,
                                                    const Bytes& rand) override;
  absl::Status ExpireBefore(absl::Time cutoff) override;
  absl::StatusOr<size_t> Count() override;

 private:
  absl::StatusOr<std::optional<Session>> FromStore(
      absl::StatusOr<StoredSession> stored);

  Store& store_;
  const KekRing& kek_;
  std::mutex random_mu_;
  Random& random_;  // guarded by random_mu_
  const SessionCaps caps_;
};

// Per-IMSI token bucket: `burst` challenges at once, then one per `refill`.
// In memory (one broker); StoreRateLimiter below keeps the buckets in a
// shared store.
class RateLimiter {
 public:
  RateLimiter(int burst, absl::Duration refill)
      : burst_(burst), refill_(refill) {}
  bool Allow(const std::string& key, absl::Time now);
  void ForgetIdle(absl::Time now);

 private:
  struct Bucket {
    double tokens;
    absl::Time updated;
  };
  const int burst_;
  const absl::Duration refill_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // guarded by mu_
};

// The same bucket per key in the Store (TakeRateToken), shared by every
// broker on it: exact across brokers up to the skew of their clocks.
class StoreRateLimiter {
 public:
  StoreRateLimiter(Store& store, int burst, absl::Duration refill)
      : store_(store), burst_(burst), refill_(refill) {}
  absl::StatusOr<bool> Allow(const std::string& key, absl::Time now) {
    return store_.TakeRateToken(key, burst_, refill_, now);
  }
  absl::Status ForgetIdle(absl::Time now) {
    return store_.ForgetIdleRateLimits(now).status();
  }

 private:
  Store& store_;
  const int burst_;
  const absl::Duration refill_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_ENROL_SESSION_TABLE_H_
