#include "broker/tokens/token_keys.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/openssl_ptr.h"

namespace simprov {
namespace {

constexpr absl::Duration kRetireLeeway = absl::Minutes(2);

std::string Thumbprint(EVP_PKEY* key) {
  nlohmann::json jwk = jose::PublicJwk(key, "");
  nlohmann::json members;  // RFC 7638: required members, sorted, compact
  for (const char* m : {"crv", "kty", "x", "y"}) {
    if (jwk.contains(m)) members[m] = jwk[m];
  }
  unsigned char md[32];
  const std::string text = members.dump();
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  return jose::Base64UrlEncode(
      std::string_view(reinterpret_cast<char*>(md), 32));
}

std::shared_ptr<TokenKey> MakeKey(jose::PkeyPtr pkey) {
  auto k = std::make_shared<TokenKey>();
  k->alg = jose::AlgForKey(pkey.get());
  k->kid = Thumbprint(pkey.get());
  nlohmann::json header = {{"alg", k->alg}, {"kid", k->kid}, {"typ", "at+jwt"}};
  k->header_b64 = jose::Base64UrlEncode(header.dump());
  k->pkey = std::shared_ptr<EVP_PKEY>(pkey.release(), EVP_PKEY_free);
  if (k->alg == jose::kAlgEs256)
    k->es256 = std::make_shared<Es256Signer>(k->pkey);
  return k;
}

absl::StatusOr<std::string> PrivatePem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                        nullptr, nullptr)) {
    return absl::InternalError("cannot encode a token key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

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

std::string SignTokenClaims(const TokenKey& key,
                            const std::string& claims_json) {
  std::string input = key.header_b64;
  input += '.';
  input += jose::Base64UrlEncode(claims_json);
  const std::string sig = key.es256 != nullptr
                              ? key.es256->Sign(input)
                              : jose::Sign(key.pkey.get(), input);
  if (sig.empty()) return "";
  input += '.';
  input += jose::Base64UrlEncode(sig);
  return input;
}

absl::StatusOr<jose::PkeyPtr> GenerateTokenKey(const std::string& alg) {
  EVP_PKEY* key = nullptr;
  if (alg == jose::kAlgEs256) {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  } else if (alg == jose::kAlgEdDsa) {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("token alg must be ES256 or EdDSA, not ", alg));
  }
  if (!key) return absl::InternalError("token key generation failed");
  return jose::PkeyPtr(key);
}

TokenKeyManager::TokenKeyManager(TokenKeyOptions options, Clock& clock)
    : options_(std::move(options)),
      lead_(std::min(options_.rotation_period / 4, absl::Hours(1))),
      clock_(clock),
      keys_(std::make_shared<KeyList>()),
      next_check_(absl::InfinitePast()) {}

absl::StatusOr<std::unique_ptr<TokenKeyManager>> TokenKeyManager::Open(
    TokenKeyOptions options, Clock& clock) {
  if (options.alg != jose::kAlgEs256 && options.alg != jose::kAlgEdDsa) {
    return absl::InvalidArgumentError(
        absl::StrCat("token alg must be ES256 or EdDSA, not ", options.alg));
  }
  if (options.rotation_period < absl::Seconds(4)) {
    return absl::InvalidArgumentError("token key rotation period too short");
  }
  std::unique_ptr<TokenKeyManager> m(
      new TokenKeyManager(std::move(options), clock));
  if (!m->options_.path.empty() && PathExists(m->options_.path)) {
    if (absl::Status s = m->Load(); !s.ok()) return s;
  }
  if (absl::Status s = m->Maintain(); !s.ok()) return s;
  return m;
}

absl::Duration TokenKeyManager::jwks_max_age() const {
  return std::min(lead_ / 4, absl::Minutes(5));
}

absl::Time TokenKeyManager::DropTime(const TokenKey& k) const {
  return k.sign_until + options_.max_token_lifetime + kRetireLeeway;
}

absl::Status TokenKeyManager::Load() {
  auto text = ReadFileToString(options_.path, 1 << 20);
  if (!text.ok()) return text.status();
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("keys") ||
      !doc["keys"].is_array()) {
    return absl::DataLossError(
        absl::StrCat(options_.path, ": not a token key file"));
  }
  auto list = std::make_shared<KeyList>();
  for (const auto& e : doc["keys"]) {
    const std::string pem = e.value("private_pem", "");
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    EVP_PKEY* raw =
        bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
            : nullptr;
    if (!raw || jose::AlgForKey(raw).empty()) {
      EVP_PKEY_free(raw);
      return absl::DataLossError(
          absl::StrCat(options_.path, ": a token key does not load"));
    }
    auto k = MakeKey(jose::PkeyPtr(raw));
    k->publish_at = absl::FromUnixSeconds(e.value("publish_at", int64_t{0}));
    k->sign_from = absl::FromUnixSeconds(e.value("sign_from", int64_t{0}));
    k->sign_until = absl::FromUnixSeconds(e.value("sign_until", int64_t{0}));
    list->push_back(std::move(k));
  }
  std::lock_guard<std::mutex> lock(mu_);
  keys_ = std::move(list);
  return absl::OkStatus();
}

absl::Status TokenKeyManager::Save(const KeyList& keys) const {
  if (options_.path.empty()) return absl::OkStatus();
  nlohmann::json doc;
  doc["keys"] = nlohmann::json::array();
  for (const auto& k : keys) {
    auto pem = PrivatePem(k->pkey.get());
    if (!pem.ok()) return pem.status();
    doc["keys"].push_back({{"kid", k->kid},
                           {"alg", k->alg},
                           {"publish_at", absl::ToUnixSeconds(k->publish_at)},
                           {"sign_from", absl::ToUnixSeconds(k->sign_from)},
                           {"sign_until", absl::ToUnixSeconds(k->sign_until)},
                           {"private_pem", *pem}});
  }
  return WriteFileAtomic(options_.path, doc.dump(2) + "\n", 0600);
}

absl::Status TokenKeyManager::Maintain() {
  std::lock_guard<std::mutex> lock(mu_);
  return MaintainLocked(clock_.Now());
}

absl::Status TokenKeyManager::MaintainLocked(absl::Time now) {
  // Whole seconds: what the key file and the tokens hold.
  now = absl::FromUnixSeconds(absl::ToUnixSeconds(now));
  KeyList next;
  bool changed = false;
  for (const auto& k : *keys_) {
    if (DropTime(*k) <= now) {
      changed = true;  // every token it signed has expired
      continue;
    }
    next.push_back(k);
  }
  std::sort(next.begin(), next.end(), [](const auto& a, const auto& b) {
    return a->sign_from < b->sign_from;
  });
  if (next.empty()) {
    // First start (or after a very long downtime): nothing can have cached
    // a key, so the first one signs at once.
    auto pkey = GenerateTokenKey(options_.alg);
    if (!pkey.ok()) return pkey.status();
    auto k = MakeKey(std::move(*pkey));
    k->publish_at = k->sign_from = now;
    k->sign_until = now + options_.rotation_period;
    next.push_back(std::move(k));
    changed = true;
  } else if (now >= next.back()->sign_until - lead_) {
    auto pkey = GenerateTokenKey(options_.alg);
    if (!pkey.ok()) return pkey.status();
    auto k = MakeKey(std::move(*pkey));
    const TokenKey& latest = *next.back();
    k->publish_at = now;
    k->sign_from = std::max(latest.sign_until, now + lead_);
    k->sign_until = k->sign_from + options_.rotation_period;
    if (k->sign_from != latest.sign_until) {
      // Overdue: the old key signs on until the new one is published.
      auto extended = std::make_shared<TokenKey>(latest);
      extended->sign_until = k->sign_from;
      next.back() = std::move(extended);
    }
    LogInfo("token keys: published %s (%s), signs from %s", k->kid, k->alg,
            absl::FormatTime(k->sign_from));
    next.push_back(std::move(k));
    changed = true;
  }
  if (changed) {
    // Durable before any token is signed with a new key.
    if (absl::Status s = Save(next); !s.ok()) {
      LogError("token keys: cannot save %s: %s", options_.path, s.message());
      return s;
    }
    nlohmann::json jwks;
    jwks["keys"] = nlohmann::json::array();
    for (const auto& k : next) {
      jwks["keys"].push_back(jose::PublicJwk(k->pkey.get(), k->kid));
    }
    jwks_ = jwks.dump();
    keys_ = std::make_shared<KeyList>(std::move(next));
  } else if (jwks_.empty()) {
    nlohmann::json jwks;
    jwks["keys"] = nlohmann::json::array();
    for (const auto& k : *keys_) {
      jwks["keys"].push_back(jose::PublicJwk(k->pkey.get(), k->kid));
    }
    jwks_ = jwks.dump();
  }
  absl::Time check = absl::InfiniteFuture();
  for (const auto& k : *keys_) {
    check = std::min(check, DropTime(*k));
    check = std::min(check, k->sign_until - lead_);
    if (k->sign_from > now) check = std::min(check, k->sign_from);
  }
  next_check_ = check;
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const TokenKey>> TokenKeyManager::Current() {
  const absl::Time now = clock_.Now();
  std::lock_guard<std::mutex> lock(mu_);
  if (now >= next_check_) {
    if (absl::Status s = MaintainLocked(now); !s.ok()) {
      // Keep signing with what is durable; retry at the next call.
      LogWarning("token keys: rotation failed: %s", s.message());
    }
  }
  std::shared_ptr<const TokenKey> best;
  for (const auto& k : *keys_) {
    if (k->sign_from <= now && (!best || k->sign_from > best->sign_from)) {
      best = k;
    }
  }
  if (!best) return absl::UnavailableError("no token signing key");
  return best;
}

std::string TokenKeyManager::JwksJson() {
  std::lock_guard<std::mutex> lock(mu_);
  if (clock_.Now() >= next_check_) {
    (void)MaintainLocked(clock_.Now());
  }
  return jwks_;
}

}  // namespace simprov
