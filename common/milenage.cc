#include "common/milenage.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/openssl_ptr.h"

namespace simprov {
namespace {

constexpr size_t kBlockLen = 16;

// N bytes of secret-derived scratch data, wiped when it goes out of scope.
template <size_t N>
struct Secret {
  uint8_t v[N] = {};
  Secret() = default;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret() { OPENSSL_cleanse(v, sizeof v); }
};
using Block = Secret<kBlockLen>;

// Rotation amounts r1..r5 of TS 35.206 in bits (all multiples of 8) and the
// constants c1..c5, of which only the last byte is ever non-zero.
constexpr int kR1 = 64, kR2 = 0, kR3 = 32, kR4 = 64, kR5 = 96;
constexpr uint8_t kC1 = 0x00, kC2 = 0x01, kC3 = 0x02, kC4 = 0x04, kC5 = 0x08;

[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "simprov::Milenage: %s\n", what);
  std::abort();
}

void RequireLen(const Bytes& b, size_t len, const char* what) {
  if (b.size() != len) Fatal(what);
}

// out = rot(in, r bits) xor c, where rot is a cyclic left rotation of the
// 128-bit string and c is a 128-bit constant whose only non-zero byte is the
// last one.
void RotXor(const uint8_t* in, int r_bits, uint8_t c_last, uint8_t* out) {
  const size_t shift = static_cast<size_t>(r_bits / 8);
  for (size_t i = 0; i < kBlockLen; ++i) out[i] = in[(i + shift) % kBlockLen];
  out[kBlockLen - 1] ^= c_last;
}

void XorInto(uint8_t* dst, const uint8_t* src, size_t len) {
  for (size_t i = 0; i < len; ++i) dst[i] ^= src[i];
}

// AES-128-ECB, fetched once per process (a fetch per object would cost a
// provider lookup on every Create). Null if the provider lacks AES.
const EVP_CIPHER* Aes128Ecb() {
  static const EVP_CIPHER* const cipher =
      EVP_CIPHER_fetch(nullptr, "AES-128-ECB", nullptr);
  return cipher;
}

absl::Status CheckKeyLen(const Bytes& b, const char* name) {
  if (b.size() != Milenage::kKeyLen) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Milenage: ", name, " must be 16 bytes (got ", b.size(), ")"));
  }
  return absl::OkStatus();
}

// A cipher context keyed with k (16 bytes), without padding.
absl::StatusOr<EvpCipherCtxPtr> NewKeyedContext(const Bytes& k) {
  const EVP_CIPHER* cipher = Aes128Ecb();
  if (cipher == nullptr) {
    return absl::InternalError(
        absl::StrCat("AES-128-ECB unavailable: ", OpenSslErrorString()));
  }
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr ||
      EVP_EncryptInit_ex2(ctx.get(), cipher, k.data(), nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1) {
    return absl::InternalError(
        absl::StrCat("AES-128 key setup failed: ", OpenSslErrorString()));
  }
  return ctx;
}

// out = E_K(in) for len bytes (a multiple of 16) with an ECB context.
void EncryptBlocks(EVP_CIPHER_CTX* ctx, const uint8_t* in, uint8_t* out,
                   size_t len) {
  int out_len = 0;
  if (EVP_EncryptUpdate(ctx, out, &out_len, in, static_cast<int>(len)) != 1 ||
      static_cast<size_t>(out_len) != len) {
    Fatal("AES-128 encryption failed");
  }
}

}  // namespace

struct Milenage::State {
  // Holds the AES key schedule of K; EVP_CIPHER_CTX_free cleanses it.
  EvpCipherCtxPtr ctx;
  uint8_t opc[kKeyLen] = {};
  // Serialises use of ctx, which EVP does not promise is safe to share.
  std::mutex mu;

  ~State() { OPENSSL_cleanse(opc, sizeof opc); }

  // out = E_K(in) for n consecutive blocks. Requires mu.
  void Encrypt(const uint8_t* in, uint8_t* out, size_t n_blocks) {
    EncryptBlocks(ctx.get(), in, out, n_blocks * kBlockLen);
  }

  // TEMP = E_K(RAND xor OPc). Requires mu.
  void Temp(const Bytes& rand, Block& temp) {
    Block in;
    for (size_t i = 0; i < kBlockLen; ++i) in.v[i] = rand[i] ^ opc[i];
    Encrypt(in.v, temp.v, 1);
  }

  // OUT1 = E_K(TEMP xor rot(IN1 xor OPc, r1) xor c1) xor OPc, with
  // IN1 = SQN || AMF || SQN || AMF.
  void Out1(const Bytes& rand, const Bytes& sqn6, const Bytes& amf2,
            Block& out1) {
    RequireLen(rand, kRandLen, "RAND must be 16 bytes");
    RequireLen(sqn6, kSqnLen, "SQN must be 6 bytes");
    RequireLen(amf2, kAmfLen, "AMF must be 2 bytes");
    Block in1, x, temp;
    for (size_t half = 0; half < 2; ++half) {
      std::copy(sqn6.begin(), sqn6.end(), in1.v + 8 * half);
      std::copy(amf2.begin(), amf2.end(), in1.v + 8 * half + kSqnLen);
    }
    XorInto(in1.v, opc, kBlockLen);
    RotXor(in1.v, kR1, kC1, x.v);
    std::lock_guard<std::mutex> lock(mu);
    Temp(rand, temp);
    XorInto(x.v, temp.v, kBlockLen);
    Encrypt(x.v, out1.v, 1);
    XorInto(out1.v, opc, kBlockLen);
  }
};

Milenage::Milenage(std::unique_ptr<State> state) : state_(std::move(state)) {}
Milenage::Milenage(Milenage&&) noexcept = default;
Milenage& Milenage::operator=(Milenage&&) noexcept = default;
Milenage::~Milenage() = default;

absl::StatusOr<Milenage> Milenage::Create(const Bytes& k, const Bytes& opc) {
  if (absl::Status s = CheckKeyLen(k, "K"); !s.ok()) return s;
  if (absl::Status s = CheckKeyLen(opc, "OPc"); !s.ok()) return s;
  absl::StatusOr<EvpCipherCtxPtr> ctx = NewKeyedContext(k);
  if (!ctx.ok()) return ctx.status();
  auto state = std::make_unique<State>();
  state->ctx = *std::move(ctx);
  std::copy(opc.begin(), opc.end(), state->opc);
  return Milenage(std::move(state));
}

absl::StatusOr<Bytes> Milenage::ComputeOpc(const Bytes& k, const Bytes& op) {
  if (absl::Status s = CheckKeyLen(k, "K"); !s.ok()) return s;
  if (absl::Status s = CheckKeyLen(op, "OP"); !s.ok()) return s;
  absl::StatusOr<EvpCipherCtxPtr> ctx = NewKeyedContext(k);
  if (!ctx.ok()) return ctx.status();
  Bytes opc(kKeyLen);
  EncryptBlocks(ctx->get(), op.data(), opc.data(), kKeyLen);
  XorInto(opc.data(), op.data(), kKeyLen);
  return opc;
}

Bytes Milenage::F1(const Bytes& rand, const Bytes& sqn6,
                   const Bytes& amf2) const {
  if (!state_) Fatal("used after move");
  Block out1;
  state_->Out1(rand, sqn6, amf2, out1);
  return Bytes(out1.v, out1.v + kMacLen);
}

Bytes Milenage::F1Star(const Bytes& rand, const Bytes& sqn6,
                       const Bytes& amf2) const {
  if (!state_) Fatal("used after move");
  Block out1;
  state_->Out1(rand, sqn6, amf2, out1);
  return Bytes(out1.v + kMacLen, out1.v + 2 * kMacLen);
}

Milenage::Outputs Milenage::F2345(const Bytes& rand) const {
  if (!state_) Fatal("used after move");
  RequireLen(rand, kRandLen, "RAND must be 16 bytes");
  State& st = *state_;
  // OUTi = E_K(rot(TEMP xor OPc, ri) xor ci) xor OPc for i = 2..4, the
  // three blocks encrypted in one ECB call.
  Block temp;
  Secret<3 * kBlockLen> in, out;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    st.Temp(rand, temp);
    XorInto(temp.v, st.opc, kBlockLen);
    RotXor(temp.v, kR2, kC2, in.v);
    RotXor(temp.v, kR3, kC3, in.v + kBlockLen);
    RotXor(temp.v, kR4, kC4, in.v + 2 * kBlockLen);
    st.Encrypt(in.v, out.v, 3);
  }
  const uint8_t* out2 = out.v;
  const uint8_t* out3 = out.v + kBlockLen;
  const uint8_t* out4 = out.v + 2 * kBlockLen;
  for (size_t i = 0; i < 3; ++i) {
    XorInto(out.v + i * kBlockLen, st.opc, kBlockLen);
  }
  Outputs o;
  o.ak.assign(out2, out2 + kAkLen);            // f5 = OUT2[0..47]
  o.res.assign(out2 + 8, out2 + 8 + kResLen);  // f2 = OUT2[64..127]
  o.ck.assign(out3, out3 + kCkLen);            // f3 = OUT3
  o.ik.assign(out4, out4 + kIkLen);            // f4 = OUT4
  return o;
}

Bytes Milenage::F5Star(const Bytes& rand) const {
  if (!state_) Fatal("used after move");
  RequireLen(rand, kRandLen, "RAND must be 16 bytes");
  State& st = *state_;
  Block temp, in5, out5;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    st.Temp(rand, temp);
    XorInto(temp.v, st.opc, kBlockLen);
    RotXor(temp.v, kR5, kC5, in5.v);
    st.Encrypt(in5.v, out5.v, 1);
  }
  XorInto(out5.v, st.opc, kAkLen);
  return Bytes(out5.v, out5.v + kAkLen);
}

}  // namespace simprov
