// Helpers shared by the fuzz targets: fixed keys, re-signing a mutated
// certificate or CSR so that fuzzing reaches past the signature check, and
// writing seeds (a target run with SIMPROV_FUZZ_WRITE_SEEDS=DIR writes its
// generated seeds there and exits; test/fuzz/make_seeds runs them all).
#ifndef SIMPROV_TEST_FUZZ_FUZZ_SUPPORT_H_
#define SIMPROV_TEST_FUZZ_FUZZ_SUPPORT_H_

#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

#include "common/bytes.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace simprov::fuzz {

// Aborts (a fuzzer finding) when `cond` is false: for differential checks
// and for the harness's own setup.
#define SIMPROV_FUZZ_CHECK(cond)                                            \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                  \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

inline EvpPkeyPtr LoadKey(const char* pem) {
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(pem);
  SIMPROV_FUZZ_CHECK(key.ok());
  return std::move(*key);
}

// The directory to write seeds to, or null for a fuzzing run.
inline const char* SeedDir() { return std::getenv("SIMPROV_FUZZ_WRITE_SEEDS"); }

inline void WriteSeed(const std::string& name, const std::string& data) {
  const std::string path = std::string(SeedDir()) + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  SIMPROV_FUZZ_CHECK(out.good());
}
inline void WriteSeed(const std::string& name, const Bytes& data) {
  WriteSeed(name, ToString(data));
}

// `mode` followed by `data`: the input of a target that reads a mode byte.
inline Bytes WithMode(uint8_t mode, const Bytes& data) {
  Bytes out = {mode};
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
inline Bytes WithMode(uint8_t mode, const std::string& data) {
  return WithMode(mode, ToBytes(data));
}

// A DER length prefix.
inline void AppendDerLength(Bytes& out, size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<uint8_t>(len));
    return;
  }
  Bytes be;
  for (size_t l = len; l > 0; l >>= 8) be.insert(be.begin(), l & 0xFF);
  out.push_back(static_cast<uint8_t>(0x80 | be.size()));
  out.insert(out.end(), be.begin(), be.end());
}

// The length of the TLV at der[off], header included, if it fits; any
// length form (the parsers under test decide what they accept).
inline std::optional<size_t> TlvSize(const Bytes& der, size_t off) {
  if (off + 2 > der.size()) return std::nullopt;
  size_t len = der[off + 1], hdr = 2;
  if (len & 0x80) {
    const size_t n = len & 0x7F;
    if (n == 0 || n > 4 || off + 2 + n > der.size()) return std::nullopt;
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | der[off + 2 + i];
    hdr += n;
  }
  if (len > der.size() - off - hdr) return std::nullopt;
  return hdr + len;
}

// SEQUENCE { tbs, algorithm, BIT STRING { signature } } from a signed
// structure (certificate, CSR) whose first two elements are kept as they
// are and whose signature is made anew with `key` (SHA-256) over the tbs
// bytes. nullopt when `der` does not have two elements to keep.
inline std::optional<Bytes> Resign(const Bytes& der, EVP_PKEY* key) {
  std::optional<size_t> outer = TlvSize(der, 0);
  if (!outer || der[0] != 0x30) return std::nullopt;
  size_t off = 2;
  if (der[1] & 0x80) off += der[1] & 0x7F;
  std::optional<size_t> tbs = TlvSize(der, off);
  if (!tbs) return std::nullopt;
  std::optional<size_t> alg = TlvSize(der, off + *tbs);
  if (!alg) return std::nullopt;
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t sig_len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &sig_len, der.data() + off, *tbs) !=
          1) {
    return std::nullopt;
  }
  Bytes sig(sig_len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &sig_len, der.data() + off, *tbs) !=
      1) {
    return std::nullopt;
  }
  sig.resize(sig_len);
  Bytes body(der.begin() + static_cast<long>(off),
             der.begin() + static_cast<long>(off + *tbs + *alg));
  body.push_back(0x03);
  AppendDerLength(body, sig.size() + 1);
  body.push_back(0x00);
  body.insert(body.end(), sig.begin(), sig.end());
  Bytes out = {0x30};
  AppendDerLength(out, body.size());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace simprov::fuzz

#endif  // SIMPROV_TEST_FUZZ_FUZZ_SUPPORT_H_
