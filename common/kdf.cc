#include "common/kdf.h"

#include <cstdlib>

#include "common/digest.h"

namespace simprov {

Bytes Kdf33220(const Bytes& key, uint8_t fc, const std::vector<Bytes>& params) {
  Bytes s;
  s.push_back(fc);
  for (const Bytes& p : params) {
    if (p.size() > 0xffff) std::abort();  // programming error: L is 2 bytes
    s.insert(s.end(), p.begin(), p.end());
    s.push_back(static_cast<uint8_t>(p.size() >> 8));
    s.push_back(static_cast<uint8_t>(p.size() & 0xff));
  }
  return HmacSha256(key, s);
}

SessionKeys::~SessionKeys() {
  SecureWipe(req_mac);
  SecureWipe(resp_mac);
  SecureWipe(resp_enc);
}

SessionKeys DeriveSessionKeys(const Bytes& ck, const Bytes& ik,
                              const Bytes& rand, std::string_view imsi,
                              std::string_view broker_identity) {
  Bytes key = ck;
  key.insert(key.end(), ik.begin(), ik.end());
  auto derive = [&](std::string_view label) {
    return Kdf33220(
        key, kKdfFc,
        {ToBytes(label), rand, ToBytes(imsi), ToBytes(broker_identity)});
  };
  SessionKeys keys;
  keys.req_mac = derive(kLabelReqMac);
  keys.resp_mac = derive(kLabelRespMac);
  keys.resp_enc = derive(kLabelRespEnc);
  SecureWipe(key);
  return keys;
}

}  // namespace simprov
