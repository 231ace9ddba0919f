// Registries end to end with a real Eclipse Mosquitto started per test
// (test/integration/mosquitto_testing.h). The real simprov-broker, simprov
// and simprov-agent binaries do the rest.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "test/integration/mosquitto_testing.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using RegistryIntegrationTest = ::simprov::testing::MosquittoTest;
using ::simprov::testing::BackgroundProcess;
using ::simprov::testing::BrokerProcess;
using ::simprov::testing::kAdminPass;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WaitFor;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

TEST_F(RegistryIntegrationTest,
       ProvisionedDevicePublishesOnItsOwnTopicOnlyUntilRevoked) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  StartMosquitto(broker->data_dir());
  TestSim sim = RandomSim("001010000005001");
  TestSim other = RandomSim("001010000005002");
  broker->Import({sim, other});
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(
      WaitFor([&] { return Pending(*broker).empty(); }, absl::Seconds(15)));
  r = broker->Cli({"devices", "show", sim.imsi});
  EXPECT_TRUE(absl::StrContains(r.out, "registry:    mosquitto:registered\n"))
      << r.out;
  // bootstrap.json carries the connection details.
  nlohmann::json j = BootstrapJson(out);
  ASSERT_TRUE(j.contains("registry")) << j.dump();
  const nlohmann::json& reg = j["registry"]["registries"][0];
  EXPECT_EQ(reg["host"], "127.0.0.1");
  EXPECT_EQ(reg["port"], device_port_);
  EXPECT_EQ(reg["username"], sim.imsi);
  EXPECT_EQ(reg["topics"][0], "devices/" + sim.imsi + "/#");
  EXPECT_EQ(reg["server_ca"], ReadFileOrEmpty(dir_ + "/mq/ca.pem"));

  const std::string own = "devices/" + sim.imsi + "/telemetry";
  EXPECT_EQ(Observe(out, own, "hello"), own + " hello\n")
      << last_publish_.err << ReadFileOrEmpty(dir_ + "/mq/mosquitto.log");
  // Another device's topic: Mosquitto drops it.
  EXPECT_EQ(Observe(out, "devices/" + other.imsi + "/telemetry", "intrude"),
            "");

  r = broker->Cli({"devices", "revoke", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The removal is delivered (deleteClient): nothing it sends arrives.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto clients = DynsecClients();
        return std::find(clients.begin(), clients.end(), sim.imsi) ==
               clients.end();
      },
      absl::Seconds(15)));
  EXPECT_TRUE(
      WaitFor([&] { return Pending(*broker).empty(); }, absl::Seconds(10)))
      << broker->log();
  r = broker->Cli({"devices", "show", sim.imsi, "--json"});
  EXPECT_EQ(
      nlohmann::json::parse(r.out, nullptr, false).value("registry_status", ""),
      "mosquitto:removed")
      << r.out;
  EXPECT_EQ(Observe(out, own, "after-revoke"), "");
}

// devices replace: the new SIM's client gets the device's topics (built
// on #{device_id}), the old SIM's client is deleted.
TEST_F(RegistryIntegrationTest, ReplacementSimInheritsTheDevicesTopics) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  StartMosquitto(broker->data_dir());
  TestSim old_sim = RandomSim("001010000005011");
  TestSim new_sim = RandomSim("001010000005012");
  broker->Import({old_sim, new_sim});
  const std::string old_out = dir_ + "/old";
  ASSERT_EQ(broker->Bootstrap(WriteSoftSim(dir_, old_sim), old_out).exit_code,
            0);
  ASSERT_TRUE(
      WaitFor([&] { return Pending(*broker).empty(); }, absl::Seconds(15)));

  ProcessResult r =
      broker->Cli({"devices", "replace", old_sim.imsi, new_sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string new_out = dir_ + "/new";
  r = broker->Bootstrap(WriteSoftSim(dir_, new_sim), new_out,
                        {"--wait-registered=30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(BootstrapJson(new_out)["device_id"], old_sim.imsi);
  ASSERT_TRUE(
      WaitFor([&] { return Pending(*broker).empty(); }, absl::Seconds(15)));
  auto clients = DynsecClients();
  EXPECT_NE(std::find(clients.begin(), clients.end(), new_sim.imsi),
            clients.end());
  EXPECT_EQ(std::find(clients.begin(), clients.end(), old_sim.imsi),
            clients.end());

  // The new SIM publishes on the device's topic, not on one of its IMSI.
  const std::string device_topic = "devices/" + old_sim.imsi + "/up";
  EXPECT_EQ(Observe(new_out, device_topic, "from-new-sim"),
            device_topic + " from-new-sim\n")
      << last_publish_.err;
  EXPECT_EQ(
      Observe(new_out, "devices/" + new_sim.imsi + "/up", "own-imsi-topic"),
      "");
  // The old SIM's credentials no longer get anything through.
  EXPECT_EQ(Observe(old_out, device_topic, "from-old-sim"), "");
}

TEST_F(RegistryIntegrationTest, RegistryDownAtProvisioningIsRegisteredLater) {
  auto broker = StartBroker();  // Mosquitto is not running: starts anyway
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000005003");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(BootstrapJson(out)["registry"]["status"], "pending");
  // `registry pending` says what waits and why.
  std::vector<nlohmann::json> pending;
  ASSERT_TRUE(WaitFor(
      [&] {
        pending = Pending(*broker);
        return pending.size() == 1 &&
               !pending[0]["last_error"].get<std::string>().empty();
      },
      absl::Seconds(10)));
  EXPECT_EQ(pending[0]["imsi"], sim.imsi);
  EXPECT_EQ(pending[0]["kind"], "register");
  EXPECT_EQ(pending[0]["registry"], "mosquitto");
  EXPECT_TRUE(absl::StrContains(pending[0]["last_error"].get<std::string>(),
                                "cannot connect"))
      << pending[0].dump();
  r = broker->Cli({"registry", "pending"});
  EXPECT_TRUE(absl::StrContains(r.out, "cannot connect")) << r.out;
  r = broker->Cli({"devices", "list"});
  EXPECT_TRUE(absl::StrContains(r.out, " mosquitto:pending(")) << r.out;

  // The agent can wait for it: not within 2 s while Mosquitto is down.
  const std::string sim_path = WriteSoftSim(dir_, sim);
  r = broker->Bootstrap(sim_path, out, {"--wait-registered=2s"});
  EXPECT_EQ(r.exit_code, 4) << r.err;  // kExitUnreachable
  EXPECT_TRUE(absl::StrContains(r.err, "not registered within")) << r.err;

  StartMosquitto(broker->data_dir());
  r = broker->Bootstrap(sim_path, out, {"--wait-registered=40s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "registry: registered")) << r.out;
  // bootstrap.json follows.
  EXPECT_EQ(BootstrapJson(out)["registry"]["status"], "registered");
  EXPECT_TRUE(Pending(*broker).empty());
  const std::string own = "devices/" + sim.imsi + "/up";
  EXPECT_EQ(Observe(out, own, "late"), own + " late\n");
}

TEST_F(RegistryIntegrationTest, SigkillMidDeliveriesRegistersEachCertOnce) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  std::vector<TestSim> sims;
  for (int i = 0; i < 6; ++i) {
    sims.push_back(RandomSim(absl::StrCat("00101000000510", i)));
  }
  broker->Import(sims);
  for (const TestSim& s : sims) {
    ProcessResult r =
        broker->Bootstrap(WriteSoftSim(dir_, s), dir_ + "/dev-" + s.imsi);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(Pending(*broker).size(), sims.size());
  StartMosquitto(broker->data_dir());
  // Kill the broker as soon as the first delivery has landed.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& c : DynsecClients()) {
          if (absl::StartsWith(c, "00101")) return true;
        }
        return false;
      },
      absl::Seconds(40)));
  broker->Kill();
  broker = BrokerProcess::Start(dir_ + "/broker",
                                {"--registry-file", dir_ + "/registries"});
  ASSERT_NE(broker, nullptr);
  ASSERT_TRUE(
      WaitFor([&] { return Pending(*broker).empty(); }, absl::Seconds(40)))
      << broker->Cli({"registry", "pending"}).out << broker->log();
  std::vector<std::string> clients = DynsecClients();
  for (const TestSim& s : sims) {
    EXPECT_EQ(std::count(clients.begin(), clients.end(), s.imsi), 1) << s.imsi;
  }
  // Exactly one delivered registration per certificate.
  ProcessResult q = RunProcess(
      {"/usr/bin/sqlite3", dir_ + "/broker/simprov.db",
       "SELECT COUNT(*), COUNT(DISTINCT serial) FROM registry_outbox WHERE "
       "kind = 'register' AND state = 'done'"});
  EXPECT_EQ(q.out, absl::StrCat(sims.size(), "|", sims.size(), "\n")) << q.err;
}

TEST_F(RegistryIntegrationTest, SyncGroupFailsFastWhenTheRegistryIsDown) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  WriteFileOrDie(dir_ + "/groups.json",
                 R"({"groups": [{"name": "sync-cams", "registration": "sync",
                     "registries": [{"target": "mosquitto",
                                     "topics": ["cams/#{device_id}/#"]}]}]})");
  ProcessResult r = broker->Cli({"groups", "apply", dir_ + "/groups.json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  TestSim sim = RandomSim("001010000005201");
  broker->Import({sim});
  r = broker->Cli({"subscribers", "set-group", sim.imsi, "sync-cams"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const std::string out = dir_ + "/device";
  r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "unavailable")) << r.err;
  EXPECT_FALSE(PathExists(out + "/device.crt"));
  EXPECT_TRUE(Pending(*broker).empty());  // cancelled, nothing waits

  StartMosquitto(broker->data_dir());
  r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = BootstrapJson(out);
  EXPECT_EQ(j["registry"]["status"], "registered") << j.dump();
  EXPECT_EQ(j["registry"]["registries"][0]["topics"][0],
            "cams/" + sim.imsi + "/#");
}

// The issue hook through the real broker and agent: a refusal means no
// certificate at all; an answer may name the device's thing.
TEST_F(RegistryIntegrationTest, IssueHookRefusalMeansNoCertificate) {
  std::atomic<bool> allow{false};
  std::atomic<int> calls{0};
  httplib::Server hook;
  hook.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    ++calls;
    std::string ts = req.get_header_value("X-Simprov-Timestamp");
    Bytes mac = HmacSha256(ToBytes("s3cret"), ToBytes(ts + "." + req.body));
    if (req.get_header_value("X-Simprov-Signature") != "v1=" + HexEncode(mac)) {
      res.status = 401;
      return;
    }
    res.set_content(allow ? R"({"allow": true, "thing": "from-hook"})"
                          : R"({"allow": false, "reason": "unknown serial"})",
                    "application/json");
  });
  int port = hook.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { hook.listen_after_bind(); });
  WriteFileOrDie(dir_ + "/hook-secret", "s3cret\n");
  setenv("SIMPROV_TEST_MQ_PASS", kAdminPass, 1);
  auto broker = BrokerProcess::Start(
      dir_ + "/broker", {"--registry", RegistryUrl(), "--issue-hook",
                         absl::StrCat("http://127.0.0.1:", port, "/hook"),
                         "--issue-hook-secret-file", dir_ + "/hook-secret"});
  ASSERT_NE(broker, nullptr);
  TestSim sim = RandomSim("001010000005301");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  EXPECT_EQ(r.exit_code, 3) << r.err;  // kExitRefused
  EXPECT_TRUE(absl::StrContains(r.err, "unknown serial")) << r.err;
  EXPECT_FALSE(PathExists(out + "/device.crt"));
  ProcessResult q = RunProcess({"/usr/bin/sqlite3", dir_ + "/broker/simprov.db",
                                "SELECT COUNT(*) FROM certificates"});
  EXPECT_EQ(q.out, "0\n") << q.err;

  allow = true;
  r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(BootstrapJson(out)["registry"]["registries"][0]["thing"],
            "from-hook");
  EXPECT_EQ(calls, 2);
  hook.stop();
  serve.join();
}

}  // namespace
}  // namespace simprov
