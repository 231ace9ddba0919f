// Registries without Mosquitto: URL syntax, the outbox over a
// real SQLite store with a fake clock and a flaky registry, the AWS IoT
// adapter against a local endpoint that checks the SigV4 of every request
// and answers like AWS, and the issue hook.
#include "broker/registry/registry.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/registry/aws_sigv4.h"
#include "broker/registry/issue_hook.h"
#include "broker/registry/registry_outbox.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/digest.h"
#include "common/x509.h"
#include "test/testing/fake_aws_iot.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RemoveTree;

// ---- URLs -------------------------------------------------------------------

TEST(RegistryUrl, PercentDecodesQueryValuesAndNamesTheRegistry) {
  auto u = ParseRegistryUrl(
      "mosquitto://admin:s%40cret@broker.example:8884?tls=1&"
      "topics=dev-%23%7Bimsi%7D%2F%23,b&name=plant-1");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->scheme, "mosquitto");
  EXPECT_EQ(u->user, "admin");
  EXPECT_EQ(u->password, "s@cret");
  EXPECT_EQ(u->host, "broker.example");
  EXPECT_EQ(u->port, 8884);
  EXPECT_EQ(u->Get("topics"), "dev-#{imsi}/#,b");
  EXPECT_EQ(u->name, "plant-1");
  // The password never shows.
  EXPECT_EQ(u->Redacted(), "mosquitto://admin:***@broker.example:8884");
}

TEST(RegistryUrl, DefaultNameIsTheSchemeAndPasswordMayComeFromEnv) {
  setenv("SIMPROV_TEST_MQ_PASS", "from-env", 1);
  auto u = ParseRegistryUrl(
      "mosquitto://admin@h:1883?password_env=SIMPROV_TEST_MQ_PASS");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->name, "mosquitto");
  EXPECT_EQ(u->password, "from-env");
  auto missing = ParseRegistryUrl("mosquitto://a@h?password_env=NO_SUCH_VAR_X");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRegistryUrl("mosquitto://h?x=%zz").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRegistryUrl("no-scheme").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RegistryStatusLine, OneStatePerRegistryLatestEntryWins) {
  EXPECT_EQ(RegistryStatusLine({}), "-");
  auto entry = [](std::string registry, std::string kind, std::string state,
                  int64_t attempts = 0) {
    RegistrationIntent i;
    i.registry = std::move(registry);
    i.kind = std::move(kind);
    i.state = std::move(state);
    i.attempts = attempts;
    return i;
  };
  EXPECT_EQ(RegistryStatusLine({entry("mosquitto", "register", "done"),
                                entry("aws-iot", "register", "pending", 3)}),
            "aws-iot:pending(3),mosquitto:registered");
  EXPECT_EQ(RegistryStatusLine({entry("mosquitto", "register", "done"),
                                entry("mosquitto", "remove", "pending", 1)}),
            "mosquitto:removing");
  EXPECT_EQ(RegistryStatusLine({entry("mosquitto", "register", "done"),
                                entry("mosquitto", "remove", "done")}),
            "mosquitto:removed");
  EXPECT_EQ(RegistryStatusLine({entry("aws-iot", "register", "skipped"),
                                entry("mqtt-eu", "register", "cancelled")}),
            "aws-iot:skipped,mqtt-eu:cancelled");
}

TEST(RegistryUrl, TwoRegistriesOfOneNameAreRefused) {
  auto dir = MakeTempDir();
  auto store = SqliteStore::Open(dir + "/s.db");
  ASSERT_TRUE(store.ok());
  RegistryFlags flags;
  flags.registries = {"mosquitto://a@h1", "mosquitto://a@h2"};
  auto o = ConfigureRegistries(flags, **store, Clock::Real(), Random::Real());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  flags.registries = {"mosquitto://a@h1", "mosquitto://a@h2?name=second"};
  o = ConfigureRegistries(flags, **store, Clock::Real(), Random::Real());
  EXPECT_TRUE(o.ok()) << o.status();
  RemoveTree(dir);
}

// ---- the outbox -------------------------------------------------------------

class FakeRegistry : public Registry {
 public:
  explicit FakeRegistry(std::string name) : Registry(std::move(name)) {}
  std::string kind() const override { return "fake"; }
  absl::StatusOr<std::string> Register(const DeviceRegistration& d) override {
    std::lock_guard<std::mutex> lock(mu);
    if (down) return absl::UnavailableError("connection refused");
    registered[d.serial]++;
    return std::string(R"({"ok":1})");
  }
  absl::Status Remove(
      const DeviceRegistration& d, const std::string& registered_json,
      const std::vector<DeviceRegistration>& still_valid) override {
    std::lock_guard<std::mutex> lock(mu);
    if (down) return absl::UnavailableError("connection refused");
    removed[d.serial] = registered_json;
    for (const DeviceRegistration& o : still_valid) {
      kept[d.serial].push_back(o.serial);
    }
    return absl::OkStatus();
  }
  nlohmann::json ConnectionInfo(const DeviceRegistration& d) const override {
    return {{"host", "h"}, {"client_id", d.thing}};
  }
  std::mutex mu;
  bool down = false;
  std::map<std::string, int> registered;
  std::map<std::string, std::string> removed;
  // Per removed serial: the serials of the device still valid then.
  std::map<std::string, std::vector<std::string>> kept;
};

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    auto store = SqliteStore::Open(dir_ + "/s.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto import = store_->BeginImport();
    ASSERT_TRUE(import.ok());
    NewSubscriber s;
    s.imsi = "001010000000001";
    s.sealed_keys = Bytes(48, 1);
    s.amf = {0x80, 0};
    ASSERT_TRUE((*import)->Add(s).ok());
    ASSERT_TRUE((*import)->Commit().ok());
    auto fake = std::make_unique<FakeRegistry>("fake");
    fake_ = fake.get();
    std::vector<std::unique_ptr<Registry>> regs;
    regs.push_back(std::move(fake));
    outbox_ = std::make_unique<RegistryOutbox>(*store_, std::move(regs),
                                               nullptr, clock_, random_);
  }
  void TearDown() override {
    outbox_.reset();
    store_.reset();
    RemoveTree(dir_);
  }

  // Records certificate `serial` with one register intent, as issuance does.
  void Issue(const std::string& serial) {
    CertificateRecord c;
    c.serial = serial;
    c.imsi = "001010000000001";
    c.device_id = "001010000000001";
    c.der = Bytes(10, 2);
    c.issued_at = clock_.Now();
    c.not_before = c.issued_at;
    c.not_after = c.issued_at + absl::Hours(1);
    DeviceRegistration d;
    d.serial = serial;
    d.imsi = c.imsi;
    d.device_id = c.device_id;
    d.thing = "thing-" + serial;
    RegistrationIntent i;
    i.registry = "fake";
    i.kind = "register";
    i.serial = serial;
    i.imsi = c.imsi;
    i.device_id = c.device_id;
    i.payload = d.ToJson();
    i.created_at = clock_.Now();
    i.next_attempt_at = clock_.Now();
    ASSERT_TRUE(
        store_
            ->RecordIssuanceWithIntents(
                c, {clock_.Now(), c.imsi, "bootstrap", c.imsi, "ok", ""}, {i})
            .ok());
  }

  std::string dir_;
  FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  DeterministicRandom random_{7};
  std::unique_ptr<SqliteStore> store_;
  FakeRegistry* fake_ = nullptr;
  std::unique_ptr<RegistryOutbox> outbox_;
};

TEST_F(OutboxTest, IntentIsWrittenWithTheCertificateAndDeliveredOnce) {
  Issue("aa01");
  auto stats = store_->GetOutboxStats(clock_.Now() + absl::Seconds(3));
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->depth, 1);
  EXPECT_EQ(stats->oldest_age, absl::Seconds(3));
  auto n = outbox_->RunOnce();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(*outbox_->RunOnce(), 0);  // nothing left: delivered once
  EXPECT_EQ(fake_->registered["aa01"], 1);
  EXPECT_EQ(store_->GetOutboxStats(clock_.Now())->depth, 0);
  auto status = outbox_->StatusOf("aa01");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["status"], "registered");
  EXPECT_EQ((*status)["registries"][0]["client_id"], "thing-aa01");
}

TEST_F(OutboxTest, DownRegistryIsRetriedWithCappedJitteredBackoff) {
  fake_->down = true;
  Issue("aa02");
  EXPECT_EQ(*outbox_->RunOnce(), 0);
  // What waits, and why.
  std::vector<RegistrationIntent> pending;
  ASSERT_TRUE(store_
                  ->ListPendingIntents(0, 0,
                                       [&](const RegistrationIntent& i) {
                                         pending.push_back(i);
                                         return true;
                                       })
                  .ok());
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].attempts, 1);
  EXPECT_EQ(pending[0].last_error, "connection refused");
  EXPECT_EQ((*outbox_->StatusOf("aa02"))["status"], "pending");
  // Not due again before the backoff (at least 0.5 s after attempt 1).
  EXPECT_EQ(*outbox_->RunOnce(), 0);
  EXPECT_EQ(fake_->registered.count("aa02"), 0u);
  for (int64_t a = 0; a < 20; ++a) {
    absl::Duration d = outbox_->Backoff(a);
    absl::Duration full =
        std::min(absl::Seconds(1) * (int64_t{1} << std::min<int64_t>(a, 10)),
                 absl::Seconds(30));
    EXPECT_GE(d, full / 2) << a;
    EXPECT_LE(d, full) << a;
  }
  EXPECT_LE(outbox_->Backoff(100), absl::Seconds(30));
  fake_->down = false;
  clock_.Advance(absl::Seconds(31));
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  EXPECT_EQ(fake_->registered["aa02"], 1);
}

TEST_F(OutboxTest, RevocationQueuesRemovalWithTheRegistrationAnswer) {
  Issue("aa03");
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  RevocationRequest r;
  r.serial = "aa03";
  r.reason = "keyCompromise";
  r.at = clock_.Now();
  ASSERT_TRUE(store_
                  ->RevokeCertificates(
                      r, {clock_.Now(), "local", "revoke", "aa03", "ok", ""})
                  .ok());
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  EXPECT_EQ(fake_->removed["aa03"], R"({"ok":1})");
  EXPECT_EQ(*store_->EnqueueRemovals(clock_.Now()), 0);  // idempotent
}

TEST_F(OutboxTest, CertificateRevokedBeforeDeliveryIsNeverRegistered) {
  fake_->down = true;
  Issue("aa04");
  EXPECT_EQ(*outbox_->RunOnce(), 0);
  RevocationRequest r;
  r.serial = "aa04";
  r.reason = "keyCompromise";
  r.at = clock_.Now();
  ASSERT_TRUE(store_
                  ->RevokeCertificates(
                      r, {clock_.Now(), "local", "revoke", "aa04", "ok", ""})
                  .ok());
  fake_->down = false;
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(*outbox_->RunOnce(), 0);
  EXPECT_EQ(fake_->registered.count("aa04"), 0u);
  EXPECT_EQ(fake_->removed.count("aa04"), 0u);
  EXPECT_EQ(store_->GetOutboxStats(clock_.Now())->depth, 0);
}

TEST_F(OutboxTest, TerminatedSubscriberIsRemoved) {
  Issue("aa05");
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  ASSERT_TRUE(store_
                  ->SetSubscriberStatus(
                      "001010000000001", {kStatusActive}, kStatusTerminated, "",
                      {clock_.Now(), "local", "terminate", "", "ok", ""})
                  .ok());
  EXPECT_EQ(*outbox_->RunOnce(), 1);
  EXPECT_EQ(fake_->removed.count("aa05"), 1u);
}

// ---- AWS IoT ----------------------------------------------------------------

constexpr const char* kAccessKey = testing::kFakeAwsAccessKey;
constexpr const char* kSecretKey = testing::kFakeAwsSecretKey;
using testing::FakeAwsIot;

class AwsIotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("AWS_ACCESS_KEY_ID", kAccessKey, 1);
    setenv("AWS_SECRET_ACCESS_KEY", kSecretKey, 1);
    unsetenv("AWS_SESSION_TOKEN");
  }
  std::unique_ptr<Registry> Adapter(const std::string& extra = "") {
    auto url = ParseRegistryUrl(
        absl::StrCat("aws-iot://eu-west-1?policy=device%20policy&thing=cam-",
                     "%23%7Bdevice_id%7D&endpoint=", fake_.url(), extra));
    EXPECT_TRUE(url.ok()) << url.status();
    auto r = NewRegistry(*url, Clock::Real());
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(*r);
  }
  FakeAwsIot fake_;
};

TEST_F(AwsIotTest, RegistersWithTheDocumentedCallsInOrder) {
  auto aws = Adapter();
  EXPECT_EQ(aws->DefaultThingTemplate(), "cam-#{device_id}");
  DeviceRegistration d;
  d.imsi = "001010000000001";
  d.device_id = "001010000000001";
  d.thing = "cam-001010000000001";
  d.cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  auto r = aws->Register(d);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fake_.bad_signatures(), 0);
  auto calls = fake_.calls();
  ASSERT_EQ(calls.size(), 4u);
  const std::string id = HexEncode(Sha256(ToBytes(d.cert_pem)));
  const std::string arn = "arn:aws:iot:eu-west-1:123456789012:cert/" + id;
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].path, "/certificate/register-no-ca");
  EXPECT_EQ(
      nlohmann::json::parse(calls[0].body),
      nlohmann::json({{"certificatePem", d.cert_pem}, {"status", "ACTIVE"}}));
  EXPECT_EQ(calls[1].method, "POST");
  EXPECT_EQ(calls[1].path, "/things/cam-001010000000001");
  EXPECT_EQ(calls[2].method, "PUT");
  EXPECT_EQ(calls[2].path, "/target-policies/device policy");
  EXPECT_EQ(nlohmann::json::parse(calls[2].body),
            nlohmann::json({{"target", arn}}));
  EXPECT_EQ(calls[3].method, "PUT");
  EXPECT_EQ(calls[3].path, "/things/cam-001010000000001/principals");
  EXPECT_EQ(calls[3].principal, arn);
  nlohmann::json answer = nlohmann::json::parse(*r);
  EXPECT_EQ(answer["certificateId"], id);

  // A retry (after a crash) is harmless: 409s count as success.
  auto again = aws->Register(d);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(nlohmann::json::parse(*again)["certificateArn"], arn);

  // Revocation deactivates the certificate and detaches it; the thing
  // stays while another valid certificate of the device uses it.
  DeviceRegistration other = d;
  other.serial = "02";
  size_t before = fake_.calls().size();
  ASSERT_TRUE(aws->Remove(d, *r, {other}).ok());
  calls = fake_.calls();
  ASSERT_EQ(calls.size(), before + 2);
  EXPECT_EQ(calls[before].method, "PUT");
  EXPECT_EQ(calls[before].path, "/certificates/" + id);
  EXPECT_EQ(calls[before].new_status, "INACTIVE");
  EXPECT_EQ(calls[before + 1].method, "DELETE");
  EXPECT_EQ(calls[before + 1].path, "/things/cam-001010000000001/principals");
  EXPECT_EQ(calls[before + 1].principal, arn);
  // The last certificate takes the thing with it.
  before = calls.size();
  ASSERT_TRUE(aws->Remove(d, *r, {}).ok());
  calls = fake_.calls();
  ASSERT_EQ(calls.size(), before + 3);
  EXPECT_EQ(calls[before + 1].path, "/things/cam-001010000000001/principals");
  EXPECT_EQ(calls[before + 2].method, "DELETE");
  EXPECT_EQ(calls[before + 2].path, "/things/cam-001010000000001");
  EXPECT_EQ(fake_.bad_signatures(), 0);
}

TEST_F(AwsIotTest, SessionTokenIsSignedAndWrongSecretIsRefused) {
  setenv("AWS_SECRET_ACCESS_KEY", "wrong", 1);
  auto aws = Adapter();
  DeviceRegistration d;
  d.thing = "t";
  d.cert_pem = "x";
  auto r = aws->Register(d);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(fake_.bad_signatures(), 1);
  unsetenv("AWS_ACCESS_KEY_ID");
  EXPECT_EQ(aws->Register(d).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Through the outbox: registered once, deactivated after revocation.
TEST_F(AwsIotTest, OutboxRegistersAndRevokesThroughAws) {
  const std::string dir = MakeTempDir();
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  DeterministicRandom random(3);
  auto store = SqliteStore::Open(dir + "/s.db", clock);
  ASSERT_TRUE(store.ok());
  auto import = (*store)->BeginImport();
  NewSubscriber sub;
  sub.imsi = "001010000000009";
  sub.sealed_keys = Bytes(48, 1);
  sub.amf = {0x80, 0};
  ASSERT_TRUE((*import)->Add(sub).ok());
  ASSERT_TRUE((*import)->Commit().ok());
  std::vector<std::unique_ptr<Registry>> regs;
  regs.push_back(Adapter());
  RegistryOutbox outbox(**store, std::move(regs), nullptr, clock, random);
  CertificateRecord c;
  c.serial = "bb01";
  c.imsi = sub.imsi;
  c.device_id = sub.imsi;
  c.der = Bytes(4, 1);
  c.issued_at = clock.Now();
  c.not_before = c.issued_at;
  c.not_after = c.issued_at + absl::Hours(1);
  DeviceRegistration d;
  d.serial = c.serial;
  d.imsi = c.imsi;
  d.device_id = c.device_id;
  d.thing = "cam-" + c.device_id;
  d.cert_pem = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
  RegistrationIntent i;
  i.registry = "aws-iot";
  i.kind = "register";
  i.serial = c.serial;
  i.imsi = c.imsi;
  i.device_id = c.device_id;
  i.payload = d.ToJson();
  i.created_at = clock.Now();
  i.next_attempt_at = clock.Now();
  ASSERT_TRUE(
      (*store)
          ->RecordIssuanceWithIntents(
              c, {clock.Now(), c.imsi, "bootstrap", c.imsi, "ok", ""}, {i})
          .ok());
  EXPECT_EQ(*outbox.RunOnce(), 1);
  EXPECT_EQ(*outbox.RunOnce(), 0);
  EXPECT_EQ(fake_.calls().size(), 4u);
  RevocationRequest r;
  r.serial = c.serial;
  r.reason = "keyCompromise";
  r.at = clock.Now();
  ASSERT_TRUE((*store)
                  ->RevokeCertificates(
                      r, {clock.Now(), "local", "revoke", c.serial, "ok", ""})
                  .ok());
  EXPECT_EQ(*outbox.RunOnce(), 1);
  auto calls = fake_.calls();
  ASSERT_EQ(calls.size(), 7u);  // deactivate, detach, delete the thing
  const std::string id = HexEncode(Sha256(ToBytes(d.cert_pem)));
  EXPECT_EQ(calls[4].method, "PUT");
  EXPECT_EQ(calls[4].path, "/certificates/" + id);
  EXPECT_EQ(calls[4].new_status, "INACTIVE");
  EXPECT_EQ(fake_.bad_signatures(), 0);
  store->reset();
  RemoveTree(dir);
}

TEST(AwsIotDown, UnreachableEndpointIsUnavailable) {
  setenv("AWS_ACCESS_KEY_ID", kAccessKey, 1);
  setenv("AWS_SECRET_ACCESS_KEY", kSecretKey, 1);
  auto url = ParseRegistryUrl(
      "aws-iot://eu-west-1?policy=p&endpoint=http%3A%2F%2F127.0.0.1%3A1");
  ASSERT_TRUE(url.ok()) << url.status();
  auto aws = NewRegistry(*url, Clock::Real());
  ASSERT_TRUE(aws.ok());
  DeviceRegistration d;
  d.thing = "t";
  EXPECT_EQ((*aws)->Register(d).status().code(),
            absl::StatusCode::kUnavailable);
}

// ---- the issue hook ---------------------------------------------------------

class HookServer {
 public:
  explicit HookServer(
      std::function<void(const httplib::Request&, httplib::Response&)> fn) {
    server_.Post("/hook", fn);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~HookServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/hook");
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

IssuanceContext HookContext() {
  IssuanceContext c;
  c.action = "bootstrap";
  c.values.device_id = "dev-1";
  c.values.imsi = "001010000000001";
  c.values.imei = "490154203237518";
  c.values.group = "cams";
  static EVP_PKEY* const key = GenerateP256Key().release();
  c.public_key = key;
  return c;
}

const Bytes kHookSecret = ToBytes("hook secret");

std::unique_ptr<IssueHook> MakeHook(const std::string& url,
                                    absl::Duration timeout = absl::Seconds(5),
                                    bool allow_on_timeout = false) {
  IssueHookOptions o;
  o.url = url;
  o.secret = kHookSecret;
  o.timeout = timeout;
  o.allow_on_timeout = allow_on_timeout;
  auto h = IssueHook::Create(o, Clock::Real());
  EXPECT_TRUE(h.ok()) << h.status();
  return std::move(*h);
}

TEST(IssueHook, SignsTheEventAndPassesRegistryDetails) {
  std::atomic<bool> verified{false};
  HookServer server([&](const httplib::Request& req, httplib::Response& res) {
    std::string ts = req.get_header_value("X-Simprov-Timestamp");
    std::string sig = req.get_header_value("X-Simprov-Signature");
    Bytes mac = HmacSha256(kHookSecret, ToBytes(ts + "." + req.body));
    verified = sig == "v1=" + HexEncode(mac);
    nlohmann::json e = nlohmann::json::parse(req.body);
    if (e["imsi"] != "001010000000001" || e["imei"] != "490154203237518" ||
        e["group"] != "cams" || e["device_id"] != "dev-1" ||
        e["public_key_pem"] != PublicKeyPem(HookContext().public_key) ||
        !absl::StartsWith(e["public_key_pem"].get<std::string>(),
                          "-----BEGIN PUBLIC KEY-----\n")) {
      res.status = 400;
      return;
    }
    res.set_content(R"({"allow": true, "thing": "custom-thing"})",
                    "application/json");
  });
  auto hook = MakeHook(server.url());
  auto r = hook->Call(HookContext());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(verified);
  EXPECT_EQ(nlohmann::json::parse(*r)["thing"], "custom-thing");
}

TEST(IssueHook, RefusalIsPermissionDenied) {
  HookServer server([](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"allow": false, "reason": "not in inventory"})",
                    "application/json");
  });
  auto r = MakeHook(server.url())->Call(HookContext());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("not in inventory"), std::string::npos);
  HookServer forbidden([](const httplib::Request&, httplib::Response& res) {
    res.status = 403;
  });
  EXPECT_EQ(MakeHook(forbidden.url())->Call(HookContext()).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(IssueHook, TimeoutRefusesUnlessConfiguredToAllow) {
  HookServer server([](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    res.set_content("{}", "application/json");
  });
  absl::Time start = absl::Now();
  auto r = MakeHook(server.url(), absl::Milliseconds(300))->Call(HookContext());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1.2));
  auto allowed = MakeHook(server.url(), absl::Milliseconds(300), true)
                     ->Call(HookContext());
  EXPECT_TRUE(allowed.ok()) << allowed.status();
}

TEST(IssueHook, PlainHttpOnlyOnLoopback) {
  IssueHookOptions o;
  o.secret = kHookSecret;
  o.url = "http://hooks.example.com/x";
  EXPECT_EQ(IssueHook::Create(o, Clock::Real()).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.url = "https://hooks.example.com/x";
  EXPECT_TRUE(IssueHook::Create(o, Clock::Real()).ok());
  o.secret.clear();
  EXPECT_FALSE(IssueHook::Create(o, Clock::Real()).ok());
}

}  // namespace
}  // namespace simprov
