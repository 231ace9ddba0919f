// The agent's answer opener: the sealed answer (common/transcript OpenAnswer)
// and the sealed box at rest (common/sealed_box OpenBox) on arbitrary bytes,
// and what the agent does with an answer that authenticated: parse the
// Answer message, compare the request hash, and check the issued chain
// (VerifyIssued: the fast leaf check or OpenSSL's path).
//
// Input: one mode byte, then the bytes. Mode bit 0 clear: the bytes are a
// sealed answer / sealed box under fixed keys. Set: they are the plaintext
// Answer, sealed here with the session keys (the broker's part) so that the
// agent's parsing is reached; sealing and opening must round-trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "agent/bootstrap_client.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/kdf.h"
#include "common/sealed_box.h"
#include "common/transcript.h"
#include "simprov/v1/bootstrap.pb.h"
#include "test/fuzz/fuzz_ca.h"
#include "test/fuzz/fuzz_support.h"

namespace simprov::fuzz {
namespace {

const FixedCa* ca = nullptr;
const SessionKeys* keys = nullptr;
const Bytes request_hash = Sha256(ToBytes("simprov fuzz request"));
const Bytes kek(kKekSize, 0x5A);
const Bytes aad = ToBytes("001010123456789");

std::string AnswerBytes(const std::vector<Bytes>& chain,
                        const std::vector<Bytes>& anchors, int64_t ms) {
  v1::Answer a;
  a.set_request_hash(ToString(request_hash));
  for (const Bytes& c : chain) a.add_chain(ToString(c));
  for (const Bytes& c : anchors) a.add_trust_anchors(ToString(c));
  a.set_server_time_unix_ms(ms);
  a.set_device_id("d-1");
  a.set_registry_info_json("{\"host\":\"mqtt.example\"}");
  return a.SerializeAsString();
}

void WriteSeeds() {
  const Bytes leaf = ca->Leaf({{GEN_URI, "urn:simprov:device:1"}});
  const Bytes issuing = CertToDer(ca->issuing.get());
  const Bytes root = CertToDer(ca->root.get());
  const int64_t ms = absl::ToUnixMillis(kFuzzNow);
  const std::string ok = AnswerBytes({leaf, issuing}, {root}, ms);
  WriteSeed("answer_ok", WithMode(1, ok));
  WriteSeed("answer_two_intermediates",
            WithMode(1, AnswerBytes({leaf, issuing, issuing}, {root}, ms)));
  WriteSeed("answer_expired", WithMode(1, AnswerBytes({leaf, issuing}, {root},
                                                      ms + 86400 * 1000 * 2)));
  WriteSeed("answer_no_chain", WithMode(1, AnswerBytes({}, {root}, ms)));
  WriteSeed("answer_time_only", WithMode(1, AnswerBytes({}, {}, ms)));
  DeterministicRandom random(1);
  WriteSeed("sealed_answer",
            WithMode(0, SealAnswer(*keys, request_hash, ToBytes(ok), random)));
  WriteSeed("sealed_box",
            WithMode(0, SealBox(kek, ToBytes("secret"), aad, random)));
  WriteSeed("empty", Bytes{0});
}

}  // namespace
}  // namespace simprov::fuzz

using namespace simprov;
using namespace simprov::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ca = new FixedCa();
  keys = new SessionKeys(DeriveSessionKeys(Bytes(16, 1), Bytes(16, 2),
                                           Bytes(16, 3), "001010123456789",
                                           "broker.example"));
  if (SeedDir() != nullptr) {
    WriteSeeds();
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  const Bytes in(data + 1, data + size);
  if ((data[0] & 1) == 0) {
    (void)OpenAnswer(*keys, request_hash, in);
    (void)OpenBox(kek, in, aad);
    return 0;
  }
  DeterministicRandom random(size);
  absl::StatusOr<Bytes> plain = OpenAnswer(
      *keys, request_hash, SealAnswer(*keys, request_hash, in, random));
  SIMPROV_FUZZ_CHECK(plain.ok() && *plain == in);
  absl::StatusOr<Bytes> box = OpenBox(kek, SealBox(kek, in, aad, random), aad);
  SIMPROV_FUZZ_CHECK(box.ok() && *box == in);

  // As BootstrapClient::Exchange and Run do with an authenticated answer.
  v1::Answer answer;
  if (!answer.ParseFromArray(plain->data(), static_cast<int>(plain->size()))) {
    return 0;
  }
  if (!ConstantTimeEqual(ToBytes(answer.request_hash()), request_hash)) {
    return 0;
  }
  std::vector<Bytes> chain, anchors;
  for (const std::string& der : answer.chain()) chain.push_back(ToBytes(der));
  for (const std::string& der : answer.trust_anchors()) {
    anchors.push_back(ToBytes(der));
  }
  (void)VerifyIssued(ca->device_key.get(), chain, anchors,
                     absl::FromUnixMillis(answer.server_time_unix_ms()));
  return 0;
}
