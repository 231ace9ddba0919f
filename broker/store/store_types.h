// Value types of the fleet lifecycle's part of the Store.
#ifndef SIMPROV_BROKER_STORE_STORE_TYPES_H_
#define SIMPROV_BROKER_STORE_STORE_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace simprov {

inline constexpr char kStatusSuspended[] = "suspended";
inline constexpr char kStatusTerminated[] = "terminated";
inline constexpr char kStatusReplaced[] = "replaced";

// A stored group: its policy is the JSON object as applied (validated by
// ParseGroupPolicy before it is stored).
struct GroupRow {
  std::string name;
  std::string policy_json;
  absl::Time updated_at = absl::UnixEpoch();
};

struct SubscriberFilter {
  std::string group;              // empty: all
  bool provisioned_only = false;  // only those with a device id
  std::string after;              // IMSI cursor, exclusive
  size_t limit = 0;               // 0: no limit
};

struct RevocationRequest {
  std::string imsi;    // all valid certificates of this subscriber, or
  std::string serial;  // this one certificate (lower-case hex)
  std::string reason;  // RFC 5280 reason name, e.g. "keyCompromise"
  absl::Time at = absl::UnixEpoch();
};

struct AuditQuery {
  std::string imsi;  // matches actor or target; empty: all
  absl::Time since = absl::InfinitePast();
  int64_t after_id = 0;  // cursor, exclusive
  size_t limit = 0;      // 0: no limit
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_STORE_TYPES_H_
