// The enrol transcript and the sealed answer: what binds the two halves of a
// bootstrap together.
//
// Request: the agent MACs a canonical, length-prefixed encoding of the whole
// transcript (never re-serialised protobuf):
//   "simprov-v1 enrol" || for each field: 4-byte big-endian length || bytes
// with the fields, in order: version (4-byte big-endian), broker identity,
// session id, IMSI, RAND, AUTN, RES, device nonce, CSR (DER), IMEI, ICCID.
// MAC = HMAC-SHA-256(req_mac key, encoding), 32 bytes, compared in constant
// time. request_hash = SHA-256(encoding).
//
// Answer: encrypt-then-MAC.
//   box = 0x01 || IV (16) || AES-256-CTR(resp_enc, IV, plaintext) || tag (32)
//   tag = HMAC-SHA-256(resp_mac, "simprov-v1 answer" || request_hash ||
//                      0x01 || IV || ciphertext)
// The agent opens a box only for the request it sent, and parses the
// plaintext only after the tag verified.
#ifndef SIMPROV_COMMON_TRANSCRIPT_H_
#define SIMPROV_COMMON_TRANSCRIPT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/kdf.h"

namespace simprov {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kMacSize = 32;

struct EnrolTranscript {
  uint32_t version = kProtocolVersion;
  std::string broker_identity;
  Bytes session_id;
  std::string imsi;
  Bytes rand;
  Bytes autn;
  Bytes res;
  Bytes nonce;
  Bytes csr_der;
  std::string imei;
  std::string iccid;
};

// The label starts the encoding and separates purposes: an Enrol MAC can
// never be replayed as a Time MAC or vice versa.
inline constexpr absl::string_view kEnrolLabel = "simprov-v1 enrol";
inline constexpr absl::string_view kTimeLabel = "simprov-v1 time";

Bytes EncodeTranscript(const EnrolTranscript& t,
                       absl::string_view label = kEnrolLabel);
Bytes TranscriptMac(const SessionKeys& keys, const Bytes& encoded);

Bytes SealAnswer(const SessionKeys& keys, const Bytes& request_hash,
                 const Bytes& plaintext, Random& random);
// Unauthenticated when the tag does not verify (tampered, other request or
// other keys); nothing of the plaintext is exposed then.
absl::StatusOr<Bytes> OpenAnswer(const SessionKeys& keys,
                                 const Bytes& request_hash, const Bytes& box);

}  // namespace simprov

#endif  // SIMPROV_COMMON_TRANSCRIPT_H_
