// Key derivation after AKA, in the style of 3GPP TS 33.220 Annex B.
//
//   Kx = HMAC-SHA-256(CK || IK, S),  S = FC || P0 || L0 || P1 || L1 || ...
//
// where FC is one byte, each Pi is an input and Li its length as a 2-byte
// big-endian integer. simprov uses FC = 0x7E (outside the values 3GPP
// allocates) and, for every derived key:
//   P0 = label (ASCII, e.g. "simprov-v1 req-mac"), P1 = RAND (16 bytes),
//   P2 = IMSI (ASCII digits), P3 = broker identity (ASCII host name, as the
//   agent was configured with it).
// Each purpose and direction has its own label, so no key serves twice and CK
// is never used as a raw hash key. Test vectors are in docs/security.md.
#ifndef SIMPROV_COMMON_KDF_H_
#define SIMPROV_COMMON_KDF_H_

#include <string_view>
#include <vector>

#include "common/bytes.h"

namespace simprov {

inline constexpr uint8_t kKdfFc = 0x7E;
inline constexpr std::string_view kLabelReqMac = "simprov-v1 req-mac";
inline constexpr std::string_view kLabelRespMac = "simprov-v1 resp-mac";
inline constexpr std::string_view kLabelRespEnc = "simprov-v1 resp-enc";

// The generic TS 33.220 Annex B KDF. Every parameter must be < 65536 bytes.
Bytes Kdf33220(const Bytes& key, uint8_t fc, const std::vector<Bytes>& params);

// The three keys of one AKA session, 32 bytes each.
struct SessionKeys {
  Bytes req_mac;   // agent -> broker: MAC over the enrol transcript
  Bytes resp_mac;  // broker -> agent: MAC over the sealed answer
  Bytes resp_enc;  // broker -> agent: AES-256-CTR key of the answer
  ~SessionKeys();
};

SessionKeys DeriveSessionKeys(const Bytes& ck, const Bytes& ik,
                              const Bytes& rand, std::string_view imsi,
                              std::string_view broker_identity);

}  // namespace simprov

#endif  // SIMPROV_COMMON_KDF_H_
