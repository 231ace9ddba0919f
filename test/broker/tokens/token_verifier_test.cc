// Tokens signed with the broker's keys as an application's TokenVerifier
// sees them (common/token/token_verifier against broker/tokens keys and
// JWKS): the valid token, and one test per refusal.
#include "common/token/token_verifier.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/ca/ca.h"
#include "broker/tokens/token_keys.h"
#include "common/clock.h"
#include "common/token/jose.h"
#include "test/broker/tokens/token_test_util.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using nlohmann::json;
using testing::kNow;
using testing::MakeTempDir;
using testing::RemoveTree;
using testing::TokenTest;

TEST_F(TokenTest, ValidTokenVerifies) {
  TokenVerifyResult r = verifier_->Verify(Sign(Header(), Claims()));
  ASSERT_TRUE(r.valid) << r.error;
  EXPECT_EQ(r.token.subject, "dev-1");
  EXPECT_EQ(r.token.imsi, "001010000000001");
  EXPECT_EQ(r.token.kid, key_->kid);
  EXPECT_EQ(r.token.alg, "ES256");
  EXPECT_EQ(r.token.expires_at, kNow + 600);
}

TEST_F(TokenTest, AudienceArrayMatchesExactly) {
  json c = Claims();
  c["aud"] = {"maps", "billing"};
  EXPECT_TRUE(verifier_->Verify(Sign(Header(), c)).valid);
  c["aud"] = {"billing-x", "Billing"};
  EXPECT_EQ(Error(Sign(Header(), c)),
            "wrong audience (token is not for billing)");
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
