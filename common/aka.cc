#include "common/aka.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace simprov {
namespace {

// MAC-S is computed with a dummy AMF of all zeros (TS 33.102 6.3.3).
const Bytes& ResyncAmf() {
  static const Bytes* const amf = new Bytes(Milenage::kAmfLen, 0);
  return *amf;
}

// a xor b over the first n bytes of each.
Bytes XorPrefix(const uint8_t* a, const uint8_t* b, size_t n) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) out[i] = a[i] ^ b[i];
  return out;
}

}  // namespace

AuthVector GenerateVector(const Milenage& m, const Bytes& rand, uint64_t sqn,
                          const Bytes& amf) {
  const Bytes sqn6 = Uint48ToBytes(sqn & kSqnMask);
  const Bytes mac_a = m.F1(rand, sqn6, amf);
  Milenage::Outputs out = m.F2345(rand);
  AuthVector v;
  v.rand = rand;
  v.xres = std::move(out.res);
  v.ck = std::move(out.ck);
  v.ik = std::move(out.ik);
  v.autn = XorPrefix(sqn6.data(), out.ak.data(), Milenage::kSqnLen);
  v.autn.insert(v.autn.end(), amf.begin(), amf.end());
  v.autn.insert(v.autn.end(), mac_a.begin(), mac_a.end());
  SecureWipe(out.ak);
  return v;
}

UsimResult UsimAuthenticate(const Milenage& m, const Bytes& rand,
                            const Bytes& autn, UsimSqnWindow& window) {
  UsimResult result;
  result.kind = UsimResult::Kind::kMacFailure;
  if (rand.size() != Milenage::kRandLen || autn.size() != kAutnLen) {
    return result;
  }
  Milenage::Outputs out = m.F2345(rand);
  const Bytes sqn6 = XorPrefix(autn.data(), out.ak.data(), Milenage::kSqnLen);
  const Bytes amf(autn.begin() + Milenage::kSqnLen,
                  autn.begin() + Milenage::kSqnLen + Milenage::kAmfLen);
  const Bytes xmac = m.F1(rand, sqn6, amf);
  const uint8_t* mac = autn.data() + Milenage::kSqnLen + Milenage::kAmfLen;
  const bool mac_ok =
      ConstantTimeEqual(xmac.data(), xmac.size(), mac, Milenage::kMacLen);
  if (mac_ok && window.Accept(BytesToUint48(sqn6.data()))) {
    result.kind = UsimResult::Kind::kSuccess;
    result.res = std::move(out.res);
    result.ck = std::move(out.ck);
    result.ik = std::move(out.ik);
  } else {
    if (mac_ok) {
      result.kind = UsimResult::Kind::kSyncFailure;
      result.auts = BuildAuts(m, rand, window.HighestSqn());
    }
    SecureWipe(out.res);
    SecureWipe(out.ck);
    SecureWipe(out.ik);
  }
  SecureWipe(out.ak);
  return result;
}

Bytes BuildAuts(const Milenage& m, const Bytes& rand, uint64_t sqn_ms) {
  const Bytes sqn6 = Uint48ToBytes(sqn_ms & kSqnMask);
  Bytes ak_star = m.F5Star(rand);
  const Bytes mac_s = m.F1Star(rand, sqn6, ResyncAmf());
  Bytes auts = XorPrefix(sqn6.data(), ak_star.data(), Milenage::kSqnLen);
  auts.insert(auts.end(), mac_s.begin(), mac_s.end());
  SecureWipe(ak_star);
  return auts;
}

absl::StatusOr<uint64_t> RecoverSqnMs(const Milenage& m, const Bytes& rand,
                                      const Bytes& auts) {
  if (rand.size() != Milenage::kRandLen) {
    return absl::InvalidArgumentError(
        absl::StrCat("RAND must be 16 bytes (got ", rand.size(), ")"));
  }
  if (auts.size() != kAutsLen) {
    return absl::InvalidArgumentError(
        absl::StrCat("AUTS must be 14 bytes (got ", auts.size(), ")"));
  }
  Bytes ak_star = m.F5Star(rand);
  const Bytes sqn6 = XorPrefix(auts.data(), ak_star.data(), Milenage::kSqnLen);
  SecureWipe(ak_star);
  const Bytes xmac_s = m.F1Star(rand, sqn6, ResyncAmf());
  if (!ConstantTimeEqual(xmac_s.data(), xmac_s.size(),
                         auts.data() + Milenage::kSqnLen, Milenage::kMacLen)) {
    return absl::UnauthenticatedError("AUTS: MAC-S does not verify");
  }
  return BytesToUint48(sqn6.data());
}

}  // namespace simprov
