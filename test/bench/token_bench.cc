// simprov-token-bench: device token signing (the broker's claim building
// and ES256/EdDSA signature, as in TokenService::Issue without the store
// and certificate checks) and TokenVerifier verification, in process.
//
// BM_TokenSignES256 is the broker's signer (nonces prepared by a second
// thread; process CPU, both threads); BM_TokenSignES256NoPresign signs
// each token whole on the calling thread.
//
// Run: simprov-token-bench --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

#include "broker/tokens/token_keys.h"
#include "broker/tokens/token_service.h"
#include "broker/tokens/token_signer.h"
#include "common/clock.h"
#include "common/token/jose.h"
#include "common/token/token_verifier.h"

namespace simprov {
namespace {

std::unique_ptr<TokenKeyManager> Keys(const char* alg) {
  TokenKeyOptions o;
  o.alg = alg;
  auto m = TokenKeyManager::Open(o, Clock::Real());
  if (!m.ok()) {
    std::fprintf(stderr, "token keys: %s\n",
                 std::string(m.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*m);
}

std::string Claims(int64_t now, int i) {
  TokenClaims c;
  c.iss = "https://broker.example.com";
  c.sub = "d2f1c6e0-5b7a-4c1e-9a39-0d6f0b1f6a11";
  c.aud = {"billing"};
  c.iat = now;
  c.nbf = now;
  c.exp = now + 600;
  c.jti = "q1w2e3r4t5y6u7i8o9p0aa" + std::to_string(i);
  c.imsi = "001010000000001";
  c.group = "default";
  c.iccid = "8988211000000000001";
  c.cnf_x5t_s256 = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2";
  return TokenClaimsJson(c);
}

// presign: prepared ES256 nonces (the broker's default) or none.
void Sign(benchmark::State& state, const char* alg, bool presign = true) {
  auto keys = Keys(alg);
  auto key = *keys->Current();
  if (!presign) {
    auto inline_key = std::make_shared<TokenKey>(*key);
    auto signer = MakeSoftwareTokenSigner(key->pkey, /*es256_presign=*/0);
    if (!signer.ok()) std::exit(1);
    inline_key->signer = std::move(*signer);
    key = inline_key;
  }
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  int i = 0;
  for (auto _ : state) {
    std::string token = *SignTokenClaims(*key, Claims(now, i++));
    benchmark::DoNotOptimize(token);
  }
  state.counters["tokens/s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

void Verify(benchmark::State& state, const char* alg) {
  auto keys = Keys(alg);
  auto key = *keys->Current();
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  const std::string token = *SignTokenClaims(*key, Claims(now, 0));
  TokenVerifierOptions o;
  o.audience = "billing";
  o.issuer = "https://broker.example.com";
  TokenVerifier v(o);
  std::string error;
  if (!v.SetJwks(keys->JwksJson(), &error)) std::exit(1);
  for (auto _ : state) {
    TokenVerifyResult r = v.Verify(token);
    if (!r.valid) state.SkipWithError(r.error.c_str());
    benchmark::DoNotOptimize(r);
  }
  state.counters["tokens/s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

// Process CPU: the nonce thread's work counts too.
void BM_TokenSignES256(benchmark::State& s) { Sign(s, "ES256"); }
void BM_TokenSignES256NoPresign(benchmark::State& s) {
  Sign(s, "ES256", false);
}
void BM_TokenSignEdDSA(benchmark::State& s) { Sign(s, "EdDSA"); }
void BM_TokenVerifyES256(benchmark::State& s) { Verify(s, "ES256"); }
void BM_TokenVerifyEdDSA(benchmark::State& s) { Verify(s, "EdDSA"); }
BENCHMARK(BM_TokenSignES256)->MeasureProcessCPUTime();
BENCHMARK(BM_TokenSignES256NoPresign);
BENCHMARK(BM_TokenSignEdDSA);
BENCHMARK(BM_TokenVerifyES256);
BENCHMARK(BM_TokenVerifyEdDSA);

}  // namespace
}  // namespace simprov

BENCHMARK_MAIN();
