// The ES256 signer with nonces made ahead (broker/tokens/es256_signer):
// the nonce pairs EcdsaNonceMaker makes are right, each is used once, a
// forked child never uses its parent's, and a signer alive at exit does
// not take the process down.
#include "broker/tokens/es256_signer.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/tokens/token_keys.h"
#include "common/token/jose.h"
#include "common/token/token_verifier.h"
#include "test/broker/tokens/token_test_util.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using testing::TokenTest;

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

}  // namespace
}  // namespace simprov
