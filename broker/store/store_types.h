// Value types of the fleet lifecycle's part of the Store.
#ifndef SIMPROV_BROKER_STORE_STORE_TYPES_H_
#define SIMPROV_BROKER_STORE_STORE_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "common/bytes.h"

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

// A challenge session at rest in a shared store (broker/enrol/session_table.h
// StoreSessionTable). Only what an Enrol on any broker needs, and no secret
// in the clear: XRES is kept as a hash, CK || IK sealed under the KEK.
struct StoredSession {
  Bytes id;  // the 16 random bytes of the session id
  std::string imsi;
  Bytes rand;       // 16 bytes; public (sent to the device)
  Bytes autn;       // 16 bytes; public (sent to the device)
  Bytes xres_hash;  // SHA-256(session id || XRES)
  Bytes
      sealed_keys;  // KEK-sealed CK || IK (aad: id, IMSI, device, group, decoy)
  absl::Time created = absl::UnixEpoch();  // millisecond precision
  bool decoy = false;
  std::string decoy_reason;
  std::string device_id;
  std::string group;
};

// Caps a PutSession keeps (each at least 1).
struct SessionCaps {
  size_t per_imsi = 4;
  size_t total = size_t{1} << 20;
};

// A named lease (Store::TryAcquireLease): who holds it and until when.
struct LeaseRow {
  std::string name;
  std::string holder;
  absl::Time expires = absl::UnixEpoch();  // millisecond precision
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_STORE_TYPES_H_
