// The agent's fast leaf check (VerifyP256LeafFast), differentially: whatever
// it accepts, OpenSSL's full path (CertFromDer + SamePublicKey +
// VerifyChain "sslclient" + DescribeCert) must accept with the same
// description; a mismatch aborts.
//
// Input: one mode byte, then a certificate's DER. Mode bit 0: re-sign the
// certificate with the fixed issuing key (so mutations of the signed part
// get past the signature); bit 1: verify two days later (after notAfter).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "common/leaf_check.h"
#include "common/x509.h"
#include "test/fuzz/fuzz_ca.h"
#include "test/fuzz/fuzz_support.h"

namespace simprov::fuzz {
namespace {

const FixedCa* ca = nullptr;

void WriteSeeds() {
  const Bytes uri = ca->Leaf({{GEN_URI, "urn:simprov:device:1"}});
  const Bytes full = ca->Leaf({{GEN_URI, "urn:simprov:device:1"},
                               {GEN_URI, "spiffe://example/device/cam-1"},
                               {GEN_DNS, "cam-1.devices.example"},
                               {GEN_IPADD, std::string("\x0a\x00\x00\x01", 4)}},
                              "http://crl.example/simprov.crl");
  EvpPkeyPtr other = GenerateP256Key();
  const Bytes other_key = ca->Leaf({}, "", other.get());
  const Bytes server =
      ca->Leaf({{GEN_DNS, "x.example"}}, "", nullptr, "serverAuth");
  EvpPkeyPtr p384(EVP_EC_gen("P-384"));
  const Bytes p384_leaf = ca->Leaf({}, "", p384.get());
  // The seeds reach the accepting path (else fuzzing only sees refusals).
  SIMPROV_FUZZ_CHECK(VerifyP256LeafFast(uri, ca->device_key.get(),
                                        ca->issuing.get(), {ca->root.get()},
                                        kFuzzNow)
                         .has_value());
  SIMPROV_FUZZ_CHECK(VerifyP256LeafFast(full, ca->device_key.get(),
                                        ca->issuing.get(), {ca->root.get()},
                                        kFuzzNow)
                         .has_value());
  int n = 0;
  for (const Bytes* der : {&uri, &full, &other_key, &server, &p384_leaf}) {
    for (uint8_t mode : {0, 1, 2}) {
      WriteSeed("seed" + std::to_string(n++), WithMode(mode, *der));
    }
  }
  WriteSeed("issuing", WithMode(0, CertToDer(ca->issuing.get())));
}

void ExpectSameInfo(const CertInfo& a, const CertInfo& b) {
  SIMPROV_FUZZ_CHECK(a.subject == b.subject);
  SIMPROV_FUZZ_CHECK(a.issuer == b.issuer);
  SIMPROV_FUZZ_CHECK(a.serial_hex == b.serial_hex);
  SIMPROV_FUZZ_CHECK(a.not_before == b.not_before);
  SIMPROV_FUZZ_CHECK(a.not_after == b.not_after);
  SIMPROV_FUZZ_CHECK(a.dns_sans == b.dns_sans);
  SIMPROV_FUZZ_CHECK(a.ip_sans == b.ip_sans);
  SIMPROV_FUZZ_CHECK(a.uri_sans == b.uri_sans);
  SIMPROV_FUZZ_CHECK(a.is_ca == b.is_ca);
}

}  // namespace
}  // namespace simprov::fuzz

using namespace simprov;
using namespace simprov::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ca = new FixedCa();
  if (SeedDir() != nullptr) {
    WriteSeeds();
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 8192) return 0;
  const uint8_t mode = data[0];
  Bytes der(data + 1, data + size);
  if (mode & 1) {
    std::optional<Bytes> resigned = Resign(der, ca->issuing_key.get());
    if (!resigned) return 0;
    der = std::move(*resigned);
  }
  const absl::Time at = (mode & 2) ? kFuzzNow + absl::Hours(48) : kFuzzNow;
  std::optional<CertInfo> fast = VerifyP256LeafFast(
      der, ca->device_key.get(), ca->issuing.get(), {ca->root.get()}, at);
  if (!fast.has_value()) return 0;
  absl::StatusOr<X509Ptr> leaf = CertFromDer(der);
  SIMPROV_FUZZ_CHECK(leaf.ok());
  SIMPROV_FUZZ_CHECK(
      SamePublicKey(X509_get0_pubkey(leaf->get()), ca->device_key.get()));
  absl::Status chain = VerifyChain(leaf->get(), {ca->issuing.get()},
                                   {ca->root.get()}, at, "sslclient");
  if (!chain.ok())
    std::fprintf(stderr, "general path: %s\n", chain.ToString().c_str());
  SIMPROV_FUZZ_CHECK(chain.ok());
  ExpectSameInfo(*fast, DescribeCert(leaf->get()));
  return 0;
}
