// The broker's CSR intake, differentially: ParseAndVerifyCsr (its P-256
// fast path first) and the general OpenSSL path must give the same verdict
// and, when they accept, the same key and key type; a mismatch aborts.
//
// Input: one mode byte, then a CSR's DER. Mode bit 0: re-sign the CSR with
// the fixed device key (so mutations of the request info get past the
// self-signature when its key is the device key).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "common/csr.h"
#include "common/x509.h"
#include "test/fuzz/fuzz_keys.h"
#include "test/fuzz/fuzz_support.h"

namespace simprov::fuzz {
namespace {

EVP_PKEY* device_key = nullptr;

void WriteSeeds() {
  int n = 0;
  auto write = [&](EVP_PKEY* key, const char* cn) {
    absl::StatusOr<Bytes> csr = CreateCsr(key, cn);
    SIMPROV_FUZZ_CHECK(csr.ok());
    for (uint8_t mode : {0, 1}) {
      WriteSeed("seed" + std::to_string(n++), WithMode(mode, *csr));
    }
  };
  write(device_key, "001010123456789");
  write(device_key, std::string(64, 'x').c_str());
  EvpPkeyPtr p384(EVP_EC_gen("P-384"));
  write(p384.get(), "p384");
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  write(ed.get(), "ed25519");
  EvpPkeyPtr rsa(EVP_RSA_gen(2048));
  write(rsa.get(), "rsa");
  EvpPkeyPtr p224(EVP_EC_gen("P-224"));
  write(p224.get(), "p224");
}

}  // namespace
}  // namespace simprov::fuzz

using namespace simprov;
using namespace simprov::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  device_key = LoadKey(kDeviceKeyPem).release();
  if (SeedDir() != nullptr) {
    WriteSeeds();
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Bytes der(data + 1, data + size);
  if (data[0] & 1) {
    std::optional<Bytes> resigned = Resign(der, device_key);
    if (!resigned) return 0;
    der = std::move(*resigned);
  }
  absl::StatusOr<CsrInfo> fast = ParseAndVerifyCsr(der);
  absl::StatusOr<CsrInfo> general = internal::ParseAndVerifyCsrGeneral(der);
  if (fast.ok() != general.ok()) {
    std::fprintf(stderr, "fast: %s\ngeneral: %s\n",
                 fast.status().ToString().c_str(),
                 general.status().ToString().c_str());
  }
  SIMPROV_FUZZ_CHECK(fast.ok() == general.ok());
  if (fast.ok()) {
    SIMPROV_FUZZ_CHECK(
        SamePublicKey(fast->public_key.get(), general->public_key.get()));
    SIMPROV_FUZZ_CHECK(fast->key_type == general->key_type);
  }
  return 0;
}
