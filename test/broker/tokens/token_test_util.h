// Shared by the token tests: a broker key manager (in memory, fake
// clock) and a TokenVerifier for its JWKS, and tokens signed with its
// current key from JSON header and claims, so that each test can change
// one member.
#ifndef SIMPROV_TEST_BROKER_TOKENS_TOKEN_TEST_UTIL_H_
#define SIMPROV_TEST_BROKER_TOKENS_TOKEN_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "broker/tokens/token_keys.h"
#include "common/clock.h"
#include "common/token/jose.h"
#include "common/token/token_verifier.h"

namespace simprov {
namespace testing {

using nlohmann::json;

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

}  // namespace testing
}  // namespace simprov

#endif  // SIMPROV_TEST_BROKER_TOKENS_TOKEN_TEST_UTIL_H_
