// Token signing keys in a PKCS#11 token (SoftHSM2): made there labelled by
// kid, rotated on the injected clock, destroyed in the token after their
// grace period, found again after a restart; tokens verify against the JWKS.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "broker/tokens/pkcs11_token_signer.h"
#include "broker/tokens/token_keys.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/token/token_verifier.h"
#include "test/testing/softhsm.h"

namespace simprov {
namespace {

using json = nlohmann::json;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::SoftHsm;

constexpr int64_t kNow = 1767225600;

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(Pkcs11TokenKeysTest, RotationMakesKeysInTheTokenAndDestroysRetiredOnes) {
  auto hsm = SoftHsm::Create("tokens", "2468");
  ASSERT_NE(hsm, nullptr);
  pkcs11::ModuleOptions mo;
  mo.module_path = hsm->module();
  mo.pin_file = hsm->pin_file();
  auto store = Pkcs11TokenKeyStore::Open("pkcs11:token=tokens", mo);
  ASSERT_TRUE(store.ok()) << store.status();

  FakeClock clock(absl::FromUnixSeconds(kNow));
  TokenKeyOptions o;
  o.rotation_period = absl::Hours(1);  // lead: 15 minutes
  o.max_token_lifetime = absl::Minutes(10);
  o.path = hsm->dir() + "/keys.json";
  o.store = *store;
  auto keys = TokenKeyManager::Open(o, clock);
  ASSERT_TRUE(keys.ok()) << keys.status();
  TokenKeyManager* mp = keys->get();
  const std::string k1 = (*mp->Current())->kid;
  EXPECT_EQ(hsm->PrivateKeyLabels(), std::vector<std::string>{k1});
  const std::string file = ReadFileOrEmpty(o.path);
  EXPECT_EQ(file.find("private_pem"), std::string::npos) << file;
  EXPECT_EQ(file.find("PRIVATE KEY"), std::string::npos) << file;

  auto verify = [&](const std::string& token) {
    TokenVerifierOptions vo;
    vo.audience = "a";
    vo.now_unix = [&clock] { return absl::ToUnixSeconds(clock.Now()); };
    TokenVerifier v(vo);
    std::string error;
    EXPECT_TRUE(v.SetJwks(mp->JwksJson(), &error)) << error;
    return v.Verify(token);
  };
  auto sign = [&] {
    const int64_t now = absl::ToUnixSeconds(clock.Now());
    json c = {{"iss", "i"}, {"sub", "d"},       {"aud", "a"},
              {"iat", now}, {"exp", now + 600}, {"jti", "j"}};
    auto t = SignTokenClaims(**mp->Current(), c.dump());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  };
  const std::string old_token = sign();
  EXPECT_TRUE(verify(old_token).valid) << verify(old_token).error;

  clock.Advance(absl::Minutes(45));  // k2 published, made in the token
  (void)mp->Current();
  json jwks = json::parse(mp->JwksJson());
  ASSERT_EQ(jwks["keys"].size(), 2u);
  const std::string k2 = jwks["keys"][1]["kid"];
  std::vector<std::string> labels = hsm->PrivateKeyLabels();
  EXPECT_TRUE(Has(labels, k1) && Has(labels, k2)) << k2;

  // A restart finds both keys in the token by kid.
  keys->reset();
  keys = TokenKeyManager::Open(o, clock);
  ASSERT_TRUE(keys.ok()) << keys.status();
  TokenKeyManager& m2 = **keys;
  EXPECT_EQ((*m2.Current())->kid, k1);
  clock.Advance(absl::Minutes(15));  // 60: k2 signs
  EXPECT_EQ((*m2.Current())->kid, k2);
  mp = &m2;
  const std::string new_token = sign();  // by k2, in the token
  EXPECT_TRUE(verify(new_token).valid) << verify(new_token).error;

  clock.Advance(absl::Minutes(12));  // 72: k1 retired, destroyed in the token
  (void)m2.Current();
  labels = hsm->PrivateKeyLabels();
  EXPECT_FALSE(Has(labels, k1));
  EXPECT_TRUE(Has(labels, k2));
  EXPECT_EQ(json::parse(m2.JwksJson())["keys"].size(), 1u);
}

}  // namespace
}  // namespace simprov
