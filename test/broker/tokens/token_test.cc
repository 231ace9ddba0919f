// Device tokens: the signer's keys and rotation (broker/token_keys) and the
// application-side TokenVerifier, with one test per refusal.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/ca/ca.h"
#include "broker/tokens/es256_signer.h"
#include "broker/tokens/token_keys.h"
#include "broker/tokens/token_service.h"
#include "common/clock.h"
#include "common/token/jose.h"
#include "common/token/token_verifier.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using nlohmann::json;
using testing::MakeTempDir;
using testing::RemoveTree;

constexpr int64_t kNow = 1'800'000'000;

class TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TokenKeyOptions o;
    auto keys = TokenKeyManager::Open(o, clock_);
    ASSERT_TRUE(keys.ok()) << keys.status();
    keys_ = std::move(*keys);
    key_ = *keys_->Current();
    verifier_ = MakeVerifier();
  }

  std::unique_ptr<TokenVerifier> MakeVerifier(
      TokenVerifierOptions o = TokenVerifierOptions()) {
    if (o.audience.empty()) o.audience = "billing";
    if (o.issuer.empty()) o.issuer = "https://broker.test";
    FakeClock* clock = &clock_;
    o.now_unix = [clock] { return absl::ToUnixSeconds(clock->Now()); };
    auto v = std::make_unique<TokenVerifier>(o);
    std::string error;
    EXPECT_TRUE(v->SetJwks(keys_->JwksJson(), &error)) << error;
    return v;
  }

  json Claims() {
    const int64_t now = absl::ToUnixSeconds(clock_.Now());
    return {{"iss", "https://broker.test"},
            {"sub", "dev-1"},
            {"aud", "billing"},
            {"iat", now},
            {"nbf", now},
            {"exp", now + 600},
            {"jti", "jti-1"},
            {"imsi", "001010000000001"},
            {"group", "default"}};
  }
  json Header() {
    return {{"alg", key_->alg}, {"kid", key_->kid}, {"typ", "at+jwt"}};
  }
  // The JWS signing input (header.payload) of a valid token.
  std::string SigningInput() {
    return absl::StrCat(jose::Base64UrlEncode(Header().dump()), ".",
                        jose::Base64UrlEncode(Claims().dump()));
  }
  // Whether `sig` (R || S) makes `input` a valid token.
  bool SignatureValid(const std::string& input, const std::string& sig) {
    return verifier_
        ->Verify(absl::StrCat(input, ".", jose::Base64UrlEncode(sig)))
        .valid;
  }
  // Signs header.payload (both given as JSON text) with the current key.
  std::string SignRaw(const std::string& header, const std::string& payload) {
    const std::string input = absl::StrCat(jose::Base64UrlEncode(header), ".",
                                           jose::Base64UrlEncode(payload));
    return absl::StrCat(
        input, ".", jose::Base64UrlEncode(jose::Sign(key_->pkey.get(), input)));
  }
  std::string Sign(const json& header, const json& claims) {
    return SignRaw(header.dump(), claims.dump());
  }
  std::string Error(const std::string& token, const std::string& cert = "") {
    TokenVerifyResult r = verifier_->Verify(token, cert);
    EXPECT_FALSE(r.valid) << "accepted: " << token;
    return r.error;
  }

  FakeClock clock_{absl::FromUnixSeconds(kNow)};
  std::unique_ptr<TokenKeyManager> keys_;
  std::shared_ptr<const TokenKey> key_;
  std::unique_ptr<TokenVerifier> verifier_;
};

TEST_F(TokenTest, ValidTokenVerifies) {
  TokenVerifyResult r = verifier_->Verify(Sign(Header(), Claims()));
  ASSERT_TRUE(r.valid) << r.error;
  EXPECT_EQ(r.token.subject, "dev-1");
  EXPECT_EQ(r.token.imsi, "001010000000001");
  EXPECT_EQ(r.token.kid, key_->kid);
  EXPECT_EQ(r.token.alg, "ES256");
  EXPECT_EQ(r.token.expires_at, kNow + 600);
}

// The R half of a JWS ES256 signature: (k*G).x, one per nonce.
std::string NonceR(const std::string& token) {
  std::string sig;
  if (!jose::Base64UrlDecode(token.substr(token.rfind('.') + 1), &sig)) {
    return "";
  }
  return sig.substr(0, 32);
}

// The broker's signer: concurrent signatures all verify, and no two share
// a nonce, whether it was prepared ahead or drawn at signing time.
TEST_F(TokenTest, Es256SignerNeverReusesANonce) {
  ASSERT_EQ(key_->signer->alg(), "ES256");
  const std::string claims = Claims().dump();
  std::vector<std::vector<std::string>> tokens(8);
  std::vector<std::thread> threads;
  for (auto& mine : tokens) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        mine.push_back(SignTokenClaims(*key_, claims).value_or(""));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> nonces;
  for (const auto& mine : tokens) {
    for (const std::string& token : mine) {
      TokenVerifyResult r = verifier_->Verify(token);
      ASSERT_TRUE(r.valid) << r.error;
      EXPECT_EQ(r.token.subject, "dev-1");
      nonces.insert(NonceR(token));
    }
  }
  EXPECT_EQ(nonces.size(), 800u);
  // A signature by another key does not pass for this one.
  auto other = GenerateTokenKey("ES256");
  ASSERT_TRUE(other.ok());
  Es256Signer wrong(std::shared_ptr<EVP_PKEY>(other->release(), EVP_PKEY_free));
  const std::string input = absl::StrCat(jose::Base64UrlEncode(Header().dump()),
                                         ".", jose::Base64UrlEncode(claims));
  const std::string forged =
      absl::StrCat(input, ".", jose::Base64UrlEncode(wrong.Sign(input)));
  EXPECT_FALSE(verifier_->Verify(forged).valid);
  EXPECT_TRUE(
      verifier_
          ->Verify(absl::StrCat(
              input, ".",
              jose::Base64UrlEncode(key_->signer->Sign(input).value_or(""))))
          .valid);
}

// Waits until `signer` holds `n` prepared nonces (the producer starts at
// the first signature).
bool WaitReady(Es256Signer& signer, size_t n) {
  for (int i = 0; i < 2000 && signer.ready() < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return signer.ready() == n;
}

// Prepared nonces are used, each once; a drained pool signs on its own and
// fills again; with presign 0 there is no pool at all.
TEST_F(TokenTest, Es256SignerPreparedNoncesEachOnce) {
  const std::string input = SigningInput();
  const auto verify = [&](const std::string& sig) {
    return SignatureValid(input, sig);
  };
  Es256Signer signer(key_->pkey, 8);
  std::set<std::string> nonces;
  ASSERT_TRUE(verify(signer.Sign(input)));
  ASSERT_TRUE(WaitReady(signer, 8));
  const uint64_t before = signer.presigned();
  for (int i = 0; i < 3; ++i) {
    const std::string sig = signer.Sign(input);
    ASSERT_TRUE(verify(sig));
    nonces.insert(sig.substr(0, 32));
  }
  EXPECT_EQ(signer.presigned(), before + 3);
  ASSERT_TRUE(WaitReady(signer, 8));  // 4 takes: refilled after every 2
  // More signatures than the pool holds, faster than it refills or not:
  // every one verifies and has its own nonce, and every one used a pair
  // made ahead (a Sign that finds its slot empty makes a batch).
  for (int i = 0; i < 200; ++i) {
    const std::string sig = signer.Sign(input);
    ASSERT_TRUE(verify(sig));
    nonces.insert(sig.substr(0, 32));
  }
  EXPECT_EQ(nonces.size(), 203u);
  EXPECT_EQ(signer.presigned(), before + 203);
  ASSERT_TRUE(WaitReady(signer, 8));  // 204 takes

  Es256Signer plain(key_->pkey, 0);
  ASSERT_TRUE(verify(plain.Sign(input)));
  ASSERT_TRUE(verify(plain.Sign(input)));
  EXPECT_EQ(plain.ready(), 0u);
  EXPECT_EQ(plain.presigned(), 0u);
}

// A Sign that finds its slot empty makes a batch of presign/4 pairs (at
// most 16), keeps one and leaves the others in the slots ahead for the
// signatures after it. With no thread, every pair comes from such batches.
TEST_F(TokenTest, Es256SignerEmptySlotMakesABatch) {
  const std::string input = SigningInput();
  Es256Signer signer(key_->pkey, 64, /*background=*/false);
  EXPECT_EQ(signer.ready(), 0u);
  std::set<std::string> nonces;
  for (size_t i = 0; i < 40; ++i) {
    const std::string sig = signer.Sign(input);
    ASSERT_TRUE(SignatureValid(input, sig));
    nonces.insert(sig.substr(0, 32));
    EXPECT_EQ(signer.ready(), 15 - i % 16) << "after signature " << i;
  }
  EXPECT_EQ(signer.presigned(), 40u);
  EXPECT_EQ(nonces.size(), 40u);
}

// A forked child must not sign with the parent's prepared nonces: the two
// would publish signatures with the same k, which gives away the key.
TEST_F(TokenTest, Es256SignerForkedChildDrawsItsOwnNonce) {
  const std::string input = SigningInput();
  Es256Signer signer(key_->pkey, 8);
  (void)signer.Sign(input);
  ASSERT_TRUE(WaitReady(signer, 8));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string sig = signer.Sign(input);
    const bool ok = sig.size() == 64 && write(fds[1], sig.data(), 64) == 64;
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  char buf[64];
  ASSERT_EQ(read(fds[0], buf, sizeof buf), 64);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string from_child(buf, 64);
  const uint64_t before = signer.presigned();
  const std::string from_parent = signer.Sign(input);
  EXPECT_EQ(signer.presigned(), before + 1);  // the parent used its pool
  EXPECT_TRUE(SignatureValid(input, from_child));
  EXPECT_TRUE(SignatureValid(input, from_parent));
  EXPECT_NE(from_child.substr(0, 32), from_parent.substr(0, 32));
}

// k^-1 and r of `pair` both in [1, n), and r = (k*G).x mod n for the k
// that kinv inverts. Checked with OpenSSL's affine arithmetic, none of the
// maker's own shortcuts.
void ExpectPairConsistent(const EcdsaNonceMaker::Pair& pair) {
  using Group = std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)>;
  using Point = std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)>;
  using Bn = std::unique_ptr<BIGNUM, decltype(&BN_free)>;
  using Ctx = std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)>;
  Group group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1), EC_GROUP_free);
  Ctx ctx(BN_CTX_new(), BN_CTX_free);
  ASSERT_TRUE(group && ctx);
  const BIGNUM* n = EC_GROUP_get0_order(group.get());
  ASSERT_FALSE(BN_is_zero(pair.kinv));
  ASSERT_FALSE(BN_is_zero(pair.r));
  ASSERT_LT(BN_cmp(pair.kinv, n), 0);
  ASSERT_LT(BN_cmp(pair.r, n), 0);
  Bn k(BN_mod_inverse(nullptr, pair.kinv, n, ctx.get()), BN_free);
  Bn x(BN_new(), BN_free);
  Point point(EC_POINT_new(group.get()), EC_POINT_free);
  ASSERT_TRUE(k && x && point);
  ASSERT_EQ(EC_POINT_mul(group.get(), point.get(), k.get(), nullptr, nullptr,
                         ctx.get()),
            1);
  ASSERT_EQ(EC_POINT_get_affine_coordinates(group.get(), point.get(), x.get(),
                                            nullptr, ctx.get()),
            1);
  ASSERT_EQ(BN_nnmod(x.get(), x.get(), n, ctx.get()), 1);
  EXPECT_EQ(BN_cmp(x.get(), pair.r), 0);
}

// The JWS signature (R || S) of `input` by `key` with a made pair, computed
// here from the ECDSA formula s = k^-1 (H(m) + r*d) mod n.
std::string SignWithPair(EVP_PKEY* key, const EcdsaNonceMaker::Pair& pair,
                         const std::string& input) {
  using Bn = std::unique_ptr<BIGNUM, decltype(&BN_clear_free)>;
  unsigned char digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(),
         digest);
  BIGNUM* d_raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d_raw) != 1) {
    return "";
  }
  Bn d(d_raw, BN_clear_free);
  std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)> group(
      EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1), EC_GROUP_free);
  std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)> ctx(BN_CTX_new(),
                                                      BN_CTX_free);
  Bn h(BN_bin2bn(digest, sizeof digest, nullptr), BN_clear_free);
  Bn s(BN_new(), BN_clear_free);
  if (!group || !ctx || !h || !s) return "";
  const BIGNUM* n = EC_GROUP_get0_order(group.get());
  unsigned char raw[64];
  if (BN_mod_mul(s.get(), pair.r, d.get(), n, ctx.get()) != 1 ||
      BN_mod_add(s.get(), s.get(), h.get(), n, ctx.get()) != 1 ||
      BN_mod_mul(s.get(), s.get(), pair.kinv, n, ctx.get()) != 1 ||
      BN_bn2binpad(pair.r, raw, 32) != 32 ||
      BN_bn2binpad(s.get(), raw + 32, 32) != 32) {
    return "";
  }
  return std::string(reinterpret_cast<char*>(raw), sizeof raw);
}

// Every pair of every batch size is a valid nonce pair that signs, and no
// two pairs share a nonce.
TEST_F(TokenTest, EcdsaNonceMakerPairsSign) {
  const EcdsaNonceMaker maker(key_->pkey.get());
  ASSERT_TRUE(maker.ok());
  const std::string input = SigningInput();
  std::set<std::string> rs;
  size_t total = 0;
  for (size_t count : {1, 2, 3, 16, 32}) {
    std::vector<EcdsaNonceMaker::Pair*> pairs;
    ASSERT_TRUE(maker.Make(count, &pairs));
    ASSERT_EQ(pairs.size(), count);
    total += count;
    for (EcdsaNonceMaker::Pair* pair : pairs) {
      ExpectPairConsistent(*pair);
      const std::string sig = SignWithPair(key_->pkey.get(), *pair, input);
      ASSERT_EQ(sig.size(), 64u);
      EXPECT_TRUE(SignatureValid(input, sig));
      rs.insert(sig.substr(0, 32));
      EcdsaNonceMaker::Free(pair);
    }
  }
  EXPECT_EQ(rs.size(), total);
  // Appends: what `out` held stays.
  std::vector<EcdsaNonceMaker::Pair*> out;
  ASSERT_TRUE(maker.Make(0, &out));
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(maker.Make(2, &out));
  ASSERT_TRUE(maker.Make(3, &out));
  ASSERT_EQ(out.size(), 5u);
  for (EcdsaNonceMaker::Pair* pair : out) {
    ExpectPairConsistent(*pair);
    EcdsaNonceMaker::Free(pair);
  }
  // Concurrent batches from one maker (the broker's threads share one).
  std::vector<std::vector<EcdsaNonceMaker::Pair*>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& mine : per_thread) {
    threads.emplace_back([&maker, &mine] {
      for (int i = 0; i < 8; ++i) (void)maker.Make(4, &mine);
    });
  }
  for (auto& t : threads) t.join();
  for (auto& mine : per_thread) {
    EXPECT_EQ(mine.size(), 32u);
    for (EcdsaNonceMaker::Pair* pair : mine) {
      const std::string sig = SignWithPair(key_->pkey.get(), *pair, input);
      EXPECT_TRUE(SignatureValid(input, sig));
      rs.insert(sig.substr(0, 32));
      EcdsaNonceMaker::Free(pair);
    }
  }
  EXPECT_EQ(rs.size(), total + 128);
}

// A pair is for P-256 only: any other key makes no maker, and Make fails
// without touching its output.
TEST(EcdsaNonceMakerTest, OtherKeysRefused) {
  auto ed = GenerateTokenKey("EdDSA");
  ASSERT_TRUE(ed.ok());
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> p384(EVP_EC_gen("P-384"),
                                                           EVP_PKEY_free);
  ASSERT_NE(p384, nullptr);
  for (EVP_PKEY* key :
       {ed->get(), p384.get(), static_cast<EVP_PKEY*>(nullptr)}) {
    const EcdsaNonceMaker maker(key);
    EXPECT_FALSE(maker.ok());
    std::vector<EcdsaNonceMaker::Pair*> out;
    EXPECT_FALSE(maker.Make(4, &out));
    EXPECT_TRUE(out.empty());
  }
}

// A signer never destroyed (its thread busy at exit) must not take the
// process down at exit: OpenSSL's exit handler frees what the thread uses,
// so the signer's own handler stops the thread first. The test runs itself
// as the child; without the handler the child died by a signal 3 runs in 3.
TEST(Es256SignerExitTest, LeakedSignerExitsCleanly) {
  auto key = GenerateTokenKey("ES256");
  ASSERT_TRUE(key.ok());
  if (getenv("SIMPROV_TEST_LEAKED_SIGNER") != nullptr) {
    auto* leaked = new Es256Signer(
        std::shared_ptr<EVP_PKEY>(key->release(), EVP_PKEY_free), 1 << 16);
    if (leaked->Sign("x").size() != 64) std::exit(3);
    while (leaked->ready() < 16) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::exit(0);  // the thread is still filling 65,536 slots
  }
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  for (int i = 0; i < 5; ++i) {
    testing::ProcessResult r = testing::RunProcess(
        {"/usr/bin/env", "SIMPROV_TEST_LEAKED_SIGNER=1",
         "ASAN_OPTIONS=detect_leaks=0", self,
         "--gtest_filter=Es256SignerExitTest.LeakedSignerExitsCleanly"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
}

TEST_F(TokenTest, AudienceArrayMatchesExactly) {
  json c = Claims();
  c["aud"] = {"maps", "billing"};
  EXPECT_TRUE(verifier_->Verify(Sign(Header(), c)).valid);
  c["aud"] = {"billing-x", "Billing"};
  EXPECT_EQ(Error(Sign(Header(), c)),
            "wrong audience (token is not for billing)");
}

TEST_F(TokenTest, EdDsaKeysSignAndVerify) {
  TokenKeyOptions o;
  o.alg = "EdDSA";
  auto keys = TokenKeyManager::Open(o, clock_);
  ASSERT_TRUE(keys.ok());
  keys_ = std::move(*keys);
  key_ = *keys_->Current();
  EXPECT_EQ(key_->alg, "EdDSA");
  verifier_ = MakeVerifier();
  TokenVerifyResult r = verifier_->Verify(Sign(Header(), Claims()));
  ASSERT_TRUE(r.valid) << r.error;
  EXPECT_EQ(r.token.alg, "EdDSA");
}

TEST_F(TokenTest, Expired) {
  const std::string t = Sign(Header(), Claims());
  clock_.Advance(absl::Seconds(600 + 30));
  EXPECT_EQ(Error(t), "token expired");
}

TEST_F(TokenTest, ExpiredWithinLeewayStillValid) {
  const std::string t = Sign(Header(), Claims());
  clock_.Advance(absl::Seconds(600 + 29));
  EXPECT_TRUE(verifier_->Verify(t).valid);
}

TEST_F(TokenTest, NotYetValid) {
  json c = Claims();
  c["nbf"] = kNow + 120;
  EXPECT_EQ(Error(Sign(Header(), c)), "token not yet valid");
}

TEST_F(TokenTest, IatInTheFuture) {
  json c = Claims();
  c["iat"] = kNow + 120;
  c["nbf"] = kNow;
  EXPECT_EQ(Error(Sign(Header(), c)), "iat in the future");
}

TEST_F(TokenTest, ExpRequiredAndNumeric) {
  json c = Claims();
  c.erase("exp");
  EXPECT_EQ(Error(Sign(Header(), c)), "exp missing or not a number");
  c["exp"] = std::to_string(kNow + 600);
  EXPECT_EQ(Error(Sign(Header(), c)), "exp missing or not a number");
}

TEST_F(TokenTest, LifetimeAboveMaximum) {
  json c = Claims();
  c["exp"] = kNow + 3601;
  EXPECT_EQ(Error(Sign(Header(), c)), "lifetime (exp - iat) out of range");
}

TEST_F(TokenTest, WrongAudience) {
  json c = Claims();
  c["aud"] = "maps";
  EXPECT_EQ(Error(Sign(Header(), c)),
            "wrong audience (token is not for billing)");
}

TEST_F(TokenTest, WrongIssuer) {
  json c = Claims();
  c["iss"] = "https://evil.test";
  EXPECT_EQ(Error(Sign(Header(), c)), "wrong issuer https://evil.test");
}

TEST_F(TokenTest, WrongTyp) {
  json h = Header();
  h["typ"] = "JWT";
  EXPECT_EQ(Error(Sign(h, Claims())), "typ is not at+jwt");
}

TEST_F(TokenTest, AlgNone) {
  json h = Header();
  h["alg"] = "none";
  const std::string t =
      absl::StrCat(jose::Base64UrlEncode(h.dump()), ".",
                   jose::Base64UrlEncode(Claims().dump()), ".");
  EXPECT_EQ(Error(t), "alg none refused");
}

TEST_F(TokenTest, Hs256KeyedWithThePublicKey) {
  // The classic confusion: HMAC keyed with the public key's published form.
  json h = Header();
  h["alg"] = "HS256";
  const std::string secret = keys_->JwksJson();
  const std::string input =
      absl::StrCat(jose::Base64UrlEncode(h.dump()), ".",
                   jose::Base64UrlEncode(Claims().dump()));
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
       &len);
  const std::string t = absl::StrCat(
      input, ".",
      jose::Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), len)));
  EXPECT_EQ(Error(t), "alg HS256 not allowed (only ES256 and EdDSA)");
}

TEST_F(TokenTest, AlgMustMatchTheKey) {
  json h = Header();
  h["alg"] = "EdDSA";
  EXPECT_EQ(Error(Sign(h, Claims())),
            "alg EdDSA does not match the key's alg ES256");
}

TEST_F(TokenTest, UnknownKid) {
  json h = Header();
  h["kid"] = "no-such-key";
  EXPECT_EQ(Error(Sign(h, Claims())), "unknown kid no-such-key");
}

TEST_F(TokenTest, UnknownKidRefetchesAtALimitedRate) {
  int fetches = 0;
  TokenVerifierOptions o;
  o.min_refetch_interval_seconds = 30;
  TokenKeyManager* keys = keys_.get();
  o.fetch_jwks = [&fetches, keys](std::string* jwks, std::string*) {
    ++fetches;
    *jwks = keys->JwksJson();
    return true;
  };
  verifier_ = MakeVerifier(o);
  json h = Header();
  h["kid"] = "no-such-key";
  for (int i = 0; i < 5; ++i) Error(Sign(h, Claims()));
  EXPECT_EQ(fetches, 1);
  clock_.Advance(absl::Seconds(30));
  Error(Sign(h, Claims()));
  EXPECT_EQ(fetches, 2);
}

TEST_F(TokenTest, UnknownKidFoundAfterRefetch) {
  // A verifier that has an empty key set learns the key by refetching.
  TokenVerifierOptions o;
  TokenKeyManager* keys = keys_.get();
  o.fetch_jwks = [keys](std::string* jwks, std::string*) {
    *jwks = keys->JwksJson();
    return true;
  };
  o.audience = "billing";
  o.issuer = "https://broker.test";
  FakeClock* clock = &clock_;
  o.now_unix = [clock] { return absl::ToUnixSeconds(clock->Now()); };
  TokenVerifier v(o);
  EXPECT_TRUE(v.Verify(Sign(Header(), Claims())).valid);
}

TEST_F(TokenTest, UnknownCrit) {
  json h = Header();
  h["crit"] = {"exp-private"};
  h["exp-private"] = 1;
  EXPECT_EQ(Error(Sign(h, Claims())), "unknown crit header parameter");
}

TEST_F(TokenTest, EmbeddedJwkHeader) {
  json h = Header();
  h["jwk"] = json::parse(keys_->JwksJson())["keys"][0];
  EXPECT_EQ(Error(Sign(h, Claims())), "header jwk not allowed");
}

TEST_F(TokenTest, JkuX5uX5cHeaders) {
  for (const char* name : {"jku", "x5u", "x5c"}) {
    json h = Header();
    h[name] = "https://evil.test/x";
    EXPECT_EQ(Error(Sign(h, Claims())),
              absl::StrCat("header ", name, " not allowed"));
  }
}

TEST_F(TokenTest, SignatureOf63Bytes) {
  const std::string t = Sign(Header(), Claims());
  const size_t dot = t.rfind('.');
  std::string sig;
  ASSERT_TRUE(jose::Base64UrlDecode(t.substr(dot + 1), &sig));
  ASSERT_EQ(sig.size(), 64u);
  sig.pop_back();
  EXPECT_EQ(Error(t.substr(0, dot + 1) + jose::Base64UrlEncode(sig)),
            "ES256 signature is not 64 bytes");
}

TEST_F(TokenTest, AllZeroSignature) {
  const std::string t = Sign(Header(), Claims());
  const size_t dot = t.rfind('.');
  EXPECT_EQ(Error(t.substr(0, dot + 1) +
                  jose::Base64UrlEncode(std::string(64, '\0'))),
            "ES256 signature r or s out of range");
}

TEST_F(TokenTest, SignatureScalarAtTheOrderIsOutOfRange) {
  std::string raw(64, '\x01');
  const unsigned char n[32] = {0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00,
                               0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                               0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84,
                               0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51};
  raw.replace(32, 32, reinterpret_cast<const char*>(n), 32);
  std::string der, error;
  EXPECT_FALSE(jose::EcdsaRawToDer(raw, &der, &error));
  EXPECT_EQ(error, "ES256 signature r or s out of range");
}

TEST_F(TokenTest, DuplicateClaims) {
  std::string payload = Claims().dump();
  payload.insert(payload.size() - 1, R"(,"sub":"dev-2")");
  EXPECT_EQ(Error(SignRaw(Header().dump(), payload)),
            "claims: duplicate JSON member");
}

TEST_F(TokenTest, DuplicateHeaderMembers) {
  std::string header = Header().dump();
  header.insert(header.size() - 1, R"(,"alg":"ES256")");
  EXPECT_EQ(Error(SignRaw(header, Claims().dump())),
            "header: duplicate JSON member");
}

TEST_F(TokenTest, TamperedHeader) {
  const std::string t = Sign(Header(), Claims());
  std::vector<std::string> parts = absl::StrSplit(t, '.');
  json h = Header();
  h["extra"] = 1;
  EXPECT_EQ(Error(absl::StrCat(jose::Base64UrlEncode(h.dump()), ".", parts[1],
                               ".", parts[2])),
            "bad signature");
}

TEST_F(TokenTest, TamperedPayload) {
  const std::string t = Sign(Header(), Claims());
  std::vector<std::string> parts = absl::StrSplit(t, '.');
  json c = Claims();
  c["sub"] = "dev-2";
  EXPECT_EQ(Error(absl::StrCat(parts[0], ".", jose::Base64UrlEncode(c.dump()),
                               ".", parts[2])),
            "bad signature");
}

TEST_F(TokenTest, TamperedSignature) {
  const std::string t = Sign(Header(), Claims());
  std::vector<std::string> parts = absl::StrSplit(t, '.');
  std::string sig;
  ASSERT_TRUE(jose::Base64UrlDecode(parts[2], &sig));
  sig[40] ^= 0x01;
  EXPECT_EQ(Error(absl::StrCat(parts[0], ".", parts[1], ".",
                               jose::Base64UrlEncode(sig))),
            "bad signature");
}

TEST_F(TokenTest, Oversized) {
  json c = Claims();
  c["pad"] = std::string(9000, 'a');
  EXPECT_EQ(Error(Sign(Header(), c)), "token larger than 8192 bytes");
}

TEST_F(TokenTest, NonCanonicalBase64Refused) {
  const std::string t = Sign(Header(), Claims());
  EXPECT_EQ(Error(t + "="), "signature is not base64url");
  EXPECT_EQ(Error(t + ".x"), "not a JWS compact token (need three parts)");
}

class TokenCnfTest : public TokenTest {
 protected:
  void SetUp() override {
    TokenTest::SetUp();
    dir_ = MakeTempDir();
    DeterministicRandom random(7);
    auto ca = CertificateAuthority::CreateDevelopment(dir_, clock_, random);
    ASSERT_TRUE(ca.ok()) << ca.status();
    cert_a_ = ToString((*ca)->ChainDer()[0]);
    cert_b_ = ToString((*ca)->TrustAnchorsDer()[0]);
  }
  void TearDown() override { RemoveTree(dir_); }
  std::string dir_, cert_a_, cert_b_;
};

TEST_F(TokenCnfTest, BoundCertificateMatches) {
  json c = Claims();
  c["cnf"] = {{"x5t#S256", jose::CertThumbprintS256(cert_a_)}};
  TokenVerifyResult r = verifier_->Verify(Sign(Header(), c), cert_a_);
  ASSERT_TRUE(r.valid) << r.error;
  EXPECT_EQ(r.token.cnf_x5t_s256, jose::CertThumbprintS256(cert_a_));
}

TEST_F(TokenCnfTest, CnfMismatch) {
  json c = Claims();
  c["cnf"] = {{"x5t#S256", jose::CertThumbprintS256(cert_a_)}};
  EXPECT_EQ(Error(Sign(Header(), c), cert_b_),
            "cnf mismatch: the token is bound to another certificate");
}

TEST_F(TokenCnfTest, UnboundTokenRefusedWhenACertificateIsGiven) {
  EXPECT_EQ(Error(Sign(Header(), Claims()), cert_a_),
            "cnf mismatch: the token is bound to another certificate");
}

TEST(TokenKeysTest, RotationPublishesAheadAndRetiresAfterExpiry) {
  FakeClock clock(absl::FromUnixSeconds(kNow));
  TokenKeyOptions o;
  o.rotation_period = absl::Hours(1);  // lead: 15 minutes
  o.max_token_lifetime = absl::Minutes(10);
  auto keys = TokenKeyManager::Open(o, clock);
  ASSERT_TRUE(keys.ok());
  TokenKeyManager& m = **keys;
  auto kids = [&m] {
    std::vector<std::string> out;
    const json jwks = json::parse(m.JwksJson());
    for (const auto& k : jwks["keys"]) {
      out.push_back(k["kid"]);
    }
    return out;
  };
  const std::string k1 = (*m.Current())->kid;
  EXPECT_EQ(kids(), std::vector<std::string>{k1});

  // A token signed with k1 shortly before the rotation.
  clock.Advance(absl::Minutes(44));
  EXPECT_EQ(kids().size(), 1u);
  clock.Advance(absl::Minutes(1));  // sign_until - lead: k2 is published
  std::vector<std::string> both = kids();
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0], k1);
  const std::string k2 = both[1];
  EXPECT_NE(k1, k2);
  // ... but k1 still signs.
  auto signer = *m.Current();
  EXPECT_EQ(signer->kid, k1);
  clock.Advance(absl::Minutes(14));  // 59 minutes
  signer = *m.Current();
  EXPECT_EQ(signer->kid, k1);
  auto sign = [&](std::shared_ptr<const TokenKey> key) {
    const int64_t now = absl::ToUnixSeconds(clock.Now());
    json h = {{"alg", key->alg}, {"kid", key->kid}, {"typ", "at+jwt"}};
    json c = {{"iss", "i"},
              {"sub", "d"},
              {"aud", "a"},
              {"iat", now},
              {"exp", now + 600}};
    const std::string input = absl::StrCat(jose::Base64UrlEncode(h.dump()), ".",
                                           jose::Base64UrlEncode(c.dump()));
    return absl::StrCat(
        input, ".", jose::Base64UrlEncode(jose::Sign(key->pkey.get(), input)));
  };
  const std::string old_token = sign(signer);
  auto verify = [&](const std::string& t) {
    TokenVerifierOptions vo;
    vo.audience = "a";
    vo.now_unix = [&clock] { return absl::ToUnixSeconds(clock.Now()); };
    TokenVerifier v(vo);
    std::string error;
    EXPECT_TRUE(v.SetJwks(m.JwksJson(), &error));
    return v.Verify(t);
  };
  EXPECT_TRUE(verify(old_token).valid);

  // The rotation: new tokens carry k2; the old token verifies until expiry.
  clock.Advance(absl::Minutes(1));  // 60 minutes
  auto next = *m.Current();
  EXPECT_EQ(next->kid, k2);
  const std::string new_token = sign(next);
  EXPECT_TRUE(verify(new_token).valid);
  clock.Advance(absl::Minutes(8));  // 68: old token expires at 69
  EXPECT_TRUE(verify(old_token).valid) << verify(old_token).error;
  EXPECT_EQ(kids().size(), 2u);
  // k1 is dropped once every token it signed has expired (+2m leeway).
  clock.Advance(absl::Minutes(4));  // 72 = 60 + 10 + 2
  EXPECT_EQ(kids(), std::vector<std::string>{k2});
  EXPECT_EQ(verify(old_token).error, "unknown kid " + k1);
}

TEST(TokenKeysTest, KeysPersistPrivatelyAndReload) {
  const std::string dir = MakeTempDir();
  FakeClock clock(absl::FromUnixSeconds(kNow));
  TokenKeyOptions o;
  o.path = dir + "/keys.json";
  std::string kid;
  {
    auto keys = TokenKeyManager::Open(o, clock);
    ASSERT_TRUE(keys.ok());
    kid = (*(*keys)->Current())->kid;
  }
  struct stat st;
  ASSERT_EQ(stat(o.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = TokenKeyManager::Open(o, clock);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*(*again)->Current())->kid, kid);
  RemoveTree(dir);
}

TEST(TokenKeysTest, AfterLongDowntimeTheOldKeySignsUntilTheNewIsPublished) {
  const std::string dir = MakeTempDir();
  FakeClock clock(absl::FromUnixSeconds(kNow));
  TokenKeyOptions o;
  o.path = dir + "/keys.json";
  o.rotation_period = absl::Hours(1);
  o.max_token_lifetime = absl::Minutes(10);
  std::string k1;
  {
    auto keys = TokenKeyManager::Open(o, clock);
    ASSERT_TRUE(keys.ok());
    k1 = (*(*keys)->Current())->kid;
  }
  clock.Advance(absl::Minutes(61));  // down across the rotation
  auto keys = TokenKeyManager::Open(o, clock);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ((*(*keys)->Current())->kid, k1);
  EXPECT_EQ(json::parse((*keys)->JwksJson())["keys"].size(), 2u);
  clock.Advance(absl::Minutes(15));
  EXPECT_NE((*(*keys)->Current())->kid, k1);
  RemoveTree(dir);
}

TEST(JoseTest, Base64UrlIsStrict) {
  std::string out;
  EXPECT_TRUE(jose::Base64UrlDecode("AQID", &out));
  EXPECT_EQ(out, "\x01\x02\x03");
  EXPECT_FALSE(jose::Base64UrlDecode("AQI=", &out));
  EXPECT_FALSE(jose::Base64UrlDecode("AQ+/", &out));
  EXPECT_FALSE(jose::Base64UrlDecode("AR", &out));  // non-zero unused bits
  EXPECT_TRUE(jose::Base64UrlDecode("AQ", &out));
  EXPECT_EQ(jose::Base64UrlEncode("\x01\x02"), "AQI");
}

}  // namespace
}  // namespace simprov

namespace simprov {
namespace {

// The claims writer against nlohmann::json's serialisation of the same
// object: byte-identical, escapes included.
TEST(TokenClaimsJsonTest, SameBytesAsNlohmann) {
  TokenClaims c;
  c.iss = "https://broker.example.net/";
  c.sub = "urn:simprov:device:001010000000001";
  c.jti = "00112233445566778899aabbccddeeff";
  c.group = "";
  c.aud = {"billing"};
  c.iat = kNow;
  c.nbf = kNow;
  c.exp = kNow + 600;
  c.cnf_x5t_s256 = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2";
  c.imsi = "001010000000001";
  auto reference = [](const TokenClaims& c) {
    json j = {{"iss", c.iss},     {"sub", c.sub},
              {"iat", c.iat},     {"nbf", c.nbf},
              {"exp", c.exp},     {"jti", c.jti},
              {"group", c.group}, {"cnf", {{"x5t#S256", c.cnf_x5t_s256}}}};
    if (c.aud.size() == 1) {
      j["aud"] = c.aud[0];
    } else {
      j["aud"] = c.aud;
    }
    if (!c.scope.empty()) j["scope"] = c.scope;
    if (!c.imsi.empty()) j["imsi"] = c.imsi;
    if (!c.iccid.empty()) j["iccid"] = c.iccid;
    if (!c.imei.empty()) j["imei"] = c.imei;
    return j.dump();
  };
  EXPECT_EQ(TokenClaimsJson(c), reference(c));

  c.aud = {"billing", "telemetry", "a.b-c_d"};
  c.scope = "read write";
  c.iccid = "8988211000000000001";
  c.imei = "490154203237518";
  c.group = "fleet-eu";
  c.exp = -1;
  EXPECT_EQ(TokenClaimsJson(c), reference(c));

  // Every control character, quotes, backslashes, DEL and UTF-8.
  std::string odd = "q\"b\\s/\x7f \xc3\xa9\xe2\x82\xac";
  for (int ch = 0; ch < 0x20; ++ch) odd.push_back(static_cast<char>(ch));
  c.iss = odd;
  c.group = odd;
  c.sub = odd + "x";
  c.imsi.clear();
  c.aud = {odd};
  const std::string mine = TokenClaimsJson(c);
  EXPECT_EQ(mine, reference(c));
  EXPECT_EQ(json::parse(mine)["iss"], odd);
}

TEST(BufferedRandomTest, HandsOutEachSourceByteOnceInOrder) {
  DeterministicRandom source(5), same(5);
  BufferedRandom buffered(source, 64);
  Bytes got;
  for (size_t len : {16, 16, 16, 10, 16, 30, 64, 1}) {
    const Bytes b = buffered.Generate(len);
    ASSERT_EQ(b.size(), len);
    got.insert(got.end(), b.begin(), b.end());
  }
  // Chunks of 64 from the source; a request that does not fit in what is
  // left of a chunk starts the next one (the rest is never handed out).
  Bytes want;
  const Bytes c1 = same.Generate(64), c2 = same.Generate(64),
              c3 = same.Generate(64), c4 = same.Generate(64);
  auto take = [&want](const Bytes& c, size_t from, size_t len) {
    want.insert(want.end(), c.begin() + from, c.begin() + from + len);
  };
  take(c1, 0, 58);  // 16 + 16 + 16 + 10
  take(c2, 0, 46);  // 16 + 30
  take(c3, 0, 64);
  take(c4, 0, 1);
  EXPECT_EQ(got, want);
  // Larger than a chunk: straight from the source.
  EXPECT_EQ(buffered.Generate(100), same.Generate(100));
}

}  // namespace
}  // namespace simprov
