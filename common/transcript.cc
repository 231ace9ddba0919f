#include "common/transcript.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <string_view>

#include "absl/status/status.h"
#include "common/digest.h"
#include "common/openssl_ptr.h"

namespace simprov {

namespace {

constexpr std::string_view kAnswerLabel = "simprov-v1 answer";
constexpr uint8_t kAnswerVersion = 1;
constexpr size_t kIvSize = 16;

void Append(Bytes& out, const uint8_t* data, size_t len) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<uint8_t>((len >> shift) & 0xff));
  }
  out.insert(out.end(), data, data + len);
}
void Append(Bytes& out, const Bytes& b) { Append(out, b.data(), b.size()); }
void Append(Bytes& out, std::string_view s) {
  Append(out, reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

Bytes AesCtr(const Bytes& key, const uint8_t* iv, const uint8_t* in,
             size_t len) {
  Bytes out(len);
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, key.data(),
                         iv) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &n, in, static_cast<int>(len)) !=
          1) {
    std::abort();
  }
  return out;
}

Bytes AnswerTag(const SessionKeys& keys, const Bytes& request_hash,
                const uint8_t* iv_and_ct, size_t len) {
  Bytes data = ToBytes(kAnswerLabel);
  data.insert(data.end(), request_hash.begin(), request_hash.end());
  data.push_back(kAnswerVersion);
  data.insert(data.end(), iv_and_ct, iv_and_ct + len);
  return HmacSha256(keys.resp_mac, data);
}

}  // namespace

Bytes EncodeTranscript(const EnrolTranscript& t, absl::string_view label) {
  Bytes out(label.begin(), label.end());
  uint8_t version[4] = {static_cast<uint8_t>(t.version >> 24),
                        static_cast<uint8_t>(t.version >> 16),
                        static_cast<uint8_t>(t.version >> 8),
                        static_cast<uint8_t>(t.version)};
  Append(out, version, sizeof version);
  Append(out, t.broker_identity);
  Append(out, t.session_id);
  Append(out, t.imsi);
  Append(out, t.rand);
  Append(out, t.autn);
  Append(out, t.res);
  Append(out, t.nonce);
  Append(out, t.csr_der);
  Append(out, t.imei);
  Append(out, t.iccid);
  return out;
}

Bytes TranscriptMac(const SessionKeys& keys, const Bytes& encoded) {
  return HmacSha256(keys.req_mac, encoded);
}

Bytes SealAnswer(const SessionKeys& keys, const Bytes& request_hash,
                 const Bytes& plaintext, Random& random) {
  Bytes iv = random.Generate(kIvSize);
  Bytes ct =
      AesCtr(keys.resp_enc, iv.data(), plaintext.data(), plaintext.size());
  Bytes box;
  box.reserve(1 + kIvSize + ct.size() + 32);
  box.push_back(kAnswerVersion);
  box.insert(box.end(), iv.begin(), iv.end());
  box.insert(box.end(), ct.begin(), ct.end());
  Bytes tag = AnswerTag(keys, request_hash, box.data() + 1, box.size() - 1);
  box.insert(box.end(), tag.begin(), tag.end());
  return box;
}

absl::StatusOr<Bytes> OpenAnswer(const SessionKeys& keys,
                                 const Bytes& request_hash, const Bytes& box) {
  if (box.size() < 1 + kIvSize + 32 || box[0] != kAnswerVersion) {
    return absl::UnauthenticatedError("answer is malformed");
  }
  const size_t body = box.size() - 1 - 32;
  Bytes tag = AnswerTag(keys, request_hash, box.data() + 1, body);
  if (!ConstantTimeEqual(tag.data(), tag.size(), box.data() + 1 + body, 32)) {
    return absl::UnauthenticatedError(
        "answer failed authentication (tampered, or not from the broker that "
        "holds this SIM's key)");
  }
  return AesCtr(keys.resp_enc, box.data() + 1, box.data() + 1 + kIvSize,
                body - kIvSize);
}

}  // namespace simprov
