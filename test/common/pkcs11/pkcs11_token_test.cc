// simprov_pkcs11 against a real PKCS#11 module, SoftHSM2. The module reads
// its configuration once per process, so every test shares one SoftHSM
// directory with two tokens: "simprov" and "pintest" (PIN failures).
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/pkcs11/token.h"
#include "test/testing/softhsm.h"

namespace simprov::pkcs11 {
namespace {

using ::simprov::testing::SoftHsm;

SoftHsm& Hsm() {
  static SoftHsm* hsm = [] {
    auto h = SoftHsm::Create("simprov", "1234");
    EXPECT_NE(h, nullptr);
    auto r = ::simprov::testing::RunProcess(
        {"/usr/bin/softhsm2-util", "--init-token", "--free", "--label",
         "pintest", "--pin", "1111", "--so-pin", "87654321"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return h.release();
  }();
  return *hsm;
}

ModuleOptions Options() {
  ModuleOptions o;
  o.module_path = Hsm().module();
  o.pin_file = Hsm().pin_file();
  return o;
}

Uri TokenUri(const std::string& label = "simprov") {
  Uri u;
  u.token = label;
  return u;
}

Uri KeyUri(const std::string& object) {
  Uri u = TokenUri();
  u.object = object;
  return u;
}

std::string Digest(const std::string& msg) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), d);
  return std::string(reinterpret_cast<char*>(d), sizeof d);
}

// Verifies a raw r || s signature of `digest` with OpenSSL.
bool VerifyEcdsa(EVP_PKEY* pub, const std::string& digest,
                 const std::string& sig) {
  if (sig.size() != 64) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* s = ECDSA_SIG_new();
  ECDSA_SIG_set0(s, BN_bin2bn(p, 32, nullptr), BN_bin2bn(p + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(s, &der);
  ECDSA_SIG_free(s);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(pub, nullptr);
  bool ok =
      ctx != nullptr && EVP_PKEY_verify_init(ctx) == 1 &&
      EVP_PKEY_verify(ctx, der, len,
                      reinterpret_cast<const unsigned char*>(digest.data()),
                      digest.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

TEST(Pkcs11Token, GeneratesNonExtractableKeysThatSign) {
  auto token = Token::Open(TokenUri(), Options());
  ASSERT_TRUE(token.ok()) << token.status();
  auto key = (*token)->GenerateKey(KeyType::kEcP256, "gen-1");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ((*key)->uri(), "pkcs11:token=simprov;object=gen-1;type=private");
  EXPECT_EQ((*token)->GenerateKey(KeyType::kEcP256, "gen-1").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*(*key)->Extractable(), false);
  EXPECT_EQ(*(*key)->Sensitive(), true);
  const std::string d = Digest("hello");
  auto sig = (*key)->Sign(d);
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(VerifyEcdsa((*key)->public_key(), d, *sig));
  EXPECT_FALSE(VerifyEcdsa((*key)->public_key(), Digest("other"), *sig));
  // pkcs11-tool, independently: the module says never extractable.
  auto listed =
      Hsm().Tool({"--list-objects", "--type", "privkey", "--label", "gen-1"});
  EXPECT_NE(listed.out.find("never extractable"), std::string::npos)
      << listed.out;

  // Found again by label, same public key.
  auto found = (*token)->FindKey(KeyUri("gen-1"));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(EVP_PKEY_eq((*found)->public_key(), (*key)->public_key()), 1);
  EXPECT_TRUE(VerifyEcdsa((*key)->public_key(), d, *(*found)->Sign(d)));

  ASSERT_TRUE((*token)->DestroyKey("gen-1").ok());
  EXPECT_EQ((*token)->FindKey(KeyUri("gen-1")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*token)->DestroyKey("gen-1").code(), absl::StatusCode::kNotFound);
  // A signer of a destroyed key: UNAVAILABLE, not a crash.
  EXPECT_EQ((*key)->Sign(d).status().code(), absl::StatusCode::kUnavailable);
}

TEST(Pkcs11Token, FindsKeysMadeByPkcs11Tool) {
  ASSERT_FALSE(Hsm().GenerateEcKey("tool-key", "a1").empty());
  auto token = Token::Open(TokenUri(), Options());
  ASSERT_TRUE(token.ok()) << token.status();
  auto key = (*token)->FindKey(KeyUri("tool-key"));
  ASSERT_TRUE(key.ok()) << key.status();
  Uri by_id = TokenUri();
  by_id.id = "\xa1";
  by_id.has_id = true;
  auto key2 = (*token)->FindKey(by_id);
  ASSERT_TRUE(key2.ok()) << key2.status();
  EXPECT_EQ((*key2)->label(), "tool-key");
  const std::string d = Digest("x");
  EXPECT_TRUE(VerifyEcdsa((*key)->public_key(), d, *(*key2)->Sign(d)));
  auto missing = (*token)->FindKey(KeyUri("nope"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no private key nope in token simprov");
}

TEST(Pkcs11Token, EdDsaKeys) {
  auto token = Token::Open(TokenUri(), Options());
  ASSERT_TRUE(token.ok()) << token.status();
  auto key = (*token)->GenerateKey(KeyType::kEd25519, "ed-1");
  if (!key.ok() &&
      key.status().code() == absl::StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << key.status();
  }
  ASSERT_TRUE(key.ok()) << key.status();
  auto sig = (*key)->Sign("message");
  ASSERT_TRUE(sig.ok()) << sig.status();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ASSERT_EQ(EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr,
                                 (*key)->public_key()),
            1);
  EXPECT_EQ(
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig->data()),
                       sig->size(),
                       reinterpret_cast<const unsigned char*>("message"), 7),
      1);
  EVP_MD_CTX_free(ctx);
  EXPECT_TRUE((*token)->DestroyKey("ed-1").ok());
}

TEST(Pkcs11Token, PinSourcesAndRefusals) {
  Uri u = TokenUri("pintest");
  ModuleOptions o;
  o.module_path = Hsm().module();
  o.pin_env = "SIMPROV_TEST_PKCS11_PIN";
  ::unsetenv("SIMPROV_TEST_PKCS11_PIN");
  auto none = Token::Open(u, o);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(),
            "no PIN for PKCS#11 token pintest: give pin-source=file:PATH in "
            "the URI, --pkcs11-pin-file or SIMPROV_TEST_PKCS11_PIN");

  ::setenv("SIMPROV_TEST_PKCS11_PIN", "9999", 1);
  auto wrong = Token::Open(u, o);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(wrong.status().message(), "wrong PIN for PKCS#11 token pintest");
  EXPECT_EQ(wrong.status().message().find("9999"), std::string::npos);

  Uri with_value = u;
  with_value.pin_value = "1111";
  with_value.has_pin_value = true;
  EXPECT_EQ(Token::Open(with_value, o).status().code(),
            absl::StatusCode::kInvalidArgument);

  const std::string pin = Hsm().dir() + "/pintest.pin";
  ::simprov::testing::WriteFileOrDie(pin, "1111\n");
  ::chmod(pin.c_str(), 0644);
  Uri from_file = u;
  from_file.pin_source = pin;
  auto open_file = Token::Open(from_file, o);
  EXPECT_EQ(open_file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(open_file.status().message().find("readable by group or others"),
            std::string::npos);
  ::chmod(pin.c_str(), 0600);
  auto ok = Token::Open(from_file, o);  // the URI's source beats the env
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE((*ok)->Check().ok());
  ::unsetenv("SIMPROV_TEST_PKCS11_PIN");

  ModuleOptions no_module;
  EXPECT_EQ(Token::Open(u, no_module).status().message(),
            "no PKCS#11 module for token pintest: give --pkcs11-module PATH "
            "or module-path in the URI");
  Uri absent = TokenUri("absent");
  auto missing = Token::Open(absent, Options());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(missing.status().message(),
            absl::StrCat("PKCS#11 token absent not found in module ",
                         Hsm().module()));
}

TEST(Pkcs11Token, ConcurrentSignersShareABoundedPool) {
  TokenOptions limits;
  limits.max_sessions = 2;
  auto token = Token::Open(TokenUri(), Options(), limits);
  ASSERT_TRUE(token.ok()) << token.status();
  auto key = (*token)->GenerateKey(KeyType::kEcP256, "pool-1");
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string d = Digest("pool");
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto sig = (*key)->Sign(d);
        if (sig.ok() && VerifyEcdsa((*key)->public_key(), d, *sig)) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 400);
  (void)(*token)->DestroyKey("pool-1");
}

TEST(Pkcs11Token, TokenGoneIsUnavailableThenRecovers) {
  auto token = Token::Open(TokenUri(), Options());
  ASSERT_TRUE(token.ok()) << token.status();
  auto key = (*token)->GenerateKey(KeyType::kEcP256, "gone-1");
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string d = Digest("gone");
  ASSERT_TRUE((*key)->Sign(d).ok());
  Hsm().SetTokenPresent(false);
  auto during = (*key)->Sign(d);
  EXPECT_EQ(during.status().code(), absl::StatusCode::kUnavailable)
      << during.status();
  Hsm().SetTokenPresent(true);
  absl::StatusOr<std::string> after = absl::UnknownError("not tried");
  for (int i = 0; i < 50 && !after.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = (*key)->Sign(d);
  }
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(VerifyEcdsa((*key)->public_key(), d, *after));
  EXPECT_TRUE((*token)->Check().ok());
  (void)(*token)->DestroyKey("gone-1");
}

}  // namespace
}  // namespace simprov::pkcs11
