// The broker's token keys (broker/tokens/token_keys, token_signer):
// rotation, the key file, EdDSA keys, the software signers and the
// signer factory the key manager makes every key's signer with.
#include "broker/tokens/token_keys.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/tokens/token_signer.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/token/jose.h"
#include "common/token/token_verifier.h"
#include "test/broker/tokens/token_test_util.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using nlohmann::json;
using testing::kNow;
using testing::MakeTempDir;
using testing::RemoveTree;
using testing::TokenTest;

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

// RFC 7638: the required members only (crv, kty, x, y), in name order,
// compact, SHA-256, base64url.
TEST(TokenSignerTest, JwkThumbprintHashesTheRequiredMembers) {
  const json jwk = {{"kty", "EC"},  {"crv", "P-256"}, {"x", "AAA"},
                    {"y", "BBB"},   {"alg", "ES256"}, {"kid", "k"},
                    {"use", "sig"}, {"d", "secret"}};
  const std::string canonical =
      R"({"crv":"P-256","kty":"EC","x":"AAA","y":"BBB"})";
  unsigned char digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(canonical.data()),
         canonical.size(), digest);
  EXPECT_EQ(JwkThumbprint(jwk),
            jose::Base64UrlEncode(std::string_view(
                reinterpret_cast<const char*>(digest), sizeof digest)));
  const json okp = {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "CCC"}};
  const std::string okp_canonical =
      R"({"crv":"Ed25519","kty":"OKP","x":"CCC"})";
  SHA256(reinterpret_cast<const unsigned char*>(okp_canonical.data()),
         okp_canonical.size(), digest);
  EXPECT_EQ(JwkThumbprint(okp),
            jose::Base64UrlEncode(std::string_view(
                reinterpret_cast<const char*>(digest), sizeof digest)));
}

// The in-memory signers: kid, alg and JWK from the key, signatures that
// verify with it; ES256 with or without nonces made ahead.
TEST(TokenSignerTest, SoftwareSignersSignWithTheirKey) {
  const std::string input = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkIn0";
  for (const char* alg : {"ES256", "EdDSA"}) {
    for (size_t presign : {size_t{256}, size_t{0}}) {
      SCOPED_TRACE(absl::StrCat(alg, " presign ", presign));
      auto generated = GenerateTokenKey(alg);
      ASSERT_TRUE(generated.ok());
      std::shared_ptr<EVP_PKEY> key(generated->release(), EVP_PKEY_free);
      auto signer = MakeSoftwareTokenSigner(key, presign);
      ASSERT_TRUE(signer.ok()) << signer.status();
      EXPECT_EQ((*signer)->alg(), alg);
      const std::string kid = JwkThumbprint(jose::PublicJwk(key.get(), ""));
      EXPECT_EQ((*signer)->kid(), kid);
      EXPECT_EQ((*signer)->PublicJwk(), jose::PublicJwk(key.get(), kid));
      for (int i = 0; i < 3; ++i) {
        auto sig = (*signer)->Sign(input);
        ASSERT_TRUE(sig.ok()) << sig.status();
        ASSERT_EQ(sig->size(), 64u);
        std::string error;
        EXPECT_TRUE(jose::Verify(key.get(), alg, input, *sig, &error)) << error;
        EXPECT_FALSE(jose::Verify(key.get(), alg, input + "x", *sig, &error));
      }
    }
  }
}

TEST(TokenSignerTest, SoftwareSignerRefusesOtherKeys) {
  std::shared_ptr<EVP_PKEY> p384(EVP_EC_gen("P-384"), EVP_PKEY_free);
  ASSERT_NE(p384, nullptr);
  for (const std::shared_ptr<EVP_PKEY>& key :
       {p384, std::shared_ptr<EVP_PKEY>()}) {
    auto signer = MakeSoftwareTokenSigner(key);
    EXPECT_EQ(signer.status(),
              absl::InvalidArgumentError(
                  "a token key must be P-256 (ES256) or Ed25519 (EdDSA)"));
  }
}

// Every key the manager makes or loads gets its signer from
// TokenKeyOptions::make_signer; the kid, the JWS header and the JWKS come
// from the signer, and the key file keeps its format.
TEST(TokenKeysTest, EveryKeySignerComesFromTheFactory) {
  const std::string dir = MakeTempDir();
  FakeClock clock(absl::FromUnixSeconds(kNow));
  std::vector<std::shared_ptr<TokenSigner>> made;
  TokenKeyOptions o;
  o.path = dir + "/keys.json";
  o.rotation_period = absl::Hours(1);
  o.max_token_lifetime = absl::Minutes(10);
  o.make_signer = [&made](std::shared_ptr<EVP_PKEY> key)
      -> absl::StatusOr<std::shared_ptr<TokenSigner>> {
    auto signer = MakeSoftwareTokenSigner(std::move(key));
    if (signer.ok()) made.push_back(*signer);
    return signer;
  };
  auto expect_jwks = [&made](TokenKeyManager& m, size_t from) {
    json want;
    want["keys"] = json::array();
    for (size_t i = from; i < made.size(); ++i) {
      want["keys"].push_back(made[i]->PublicJwk());
    }
    EXPECT_EQ(m.JwksJson(), want.dump());
  };
  {
    auto keys = TokenKeyManager::Open(o, clock);
    ASSERT_TRUE(keys.ok()) << keys.status();
    ASSERT_EQ(made.size(), 1u);
    auto current = *(*keys)->Current();
    EXPECT_EQ(current->signer, made[0]);
    EXPECT_EQ(current->kid, made[0]->kid());
    EXPECT_EQ(current->alg, "ES256");
    EXPECT_EQ(current->kid,
              JwkThumbprint(jose::PublicJwk(current->pkey.get(), "")));
    EXPECT_EQ(current->header_b64, jose::Base64UrlEncode(absl::StrCat(
                                       R"({"alg":"ES256","kid":")",
                                       current->kid, R"(","typ":"at+jwt"})")));
    expect_jwks(**keys, 0);
    clock.Advance(absl::Minutes(45));  // the next key is published
    ASSERT_TRUE((*keys)->Maintain().ok());
    ASSERT_EQ(made.size(), 2u);
    EXPECT_EQ((*(*keys)->Current())->signer, made[0]);
    expect_jwks(**keys, 0);
  }
  // The file: each key's kid, alg, times and private key.
  auto text = ReadFileToString(o.path, 1 << 20);
  ASSERT_TRUE(text.ok());
  const json file = json::parse(*text);
  ASSERT_EQ(file["keys"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const json& k = file["keys"][i];
    EXPECT_EQ(k["kid"], made[i]->kid());
    EXPECT_EQ(k["alg"], "ES256");
    EXPECT_TRUE(absl::StartsWith(k["private_pem"].get<std::string>(),
                                 "-----BEGIN PRIVATE KEY-----\n"));
    std::vector<std::string> names;
    for (const auto& [name, value] : k.items()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"alg", "kid", "private_pem",
                                               "publish_at", "sign_from",
                                               "sign_until"}));
  }
  EXPECT_EQ(file["keys"][0]["sign_from"], kNow);
  EXPECT_EQ(file["keys"][0]["sign_until"], kNow + 3600);
  EXPECT_EQ(file["keys"][1]["publish_at"], kNow + 45 * 60);
  EXPECT_EQ(file["keys"][1]["sign_from"], kNow + 3600);
  EXPECT_EQ(*text, file.dump(2) + "\n");

  // Loading makes a signer per key in the file, same kids.
  auto again = TokenKeyManager::Open(o, clock);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(made.size(), 4u);
  EXPECT_EQ(made[2]->kid(), made[0]->kid());
  EXPECT_EQ(made[3]->kid(), made[1]->kid());
  EXPECT_EQ((*(*again)->Current())->signer, made[2]);
  expect_jwks(**again, 2);
  RemoveTree(dir);
}

// A factory that fails fails the manager: no key without a signer.
TEST(TokenKeysTest, FactoryErrorIsReturned) {
  FakeClock clock(absl::FromUnixSeconds(kNow));
  TokenKeyOptions o;
  o.make_signer = [](std::shared_ptr<EVP_PKEY>)
      -> absl::StatusOr<std::shared_ptr<TokenSigner>> {
    return absl::UnavailableError("no token from the HSM");
  };
  auto keys = TokenKeyManager::Open(o, clock);
  EXPECT_EQ(keys.status(), absl::UnavailableError("no token from the HSM"));
  o.make_signer = [](std::shared_ptr<EVP_PKEY>)
      -> absl::StatusOr<std::shared_ptr<TokenSigner>> { return nullptr; };
  EXPECT_EQ(TokenKeyManager::Open(o, clock).status(),
            absl::InternalError("no token signer"));
}

}  // namespace
}  // namespace simprov
