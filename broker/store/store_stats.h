// Fleet counts for the broker's gauges (broker/ops/fleet_gauges.h):
// certificates by status and by time to expiry, subscribers by status.
#ifndef SIMPROV_BROKER_STORE_STORE_STATS_H_
#define SIMPROV_BROKER_STORE_STORE_STATS_H_

#include <cstdint>
#include <map>
#include <string>

namespace simprov {

// Counts at one instant `now`. Each certificate is in exactly one of the
// four status counts:
//  - expired: notAfter <= now (whatever else is true of it);
//  - revoked: revoked and not expired;
//  - superseded: not revoked, not expired, and a newer certificate of the
//    same subscriber was recorded (it renews and gets tokens no more);
//  - valid: the rest, a subscriber's current, usable certificate.
// expiring_within_*: valid certificates (as above) whose notAfter is at
// most that far from now (cumulative: a certificate expiring in 5 hours
// counts in all four).
struct FleetStats {
  int64_t certificates_valid = 0;
  int64_t certificates_revoked = 0;
  int64_t certificates_superseded = 0;
  int64_t certificates_expired = 0;
  int64_t expiring_within_1d = 0;
  int64_t expiring_within_7d = 0;
  int64_t expiring_within_30d = 0;
  int64_t expiring_within_90d = 0;
  // Subscribers by their status column ("active", "suspended",
  // "terminated", "replaced"); statuses without subscribers are absent.
  std::map<std::string, int64_t> subscribers;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_STORE_STATS_H_
