// Outstanding AKA challenges, in memory.
//
// A session is single-use: Take() removes it atomically, so of two
// concurrent Enrols on one session at most one gets it. Sessions expire
// after their TTL (at most 60 s); at most `max_per_imsi` are open per IMSI,
// and a new one beyond that replaces the oldest. Losing them on restart is
// harmless: a device just asks for a new challenge.
#ifndef SIMPROV_BROKER_ENROL_SESSION_TABLE_H_
#define SIMPROV_BROKER_ENROL_SESSION_TABLE_H_

#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/time/time.h"
#include "common/bytes.h"

namespace simprov {

struct Session {
  Bytes id;  // 16 random bytes
  std::string imsi;
  Bytes rand;
  Bytes autn;
  Bytes xres;
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

class SessionTable {
 public:
  // Caps below 1 are raised to 1.
  SessionTable(size_t max_per_imsi, size_t max_total)
      : max_per_imsi_(max_per_imsi < 1 ? 1 : max_per_imsi),
        max_total_(max_total < 1 ? 1 : max_total) {}

  void Insert(Session s);
  // Removes and returns the session with this id, whatever its age.
  std::optional<Session> Take(const Bytes& id);
  // Removes and returns the open session of `imsi` whose RAND is `rand`.
  std::optional<Session> TakeByRand(const std::string& imsi, const Bytes& rand);
  // Drops sessions created before `cutoff`.
  void ExpireBefore(absl::Time cutoff);
  size_t size();

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

// Per-IMSI token bucket: `burst` challenges at once, then one per `refill`.
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

}  // namespace simprov

#endif  // SIMPROV_BROKER_ENROL_SESSION_TABLE_H_
