// What the registry code checks before it trusts a value: loopback
// addresses, the issue hook's URL and answer, and, over a real SQLite
// store, what a removal keeps and what a changed group queues again.
#include <gtest/gtest.h>
#include <httplib.h>

#include <functional>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/registry/issue_hook.h"
#include "broker/registry/registry.h"
#include "broker/registry/registry_outbox.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/x509.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RemoveTree;

TEST(Loopback, OnlyLiteralLoopbackAddressesAndLocalhost) {
  for (const char* yes :
       {"127.0.0.1", "127.1.2.3", "127.255.255.255", "localhost", "LOCALHOST",
        "::1", "[::1]", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"}) {
    EXPECT_TRUE(IsLoopbackHost(yes)) << yes;
  }
  for (const char* no :
       {"127.evil.example", "127.0.0.1.evil.example", "127.1", "128.0.0.1",
        "10.0.0.1", "localhost.evil", "evil.localhost", "::2", "[::1",
        "::ffff:10.0.0.1", "", "0x7f.0.0.1", "127.0.0.1 ", " 127.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(no)) << no;
  }
}

absl::StatusOr<std::unique_ptr<IssueHook>> Hook(const std::string& url) {
  IssueHookOptions o;
  o.url = url;
  o.secret = ToBytes("k");
  o.timeout = absl::Seconds(2);
  return IssueHook::Create(o, Clock::Real());
}

TEST(IssueHookUrl, PlainHttpNeedsALiteralLoopbackHost) {
  for (const char* bad :
       {"http://127.evil.example/x", "http://127.0.0.1.evil.example/x",
        "http://127.0.0.1@evil.example/x", "http://evil.example@127.0.0.1/x",
        "http://localhost.evil/x", "http://[::1/x", "http://127.0.0.1:/x",
        "http://127.0.0.1:8a/x", "http:///x", "ftp://127.0.0.1/x"}) {
    EXPECT_EQ(Hook(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  for (const char* good :
       {"http://127.0.0.1/x", "http://127.0.0.2:8080/x", "http://[::1]:80/x",
        "http://localhost:9/x", "HTTP://localhost/x",
        "https://hooks.example.com/x", "https://hooks.example.com:8443"}) {
    EXPECT_TRUE(Hook(good).ok()) << good << ": " << Hook(good).status();
  }
}

class AnsweringHook {
 public:
  explicit AnsweringHook(std::string body) : body_(std::move(body)) {
    server_.Post("/hook",
                 [this](const httplib::Request&, httplib::Response& res) {
                   res.set_content(body_, "application/json");
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~AnsweringHook() {
    server_.stop();
    thread_.join();
  }
  absl::StatusOr<std::string> Call(const GroupPolicy* policy) {
    auto hook = Hook(absl::StrCat("http://127.0.0.1:", port_, "/hook"));
    EXPECT_TRUE(hook.ok());
    IssuanceContext c;
    c.action = "bootstrap";
    c.policy = policy;
    c.values.device_id = "dev-1";
    c.values.imsi = "001010000000001";
    return (*hook)->Call(c);
  }

 private:
  const std::string body_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

TEST(IssueHookAnswer, ThingAndTopicsAreHeldToTheGroupsRule) {
  struct Case {
    const char* body;
    const char* refusal;  // "" when allowed
  };
  for (const Case& c : std::vector<Case>{
           {R"({"topics": ["#"]})", "topic \"#\""},
           {R"({"topics": ["devices/+/x"]})", "topic \"devices/+/x\""},
           {R"({"topics": ["devices/dev-2/#"]})", "topic \"devices/dev-2/#\""},
           {R"({"topics": ["a#"]})", "whole levels"},
           {R"({"topics": [5]})", "topics must be strings"},
           {R"({"topics": "devices/dev-1/#"})", "a list"},
           {R"({"thing": "a b"})", "thing \"a b\""},
           {R"({"thing": 5})", "thing must be a string"},
           {R"({"topics": ["devices/dev-1/#", "t/001010000000001/+"],
                "thing": "cam-1"})",
            ""},
           {R"({"thing": null, "topics": null})", ""},
       }) {
    AnsweringHook hook(c.body);
    auto r = hook.Call(nullptr);
    if (c.refusal[0] == '\0') {
      EXPECT_TRUE(r.ok()) << c.body << ": " << r.status();
      continue;
    }
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << c.body;
    EXPECT_TRUE(absl::StrContains(r.status().message(), c.refusal))
        << c.body << ": " << r.status();
  }
  // Wildcards anywhere only when every binding of the group says so.
  GroupPolicy any;
  any.registries = {{"m", "#{device_id}", {}, true}};
  GroupPolicy mixed = any;
  mixed.registries.push_back({"n", "#{device_id}", {}, false});
  AnsweringHook hook(R"({"topics": ["plant/#"]})");
  EXPECT_TRUE(hook.Call(&any).ok());
  EXPECT_EQ(hook.Call(&mixed).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(hook.Call(nullptr).status().code(),
            absl::StatusCode::kPermissionDenied);
}

// ---- the outbox: removals and a changed group
// --------------------------------

// A self-signed certificate (CN = `cn`): what Intents needs of a record.
Bytes SelfSigned(EVP_PKEY* key, const std::string& cn) {
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 3600);
  X509_set_pubkey(x.get(), key);
  if (X509_sign(x.get(), key, EVP_sha256()) <= 0) return {};
  return CertToDer(x.get());
}

class RecordingRegistry : public Registry {
 public:
  RecordingRegistry() : Registry("rec") {}
  std::string kind() const override { return "rec"; }
  absl::StatusOr<std::string> Register(const DeviceRegistration& d) override {
    std::lock_guard<std::mutex> lock(mu);
    registered.push_back(d);
    return std::string("{}");
  }
  absl::Status Remove(
      const DeviceRegistration& d, const std::string&,
      const std::vector<DeviceRegistration>& still_valid) override {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> serials;
    for (const DeviceRegistration& o : still_valid) serials.push_back(o.serial);
    std::sort(serials.begin(), serials.end());
    removed.emplace_back(d.serial, serials);
    return absl::OkStatus();
  }
  nlohmann::json ConnectionInfo(const DeviceRegistration& d) const override {
    return {{"thing", d.thing}, {"topics", d.topics}};
  }
  std::mutex mu;
  std::vector<DeviceRegistration> registered;
  std::vector<std::pair<std::string, std::vector<std::string>>> removed;
};

class OutboxDevicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    auto store = SqliteStore::Open(dir_ + "/s.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok());
    for (const char* imsi : {"001010000000001", "001010000000002"}) {
      NewSubscriber s;
      s.imsi = imsi;
      s.sealed_keys = Bytes(48, 1);
      s.amf = {0x80, 0};
      ASSERT_TRUE((*import)->Add(s).ok());
    }
    ASSERT_TRUE((*import)->Commit().ok());
    auto rec = std::make_unique<RecordingRegistry>();
    rec_ = rec.get();
    std::vector<std::unique_ptr<Registry>> regs;
    regs.push_back(std::move(rec));
    outbox_ = std::make_unique<RegistryOutbox>(*store_, std::move(regs),
                                               nullptr, clock_, random_);
    key_ = GenerateP256Key();
  }
  void TearDown() override {
    outbox_.reset();
    store_.reset();
    RemoveTree(dir_);
  }

  // Issues certificate `serial` of `imsi` (device id = the IMSI) through
  // the outbox's Intents, as the enrolment does.
  void Issue(const std::string& serial, const std::string& imsi,
             const GroupPolicy* policy, const std::string& hook = "",
             absl::Duration ttl = absl::Hours(1)) {
    CertificateRecord c;
    c.serial = serial;
    c.imsi = imsi;
    c.device_id = imsi;
    c.issued_at = clock_.Now();
    c.not_before = c.issued_at;
    c.not_after = c.issued_at + ttl;
    c.der = SelfSigned(key_.get(), imsi);
    ASSERT_FALSE(c.der.empty());
    IssuanceContext ctx;
    ctx.action = "bootstrap";
    ctx.policy = policy;
    ctx.values.device_id = imsi;
    ctx.values.imsi = imsi;
    ctx.values.group = kDefaultGroup;
    auto intents = outbox_->Intents(ctx, c, hook);
    ASSERT_TRUE(intents.ok()) << intents.status();
    ASSERT_TRUE(
        store_
            ->RecordIssuanceWithIntents(
                c, {clock_.Now(), imsi, "bootstrap", imsi, "ok", ""}, *intents)
            .ok());
  }
  void Revoke(const std::string& serial) {
    RevocationRequest r;
    r.serial = serial;
    r.reason = "keyCompromise";
    r.at = clock_.Now();
    ASSERT_TRUE(store_
                    ->RevokeCertificates(
                        r, {clock_.Now(), "local", "revoke", serial, "ok", ""})
                    .ok());
  }
  // The default group's policy, registered with "rec" on `topic`.
  static GroupPolicy Group(const std::string& topic) {
    GroupPolicy p = ImplicitPolicy(kDefaultGroup);
    p.registries = {{"rec", "#{device_id}", {topic}, true}};
    return p;
  }
  std::vector<std::string> TopicsRegistered() {
    std::vector<std::string> out;
    for (const DeviceRegistration& d : rec_->registered) {
      out.push_back(d.serial + ":" + (d.topics.empty() ? "" : d.topics[0]));
    }
    return out;
  }

  std::string dir_;
  FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  DeterministicRandom random_{9};
  std::unique_ptr<SqliteStore> store_;
  RecordingRegistry* rec_ = nullptr;
  std::unique_ptr<RegistryOutbox> outbox_;
  EvpPkeyPtr key_;
};

TEST_F(OutboxDevicesTest, RemovalKeepsWhatAnotherValidCertificateNeeds) {
  const GroupPolicy g = Group("d/#{device_id}/#");
  const std::string a = "001010000000001", b = "001010000000002";
  Issue("c1", a, &g);
  Issue("c2", a, &g);
  Issue("c3", a, &g, "", absl::Minutes(1));  // expires soon
  Issue("b1", b, &g);                        // another device
  EXPECT_EQ(*outbox_->RunOnce(), 4);
  Revoke("c1");
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  ASSERT_EQ(rec_->removed.size(), 1u);
  EXPECT_EQ(rec_->removed[0], (std::pair<std::string, std::vector<std::string>>{
                                  "c1", {"c2", "c3"}}));
  clock_.Advance(absl::Minutes(2));  // c3 has expired
  Revoke("c2");
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  ASSERT_EQ(rec_->removed.size(), 2u);
  EXPECT_EQ(rec_->removed[1],
            (std::pair<std::string, std::vector<std::string>>{"c2", {}}));
  // A terminated subscriber keeps nothing.
  Issue("b2", b, &g);
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(
                      b, {kStatusActive}, kStatusTerminated, "",
                      {clock_.Now(), "local", "terminate", b, "ok", ""})
                  .ok());
  EXPECT_EQ(*outbox_->RunOnce(), 2);
  ASSERT_EQ(rec_->removed.size(), 4u);
  EXPECT_TRUE(rec_->removed[2].second.empty());
  EXPECT_TRUE(rec_->removed[3].second.empty());
}

TEST_F(OutboxDevicesTest, ChangedGroupRegistersItsDevicesAgainOnce) {
  const GroupPolicy broad = Group("devices/#");
  const std::string a = "001010000000001", b = "001010000000002";
  Issue("a1", a, &broad);
  Issue("b1", b, &broad);
  Issue("h1", a, &broad, R"({"topics":["h/001010000000001/#"]})");
  EXPECT_EQ(*outbox_->RunOnce(), 3);

  const GroupPolicy narrow = Group("d/#{device_id}/#");
  auto n = outbox_->ReregisterGroup(narrow);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);  // not h1: the hook chose its topics
  EXPECT_EQ((*outbox_->StatusOf("a1"))["status"], "pending");
  EXPECT_EQ(*outbox_->RunOnce(), 2);
  EXPECT_EQ(TopicsRegistered(),
            (std::vector<std::string>{"a1:devices/#", "b1:devices/#",
                                      "h1:h/001010000000001/#",
                                      "a1:d/" + a + "/#", "b1:d/" + b + "/#"}));
  auto status = outbox_->StatusOf("a1");
  EXPECT_EQ((*status)["status"], "registered");
  EXPECT_EQ((*status)["registries"][0]["topics"][0], "d/" + a + "/#");
  auto intents = store_->IntentsOf("a1");
  EXPECT_EQ(RegistryStatusLine(*intents), "rec:registered");
  // The same policy again: nothing.
  EXPECT_EQ(*outbox_->ReregisterGroup(narrow), 0);

  // Revoked: not queued; revoked after queueing: the update is skipped and
  // the removal follows.
  Revoke("b1");
  EXPECT_EQ(*outbox_->ReregisterGroup(Group("e/#{device_id}")), 1);
  Revoke("a1");
  EXPECT_EQ(*outbox_->RunOnce(), 2);  // the two removals
  EXPECT_EQ(rec_->registered.size(), 5u);
  intents = store_->IntentsOf("a1");
  ASSERT_TRUE(intents.ok());
  EXPECT_EQ(intents->at(1).kind, "update");
  EXPECT_EQ(intents->at(1).state, "skipped");
  EXPECT_EQ(RegistryStatusLine(*intents), "rec:removed");
}

}  // namespace
}  // namespace simprov
