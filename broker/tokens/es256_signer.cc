#include "broker/tokens/es256_signer.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <system_error>

#include "common/log.h"
#include "common/token/jose.h"

namespace simprov {
namespace {

// OpenSSL 3 has no provider interface for a split ECDSA signature; the
// EC_KEY functions that do it are deprecated but kept through 3.x.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
EC_KEY* EcKeyOf(EVP_PKEY* key) { return EVP_PKEY_get1_EC_KEY(key); }
void FreeEcKey(EC_KEY* key) { EC_KEY_free(key); }
// Jacobian X and Z of `point` (affine x = X / Z^2).
bool JacobianXZ(const EC_GROUP* group, const EC_POINT* point, BIGNUM* x,
                BIGNUM* z, BN_CTX* ctx) {
  return EC_POINT_get_Jprojective_coordinates_GFp(group, point, x, nullptr, z,
                                                  ctx) == 1;
}
// Null kinv and r: a whole signature, its nonce drawn here.
ECDSA_SIG* SignDigest(const unsigned char (&digest)[32], const BIGNUM* kinv,
                      const BIGNUM* r, EC_KEY* key) {
  return ECDSA_do_sign_ex(digest, sizeof digest, kinv, r, key);
}
#pragma GCC diagnostic pop

// Signers whose nonce thread runs (see Es256Signer::StopAllAtExit).
struct LiveSigners {
  std::mutex mu;
  std::set<Es256Signer*> signers;  // guarded by mu
};

LiveSigners& Live() {
  static auto* const live = new LiveSigners;  // never destroyed
  return *live;
}

// Bumped in every forked child (pthread_atfork).
std::atomic<unsigned> fork_generation{0};

unsigned ForkGeneration() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1); });
  });
  return fork_generation.load();
}

// BIGNUMs freed (and wiped) together.
class BnList {
 public:
  explicit BnList(size_t n) : v_(n, nullptr) {}
  ~BnList() {
    for (BIGNUM* b : v_) BN_clear_free(b);
  }
  BnList(const BnList&) = delete;
  BnList& operator=(const BnList&) = delete;
  // Allocates every entry; false when out of memory.
  bool Fill() {
    for (BIGNUM*& b : v_) {
      if (b == nullptr && (b = BN_new()) == nullptr) return false;
    }
    return true;
  }
  BIGNUM*& operator[](size_t i) { return v_[i]; }
  const std::vector<BIGNUM*>& all() const { return v_; }

 private:
  std::vector<BIGNUM*> v_;
};

// v[i] <- v[i]^-1 * R mod m (Montgomery form), all v[i] in [1, m).
bool InvertAll(const std::vector<BIGNUM*>& v, const BIGNUM* m,
               BN_MONT_CTX* mont, BN_CTX* ctx) {
  // With x' = x*R (Montgomery form) and mont(a', b') = (a*b)': prefix
  // products c'[i] = (v[0]...v[i])'; one inversion of the blinded product;
  // then from the back, v[i]^-1 = c[i]^-1 * c[i-1] and
  // c[i-1]^-1 = c[i]^-1 * v[i].
  const size_t n = v.size();
  BnList vm(n), c(n), t(3);
  if (!vm.Fill() || !c.Fill() || !t.Fill()) return false;
  BIGNUM* blind = t[0];
  BIGNUM* blind_m = t[1];
  BIGNUM* inv = t[2];
  for (size_t i = 0; i < n; ++i) {
    if (BN_to_montgomery(vm[i], v[i], mont, ctx) != 1) return false;
    if (i == 0 ? BN_copy(c[0], vm[0]) == nullptr
               : BN_mod_mul_montgomery(c[i], c[i - 1], vm[i], mont, ctx) != 1) {
      return false;
    }
  }
  do {
    if (BN_priv_rand_range(blind, m) != 1) return false;
  } while (BN_is_zero(blind));
  // (c*b)^-1, then * b: c^-1. BN_mod_inverse sees only c*b, a uniformly
  // random number whatever the secrets are.
  if (BN_to_montgomery(blind_m, blind, mont, ctx) != 1 ||
      BN_mod_mul_montgomery(inv, c[n - 1], blind_m, mont, ctx) != 1 ||
      BN_from_montgomery(inv, inv, mont, ctx) != 1 ||
      BN_mod_inverse(inv, inv, m, ctx) == nullptr ||
      BN_to_montgomery(inv, inv, mont, ctx) != 1 ||
      BN_mod_mul_montgomery(inv, inv, blind_m, mont, ctx) != 1) {
    return false;
  }
  for (size_t i = n - 1; i > 0; --i) {
    if (BN_mod_mul_montgomery(v[i], inv, c[i - 1], mont, ctx) != 1 ||
        BN_mod_mul_montgomery(inv, inv, vm[i], mont, ctx) != 1) {
      return false;
    }
  }
  return BN_copy(v[0], inv) != nullptr;
}

}  // namespace

EcdsaNonceMaker::EcdsaNonceMaker(EVP_PKEY* key) {
  char name[64] = {};
  size_t len = 0;
  if (key == nullptr ||
      EVP_PKEY_get_group_name(key, name, sizeof name, &len) != 1 ||
      std::string_view(name, len) != SN_X9_62_prime256v1) {
    return;
  }
  EC_GROUP* group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  BN_CTX* ctx = BN_CTX_new();
  p_ = BN_new();
  mont_p_ = BN_MONT_CTX_new();
  mont_n_ = BN_MONT_CTX_new();
  if (group != nullptr && ctx != nullptr && p_ != nullptr &&
      mont_p_ != nullptr && mont_n_ != nullptr &&
      EC_GROUP_get_curve(group, p_, nullptr, nullptr, ctx) == 1 &&
      BN_MONT_CTX_set(mont_p_, p_, ctx) == 1 &&
      BN_MONT_CTX_set(mont_n_, EC_GROUP_get0_order(group), ctx) == 1) {
    group_ = group;
    group = nullptr;
  }
  EC_GROUP_free(group);
  BN_CTX_free(ctx);
}

EcdsaNonceMaker::~EcdsaNonceMaker() {
  EC_GROUP_free(group_);
  BN_free(p_);
  BN_MONT_CTX_free(mont_p_);
  BN_MONT_CTX_free(mont_n_);
}

void EcdsaNonceMaker::Free(Pair* pair) {
  if (pair == nullptr) return;
  BN_clear_free(pair->kinv);
  BN_free(pair->r);
  delete pair;
}

bool EcdsaNonceMaker::Make(size_t count, std::vector<Pair*>* out) const {
  if (!ok()) return false;
  if (count == 0) return true;
  constexpr size_t kBytes = 32;
  const BIGNUM* order = EC_GROUP_get0_order(group_);
  std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)> ctx(BN_CTX_secure_new(),
                                                      BN_CTX_free);
  std::unique_ptr<EC_POINT, decltype(&EC_POINT_clear_free)> point(
      EC_POINT_new(group_), EC_POINT_clear_free);
  BnList k(count), x(count), z(count);
  if (ctx == nullptr || point == nullptr || !k.Fill() || !x.Fill() ||
      !z.Fill()) {
    return false;
  }
  // k: 32 random bytes, drawn again when 0 or >= n (for P-256 about once
  // in 2^32), so uniform in [1, n).
  std::vector<unsigned char> bytes(kBytes * count);
  if (RAND_priv_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return false;
  }
  bool ok = true;
  for (size_t i = 0; ok && i < count; ++i) {
    unsigned char* b = bytes.data() + kBytes * i;
    while (ok) {
      if (BN_bin2bn(b, kBytes, k[i]) == nullptr) {
        ok = false;  // out of memory: not a reason to draw again
      } else if (BN_is_zero(k[i]) || BN_cmp(k[i], order) >= 0) {
        ok = RAND_priv_bytes(b, kBytes) == 1;
      } else {
        break;
      }
    }
    BN_set_flags(k[i], BN_FLG_CONSTTIME);
    ok = ok &&
         EC_POINT_mul(group_, point.get(), k[i], nullptr, nullptr, ctx.get()) ==
             1 &&
         JacobianXZ(group_, point.get(), x[i], z[i], ctx.get()) &&
         !BN_is_zero(z[i]);  // k*G is never infinity for k in [1, n)
  }
  OPENSSL_cleanse(bytes.data(), bytes.size());
  // k[i] becomes k^-1 (Montgomery form mod n), z[i] Z^-1 (mod p).
  if (!ok || !InvertAll(k.all(), order, mont_n_, ctx.get()) ||
      !InvertAll(z.all(), p_, mont_p_, ctx.get())) {
    return false;
  }
  std::vector<Pair*> made;
  made.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    auto* pair = new Pair;
    pair->kinv = BN_new();
    pair->r = BN_new();
    // x = X * (Z^-1)^2; r = x mod n; k^-1 out of Montgomery form.
    ok = pair->kinv != nullptr && pair->r != nullptr &&
         BN_mod_mul_montgomery(z[i], z[i], z[i], mont_p_, ctx.get()) == 1 &&
         BN_mod_mul_montgomery(x[i], x[i], z[i], mont_p_, ctx.get()) == 1 &&
         BN_nnmod(pair->r, x[i], order, ctx.get()) == 1 &&
         BN_from_montgomery(pair->kinv, k[i], mont_n_, ctx.get()) == 1;
    if (!ok) {
      Free(pair);
      break;
    }
    // r = 0 (probability 2^-256) cannot sign: that pair is dropped.
    if (BN_is_zero(pair->r)) {
      Free(pair);
      continue;
    }
    made.push_back(pair);
  }
  if (!ok) {
    for (Pair* pair : made) Free(pair);
    return false;
  }
  out->insert(out->end(), made.begin(), made.end());
  return true;
}

Es256Signer::Es256Signer(const std::shared_ptr<EVP_PKEY>& key, size_t presign,
                         bool background)
    : ec_(EcKeyOf(key.get())),
      maker_(key.get()),
      presign_(presign),
      background_(background),
      batch_(std::clamp<size_t>(presign / 4, 1, 16)),
      refill_every_(static_cast<uint32_t>(std::max<size_t>(presign / 4, 1))),
      generation_(ForkGeneration()),
      slots_(new std::atomic<Nonce*>[presign]) {
  for (size_t i = 0; i < presign_; ++i) slots_[i].store(nullptr);
}

Es256Signer::~Es256Signer() {
  {
    LiveSigners& live = Live();
    std::lock_guard<std::mutex> lock(live.mu);
    live.signers.erase(this);
    StopProducer();
  }
  for (size_t i = 0; i < presign_; ++i) {
    EcdsaNonceMaker::Free(slots_[i].exchange(nullptr));
  }
  FreeEcKey(ec_);
}

void Es256Signer::StopProducer() {
  stop_.store(true);
  taken_.fetch_add(1);
  taken_.notify_all();
  if (!producer_.joinable()) return;
  // In a forked child the thread does not exist.
  if (generation_ == fork_generation.load()) {
    producer_.join();
  } else {
    producer_.detach();
  }
}

void Es256Signer::StopAllAtExit() {
  LiveSigners& live = Live();
  std::lock_guard<std::mutex> lock(live.mu);
  for (Es256Signer* s : live.signers) s->StopProducer();
  live.signers.clear();
}

size_t Es256Signer::ready() const {
  size_t n = 0;
  for (size_t i = 0; i < presign_; ++i) n += slots_[i].load() != nullptr;
  return n;
}

void Es256Signer::Offer(const std::vector<Nonce*>& pairs) {
  size_t placed = 0;
  const uint64_t start = next_.load();
  for (size_t i = 0; i < presign_ && placed < pairs.size(); ++i) {
    std::atomic<Nonce*>& slot = slots_[(start + i) % presign_];
    Nonce* expected = nullptr;
    if (slot.load() == nullptr &&
        slot.compare_exchange_strong(expected, pairs[placed])) {
      ++placed;
    }
  }
  for (; placed < pairs.size(); ++placed) EcdsaNonceMaker::Free(pairs[placed]);
}

void Es256Signer::Produce() {
  // Idle priority: never takes a CPU from the broker's requests.
  sched_param param{};
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) != 0) {
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
  }
  constexpr size_t kBatch = 32;
  std::vector<Nonce*> pairs;
  while (!stop_.load()) {
    const uint32_t seen = taken_.load();
    for (size_t empty = presign_ - ready(); empty > 0 && !stop_.load();
         empty = presign_ - ready()) {
      pairs.clear();
      if (!maker_.Make(std::min(empty, kBatch), &pairs)) {
        LogWarning("token signing: nonce batch failed; signing without");
        return;
      }
      Offer(pairs);
    }
    // Until Sign reports refill_every_ more takes. `seen` was read before
    // this check of stop_, so a stop after it changes taken_ from `seen`.
    if (stop_.load()) break;
    taken_.wait(seen);
  }
}

std::string Es256Signer::Sign(std::string_view input) {
  // SHA-256 fetched once (EVP_sha256() is fetched again at every use).
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char digest[32];
  unsigned int digest_len = 0;
  if (ec_ == nullptr || sha256 == nullptr ||
      EVP_Digest(input.data(), input.size(), digest, &digest_len, sha256,
                 nullptr) != 1 ||
      digest_len != sizeof digest) {
    return "";
  }
  Nonce* n = nullptr;
  // A forked child signs on its own: its parent may use the same pairs.
  if (presign_ > 0 && generation_ == fork_generation.load()) {
    if (background_) {
      std::call_once(start_, [this] {
        // OpenSSL registered its exit handler at its first use, before this
        // one, so this one runs first (exit handlers run in reverse).
        static const bool at_exit = std::atexit(StopAllAtExit) == 0;
        (void)at_exit;
        LiveSigners& live = Live();
        std::lock_guard<std::mutex> lock(live.mu);
        try {
          producer_ = std::thread([this] { Produce(); });
          live.signers.insert(this);
        } catch (const std::system_error& e) {  // then Sign's batches only
          LogWarning("token signing: no nonce thread: %s", e.what());
        }
      });
    }
    n = slots_[next_.fetch_add(1) % presign_].exchange(nullptr);
    if ((taken_.fetch_add(1) + 1) % refill_every_ == 0) taken_.notify_one();
    if (n == nullptr) {
      // The thread is behind (it runs only on idle CPU): a batch here.
      std::vector<Nonce*> pairs;
      if (maker_.Make(batch_, &pairs) && !pairs.empty()) {
        n = pairs.back();
        pairs.pop_back();
        Offer(pairs);
      }
    }
  }
  ECDSA_SIG* sig =
      SignDigest(digest, n ? n->kinv : nullptr, n ? n->r : nullptr, ec_);
  if (sig == nullptr && n != nullptr) {
    // s came out 0 (probability 2^-256): a fresh nonce.
    sig = SignDigest(digest, nullptr, nullptr, ec_);
  } else if (sig != nullptr && n != nullptr) {
    presigned_.fetch_add(1, std::memory_order_relaxed);
  }
  EcdsaNonceMaker::Free(n);
  if (sig == nullptr) return "";
  std::string raw;
  const bool ok = jose::EcdsaSigToRaw(sig, &raw);
  ECDSA_SIG_free(sig);
  return ok ? raw : "";
}

}  // namespace simprov
