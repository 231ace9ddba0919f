// Token issuance (broker/tokens/token_service): the claims writer, the
// token id source, and issuance through the TokenSigner interface.
#include "broker/tokens/token_service.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/ca/ca.h"
#include "broker/policy/group_policies.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/tokens/token_keys.h"
#include "broker/tokens/token_signer.h"
#include "common/clock.h"
#include "common/token/jose.h"
#include "common/token/token_verifier.h"
#include "common/x509.h"
#include "test/broker/tokens/token_test_util.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using nlohmann::json;
using testing::kNow;
using testing::MakeTempDir;
using testing::RemoveTree;

// The claims writer against nlohmann::json's serialisation of the same
// object: byte-identical, escapes included.
TEST(TokenClaimsJsonTest, SameBytesAsNlohmann) {
  TokenClaims c;
  c.iss = "https://broker.example.net/";
  c.sub = "urn:simprov:device:001010000000001";
  c.client_id = c.sub;
  c.jti = "00112233445566778899aabbccddeeff";
  c.group = "";
  c.aud = {"billing"};
  c.iat = kNow;
  c.nbf = kNow;
  c.exp = kNow + 600;
  c.cnf_x5t_s256 = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2";
  c.imsi = "001010000000001";
  auto reference = [](const TokenClaims& c) {
    json j = {{"iss", c.iss},
              {"sub", c.sub},
              {"iat", c.iat},
              {"nbf", c.nbf},
              {"exp", c.exp},
              {"jti", c.jti},
              {"group", c.group},
              {"cnf", {{"x5t#S256", c.cnf_x5t_s256}}},
              {"client_id", c.client_id}};
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
  c.client_id = odd;
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

// A TokenSigner that delegates to another and records what it is asked:
// issuance that signs through the interface shows in its log.
class RecordingSigner final : public TokenSigner {
 public:
  explicit RecordingSigner(std::shared_ptr<TokenSigner> inner)
      : inner_(std::move(inner)) {}
  std::string kid() const override { return inner_->kid(); }
  std::string alg() const override { return inner_->alg(); }
  nlohmann::json PublicJwk() const override { return inner_->PublicJwk(); }
  absl::StatusOr<std::string> Sign(std::string_view signing_input) override {
    std::lock_guard<std::mutex> lock(mu_);
    inputs_.emplace_back(signing_input);
    if (fail_) return absl::UnavailableError("signer unplugged");
    absl::StatusOr<std::string> sig = inner_->Sign(signing_input);
    if (sig.ok()) signatures_.push_back(*sig);
    return sig;
  }

  void set_fail(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = fail;
  }
  std::vector<std::string> inputs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return inputs_;
  }
  std::vector<std::string> signatures() const {
    std::lock_guard<std::mutex> lock(mu_);
    return signatures_;
  }

 private:
  const std::shared_ptr<TokenSigner> inner_;
  mutable std::mutex mu_;
  bool fail_ = false;                    // guarded by mu_
  std::vector<std::string> inputs_;      // guarded by mu_
  std::vector<std::string> signatures_;  // guarded by mu_
};

// A broker's token side in process: a development CA, a SQLite store with
// one active subscriber holding one device certificate, keys whose signers
// are RecordingSigners, and the TokenService.
class TokenServiceTest : public ::testing::Test {
 protected:
  static constexpr char kImsi[] = "001010000000001";

  void SetUp() override {
    dir_ = MakeTempDir();
    auto ca =
        CertificateAuthority::CreateDevelopment(dir_ + "/ca", clock_, random_);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
    auto store = SqliteStore::Open(dir_ + "/store.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok()) << import.status();
    NewSubscriber sub;
    sub.imsi = kImsi;
    sub.sealed_keys = {1};
    sub.amf = {0x80, 0};
    ASSERT_TRUE((*import)->Add(sub).ok());
    ASSERT_TRUE((*import)->Commit().ok());
    EvpPkeyPtr device_key = GenerateP256Key();
    DeviceCertRequest req;
    req.public_key = device_key.get();
    req.common_name = kImsi;
    req.device_id_uri = absl::StrCat("urn:simprov:device:", kImsi);
    req.ttl = absl::Hours(24 * 30);
    auto leaf = ca_->IssueDevice(req);
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    CertificateRecord record;
    record.serial = leaf->info.serial_hex;
    record.imsi = kImsi;
    record.device_id = req.device_id_uri;
    record.not_before = leaf->info.not_before;
    record.not_after = leaf->info.not_after;
    record.der = leaf->der;
    record.issued_at = clock_.Now();
    ASSERT_TRUE(store_
                    ->RecordIssuance(record, {clock_.Now(), kImsi, "bootstrap",
                                              kImsi, "ok", ""})
                    .ok());
    pem_ = CertDerToPem(leaf->der);

    TokenKeyOptions ko;
    ko.make_signer = [this](std::shared_ptr<EVP_PKEY> key)
        -> absl::StatusOr<std::shared_ptr<TokenSigner>> {
      auto inner = MakeSoftwareTokenSigner(std::move(key));
      if (!inner.ok()) return inner.status();
      auto recorder = std::make_shared<RecordingSigner>(std::move(*inner));
      signers_.push_back(recorder);
      return recorder;
    };
    auto keys = TokenKeyManager::Open(ko, clock_);
    ASSERT_TRUE(keys.ok()) << keys.status();
    keys_ = std::move(*keys);
    ASSERT_EQ(signers_.size(), 1u);
    TokenOptions to;
    to.issuer = "https://broker.test";
    tokens_ = std::make_unique<TokenService>(to, *store_, *ca_, *keys_, clock_,
                                             random_);
  }
  void TearDown() override {
    tokens_.reset();
    store_.reset();
    RemoveTree(dir_);
  }

  TokenVerifyResult Verify(const std::string& token) {
    TokenVerifierOptions o;
    o.audience = "billing";
    o.issuer = "https://broker.test";
    FakeClock* clock = &clock_;
    o.now_unix = [clock] { return absl::ToUnixSeconds(clock->Now()); };
    TokenVerifier v(o);
    std::string error;
    EXPECT_TRUE(v.SetJwks(keys_->JwksJson(), &error)) << error;
    return v.Verify(token, jose::CertificateDer(pem_));
  }

  FakeClock clock_{absl::FromUnixSeconds(kNow)};
  DeterministicRandom random_{11};
  std::string dir_, pem_;
  std::unique_ptr<CertificateAuthority> ca_;
  std::unique_ptr<SqliteStore> store_;
  std::vector<std::shared_ptr<RecordingSigner>> signers_;
  std::unique_ptr<TokenKeyManager> keys_;
  std::unique_ptr<TokenService> tokens_;
};

// Issuance signs with the key manager's current signer, through the
// TokenSigner interface only: the token is the signer's input and the
// signer's signature, its header names the signer's kid and alg, and a
// failing signer fails the issuance (nothing is audited).
TEST_F(TokenServiceTest, IssuesThroughTheTokenSigner) {
  RecordingSigner& signer = *signers_[0];
  v1::IssueTokenRequest req;
  req.add_audience("billing");
  auto resp = tokens_->Issue(pem_, req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(signer.inputs().size(), 1u);
  ASSERT_EQ(signer.signatures().size(), 1u);
  const std::string& token = resp->token();
  const size_t dot = token.rfind('.');
  EXPECT_EQ(token.substr(0, dot), signer.inputs()[0]);
  EXPECT_EQ(token.substr(dot + 1),
            jose::Base64UrlEncode(signer.signatures()[0]));
  const std::string header_b64 = token.substr(0, token.find('.'));
  EXPECT_EQ(header_b64, jose::Base64UrlEncode(json({{"alg", signer.alg()},
                                                    {"kid", signer.kid()},
                                                    {"typ", "at+jwt"}})
                                                  .dump()));
  TokenVerifyResult r = Verify(token);
  ASSERT_TRUE(r.valid) << r.error;
  EXPECT_EQ(r.token.kid, signer.kid());
  EXPECT_EQ(r.token.alg, "ES256");
  EXPECT_EQ(r.token.jti, resp->jti());
  EXPECT_EQ(r.token.imsi, kImsi);
  EXPECT_EQ(r.token.expires_at, kNow + 600);

  signer.set_fail(true);
  auto failed = tokens_->Issue(pem_, req);
  // The signer's UNAVAILABLE (an HSM that does not answer) stays
  // UNAVAILABLE, with the broker's own message.
  EXPECT_EQ(failed.status(),
            absl::UnavailableError("token signing unavailable"));
  EXPECT_EQ(signer.inputs().size(), 2u);
  EXPECT_EQ(signer.signatures().size(), 1u);
  auto audit = store_->AuditOf(kImsi);
  ASSERT_TRUE(audit.ok()) << audit.status();
  size_t token_events = 0;
  for (const AuditEvent& e : *audit) {
    if (e.action != "token") continue;
    ++token_events;
    EXPECT_EQ(e.reason, absl::StrCat("jti=", resp->jti(), " aud=billing exp=",
                                     kNow + 600, " kid=", signer.kid()));
  }
  EXPECT_EQ(token_events, 1u);
}

// After a rotation issuance signs with the next key's signer.
TEST_F(TokenServiceTest, SignsWithTheCurrentKeysSigner) {
  v1::IssueTokenRequest req;
  req.add_audience("billing");
  ASSERT_TRUE(tokens_->Issue(pem_, req).ok());
  // The default period (24h): the next key is published an hour ahead and
  // signs from the end of the period.
  clock_.Advance(absl::Hours(23));
  tokens_->Sweep();
  ASSERT_EQ(signers_.size(), 2u);
  ASSERT_TRUE(tokens_->Issue(pem_, req).ok());
  EXPECT_EQ(signers_[0]->inputs().size(), 2u);
  EXPECT_TRUE(signers_[1]->inputs().empty());
  clock_.Advance(absl::Hours(1));
  auto resp = tokens_->Issue(pem_, req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(signers_[0]->inputs().size(), 2u);
  ASSERT_EQ(signers_[1]->inputs().size(), 1u);
  TokenVerifyResult r = Verify(resp->token());
  ASSERT_TRUE(r.valid) << r.error;
  EXPECT_EQ(r.token.kid, signers_[1]->kid());
}

// A token service whose groups have stored policies, and an application
// allowed to introspect.
class TokenBindingTest : public TokenServiceTest {
 protected:
  static constexpr char kNewImsi[] = "001010000000002";

  void SetUp() override {
    TokenServiceTest::SetUp();
    if (HasFatalFailure()) return;
    policies_ = std::make_unique<GroupPolicies>(*store_);
    TokenOptions to;
    to.issuer = "https://broker.test";
    to.policies = policies_.get();
    bound_ = std::make_unique<TokenService>(to, *store_, *ca_, *keys_, clock_,
                                            random_);
    auto app = bound_->CreateApp("billing", "local");
    ASSERT_TRUE(app.ok()) << app.status();
    const std::string pair = "billing:" + app->key();
    std::string b64(4 * ((pair.size() + 2) / 3) + 1, '\0');
    b64.resize(
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                        reinterpret_cast<const unsigned char*>(pair.data()),
                        static_cast<int>(pair.size())));
    basic_ = "Basic " + b64;
  }
  void TearDown() override {
    bound_.reset();
    TokenServiceTest::TearDown();
  }

  void ApplyDefaultPolicy(const std::string& token_policy) {
    const std::string policy =
        absl::StrCat(R"({"name":"default","token":)", token_policy, "}");
    ASSERT_TRUE(store_
                    ->PutGroups({{"default", policy, clock_.Now()}},
                                {clock_.Now(), "local", "group-apply",
                                 "default", "ok", ""})
                    .ok());
    policies_->Invalidate();
  }
  absl::StatusOr<v1::IssueTokenResponse> Issue(
      std::vector<std::string> scopes = {}) {
    v1::IssueTokenRequest req;
    req.add_audience("billing");
    for (const std::string& s : scopes) req.add_scope(s);
    return bound_->Issue(pem_, req);
  }
  bool Active(const std::string& token) {
    auto answer = bound_->Introspect(basic_, token);
    EXPECT_TRUE(answer.ok()) << answer.status();
    if (!answer.ok()) return false;
    json j = json::parse(*answer, nullptr, false);
    EXPECT_TRUE(j.is_object()) << *answer;
    if (!j.value("active", false)) {
      EXPECT_EQ(*answer, R"({"active":false})");
      return false;
    }
    return true;
  }
  std::string Serial() { return (*store_->CertificatesOf(kImsi))[0].serial; }
  AuditEvent Admin(const std::string& action) {
    return {clock_.Now(), "local", action, kImsi, "ok", ""};
  }

  std::unique_ptr<GroupPolicies> policies_;
  std::unique_ptr<TokenService> bound_;
  std::string basic_;
};

// The attack: with no identifiers in tokens, a token issued before the SIM
// was replaced named only the device id, which the new SIM took over, and
// stayed active. Bound to its certificate (cnf), it goes inactive when
// the replacement revokes that certificate; the certificate gets no more.
TEST_F(TokenBindingTest, ReplacedSimsTokensGoInactive) {
  ApplyDefaultPolicy(R"({"identifiers":[]})");
  auto token = Issue();
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_TRUE(Active(token->token()));
  auto import = store_->BeginImport();
  ASSERT_TRUE(import.ok());
  NewSubscriber sub;
  sub.imsi = kNewImsi;
  sub.sealed_keys = {2};
  sub.amf = {0x80, 0};
  ASSERT_TRUE((*import)->Add(sub).ok());
  ASSERT_TRUE((*import)->Commit().ok());
  ASSERT_TRUE(
      store_->ReplaceDevice(kImsi, kNewImsi, clock_.Now(), Admin("replace"))
          .ok());
  EXPECT_FALSE(Active(token->token()));
  auto again = Issue();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(again.status().message(),
            absl::StrCat("certificate ", Serial(), " was revoked"));
}

// Revoking the one certificate a token is bound to makes it inactive, and
// so does revoking every token of the certificate's SIM.
TEST_F(TokenBindingTest, CertificateAndSimRevocationDeactivate) {
  ApplyDefaultPolicy(R"({"identifiers":[]})");
  auto first = Issue();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(bound_->RevokeDevice(kImsi, "local").ok());
  EXPECT_FALSE(Active(first->token()));
  clock_.Advance(absl::Seconds(2));  // revocation covers up to its second
  auto second = Issue();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(Active(second->token()));
  RevocationRequest r;
  r.serial = Serial();
  r.reason = "keyCompromise";
  r.at = clock_.Now();
  ASSERT_TRUE(store_->RevokeCertificates(r, Admin("revoke")).ok());
  EXPECT_FALSE(Active(second->token()));
}

// A suspended subscriber's tokens are inactive; resumed, active again.
TEST_F(TokenBindingTest, TheCertificatesSubscriberMustBeActive) {
  ApplyDefaultPolicy(R"({"identifiers":[]})");
  auto token = Issue();
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(kImsi, {kStatusActive},
                                        kStatusSuspended, "", Admin("suspend"))
                  .ok());
  EXPECT_FALSE(Active(token->token()));
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(kImsi, {kStatusSuspended},
                                        kStatusActive, "", Admin("resume"))
                  .ok());
  EXPECT_TRUE(Active(token->token()));
}

// Scopes: none by default; a group grants exactly those in token.scopes.
TEST_F(TokenBindingTest, ScopesAreGrantedOnlyByTheGroupPolicy) {
  auto refused = Issue({"read"});
  EXPECT_EQ(refused.status(),
            absl::PermissionDeniedError(
                "scope read is not allowed for group default"));
  // The service without policies (every group implicit) refuses too.
  v1::IssueTokenRequest req;
  req.add_audience("billing");
  req.add_scope("read");
  EXPECT_EQ(tokens_->Issue(pem_, req).status(),
            absl::PermissionDeniedError(
                "scope read is not allowed for group default"));
  ApplyDefaultPolicy(R"({"scopes":["read","meter:write"]})");
  auto granted = Issue({"meter:write", "read"});
  ASSERT_TRUE(granted.ok()) << granted.status();
  TokenVerifyResult v = Verify(granted->token());
  ASSERT_TRUE(v.valid) << v.error;
  EXPECT_EQ(v.token.scope, "meter:write read");
  EXPECT_EQ(Issue({"read", "admin"}).status(),
            absl::PermissionDeniedError(
                "scope admin is not allowed for group default"));
  // No scope asked: none granted, no claim.
  auto plain = Issue();
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(Verify(plain->token()).token.scope, "");
}

}  // namespace
}  // namespace simprov
