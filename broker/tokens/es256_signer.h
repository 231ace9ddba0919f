// ES256 (ECDSA P-256) signing for the broker's tokens with the costly
// part of each signature, the nonce pair, made ahead and in batches:
// EcdsaNonceMaker makes the pairs, Es256Signer keeps a pool of them filled
// by an idle-priority thread and signs with one pair per signature.
#ifndef SIMPROV_BROKER_TOKENS_ES256_SIGNER_H_
#define SIMPROV_BROKER_TOKENS_ES256_SIGNER_H_

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace simprov {

// ECDSA P-256 nonce pairs (k^-1 mod n, r = (k*G).x mod n), made a batch
// at a time: k is uniform in [1, n) from OpenSSL's private DRBG (one call
// per batch), k*G is OpenSSL's constant-time generator multiplication, and
// the two inversions each pair needs (k*G to affine, k^-1) are shared by
// the whole batch (Montgomery's trick: one inversion of the product, then
// three multiplications per element). The one inversion is of the product
// times a random blinding factor, so the variable-time BN_mod_inverse only
// ever sees a uniformly random number. Products use Montgomery
// multiplication, as OpenSSL's own signing does for secrets. At 16 a batch
// a pair costs about half an ECDSA_sign_setup. Thread-safe.
class EcdsaNonceMaker {
 public:
  struct Pair {
    BIGNUM* kinv = nullptr;  // secret
    BIGNUM* r = nullptr;
  };
  // `key` must be a P-256 key; ok() is false otherwise.
  explicit EcdsaNonceMaker(EVP_PKEY* key);
  ~EcdsaNonceMaker();
  EcdsaNonceMaker(const EcdsaNonceMaker&) = delete;
  EcdsaNonceMaker& operator=(const EcdsaNonceMaker&) = delete;

  bool ok() const { return group_ != nullptr; }
  // Appends `count` new pairs to `out` (the caller owns them: Free each;
  // a pair whose r is 0, probability 2^-256, is dropped, not replaced);
  // false, with nothing appended, on failure.
  bool Make(size_t count, std::vector<Pair*>* out) const;
  // Wipes the secret and frees; null is fine.
  static void Free(Pair* pair);

 private:
  EC_GROUP* group_ = nullptr;  // own copy
  BIGNUM* p_ = nullptr;        // the field prime
  BN_MONT_CTX* mont_p_ = nullptr;
  BN_MONT_CTX* mont_n_ = nullptr;
};

// ES256 signatures with the costly step done ahead. An ECDSA signature is
// r = (k*G).x and s = k^-1 (H(m) + r*d) for a fresh secret nonce k; the
// pair (k^-1, r) does not depend on the message and is nearly all of the
// work. `presign` slots hold pairs made ahead (EcdsaNonceMaker) by a
// background thread at idle priority (SCHED_IDLE: it runs only when a CPU
// would otherwise be idle); Sign takes the pair in the next slot (an
// atomic exchange: each pair is used once, then wiped). Under load the
// thread seldom runs: a Sign that finds its slot empty makes a small
// batch itself, keeps one pair and offers the rest to the empty slots
// ahead, so a busy signer still pays the batch price per signature.
// Signers never wait for the thread. A forked child never uses the
// parent's pairs (it signs whole, with OpenSSL's nonce). A signer still
// alive at exit has its thread stopped before OpenSSL's own clean-up runs.
class Es256Signer {
 public:
  static constexpr size_t kDefaultPresign = 256;

  // `key` must be a P-256 private key. presign 0: no pairs made ahead,
  // every signature whole. background false: no thread, the slots are
  // filled only by Sign's own batches (tests).
  explicit Es256Signer(const std::shared_ptr<EVP_PKEY>& key,
                       size_t presign = kDefaultPresign,
                       bool background = true);
  ~Es256Signer();
  Es256Signer(const Es256Signer&) = delete;
  Es256Signer& operator=(const Es256Signer&) = delete;

  // The JWS signature of `input` (R || S, 64 bytes); "" on failure.
  std::string Sign(std::string_view input);

  // Pairs ready now (the thread refills after every presign/4 takes), and
  // signatures made with a pair made ahead (by the thread or in a batch).
  size_t ready() const;
  uint64_t presigned() const { return presigned_.load(); }

 private:
  using Nonce = EcdsaNonceMaker::Pair;
  // Puts `pairs` into empty slots from the next one to be taken on; wipes
  // those that find no room.
  void Offer(const std::vector<Nonce*>& pairs);
  void Produce();
  // Stops and joins the thread; with LiveSigners' lock held.
  void StopProducer();
  static void StopAllAtExit();

  EC_KEY* const ec_;  // the key's EC_KEY (own reference), for signing
  const EcdsaNonceMaker maker_;
  const size_t presign_;
  const bool background_;
  const size_t batch_;           // pairs a Sign makes when its slot is empty
  const uint32_t refill_every_;  // the thread wakes after this many takes
  const unsigned generation_;    // the fork generation at construction
  std::unique_ptr<std::atomic<Nonce*>[]> slots_;
  std::atomic<uint64_t> next_{0};   // the slot the next Sign takes
  std::atomic<uint32_t> taken_{0};  // takes so far; the thread waits on it
  std::atomic<uint64_t> presigned_{0};
  std::atomic<bool> stop_{false};
  std::once_flag start_;
  std::thread producer_;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_TOKENS_ES256_SIGNER_H_
