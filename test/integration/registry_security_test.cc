// Registry attacks and their fixes, through the real binaries and a real
// Mosquitto (test/integration/mosquitto_testing.h): a narrowed group
// reaches the device's role, one certificate's removal leaves what another
// still needs, the issue hook's address and answer are checked, the dynsec
// password never crosses the network in clear text unasked, and a revoked
// certificate gets no registration status.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "test/integration/mosquitto_testing.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::kAdminPass;
using ::simprov::testing::kAgentBin;
using ::simprov::testing::kBrokerBin;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RunProcess;
using ::simprov::testing::TestSim;
using ::simprov::testing::WaitFor;
using ::simprov::testing::WriteFileOrDie;
using ::simprov::testing::WriteSoftSim;

class RegistrySecurityTest : public ::simprov::testing::MosquittoTest {
 protected:
  ProcessResult ApplyGroups(const BrokerProcess& b, const std::string& json) {
    const std::string path = dir_ + "/groups.json";
    WriteFileOrDie(path, json);
    return b.Cli({"groups", "apply", path});
  }

  // A group "cams" registered with Mosquitto on `topic`.
  std::string CamsGroup(const std::string& topic, bool any = false) {
    return absl::StrCat(
        R"({"groups": [{"name": "cams", "registries": [{"target": "mosquitto",)",
        R"( "topics": [")", topic, R"("])",
        any ? R"(, "wildcards": "any")" : "", "}]}]}");
  }

  ProcessResult Renew(const BrokerProcess& b, const std::string& out) {
    return RunProcess(
        {kAgentBin, "renew", "--broker", b.address(), "--out", out});
  }

  // The serial the agent printed ("  serial:   HEX").
  static std::string SerialOf(const ProcessResult& r) {
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (absl::ConsumePrefix(&line, "serial:")) {
        return std::string(absl::StripAsciiWhitespace(line));
      }
    }
    return "";
  }

  std::string Sql(const BrokerProcess& b, const std::string& query) {
    return RunProcess({"/usr/bin/sqlite3", b.data_dir() + "/simprov.db", query})
        .out;
  }

  // Waits until the removal of `serial` is delivered.
  bool Removed(const BrokerProcess& b, const std::string& serial) {
    return WaitFor(
        [&] {
          return Sql(b, absl::StrCat("SELECT state FROM registry_outbox WHERE "
                                     "kind = 'remove' AND serial = '",
                                     serial, "'")) == "done\n";
        },
        absl::Seconds(20));
  }

  bool Has(const std::vector<std::string>& list, const std::string& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  }

  // The lines of the broker's stderr that are its own error messages (the
  // others are log lines).
  static std::vector<std::string> ErrorLines(const std::string& err) {
    std::vector<std::string> out;
    for (absl::string_view l : absl::StrSplit(err, '\n', absl::SkipEmpty())) {
      if (absl::StartsWith(l, "simprov-broker: ")) out.emplace_back(l);
    }
    return out;
  }

  // Runs the broker with `args` until it exits (it should refuse to start).
  ProcessResult RunBroker(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        kBrokerBin, "--data-dir", dir_ + "/refused", "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, absl::Seconds(30));
  }
};

// A group narrowed from devices/# to the device's own subtree: `groups
// apply` re-registers the device, and its Mosquitto role holds exactly the
// new ACLs; a renewal repairs a role changed behind simprov's back.
TEST_F(RegistrySecurityTest, NarrowedTopicsReachTheDevicesRole) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  StartMosquitto(broker->data_dir());
  TestSim sim = RandomSim("001010000005401");
  TestSim other = RandomSim("001010000005402");
  broker->Import({sim, other});
  ProcessResult r = ApplyGroups(*broker, CamsGroup("devices/#", true));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(
      broker->Cli({"subscribers", "set-group", sim.imsi, "cams"}).exit_code, 0);
  const std::string out = dir_ + "/device";
  r = broker->Bootstrap(WriteSoftSim(dir_, sim), out,
                        {"--wait-registered=30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string role = "simprov-" + sim.imsi;
  EXPECT_EQ(RoleAcls(role), DeviceAcls("devices/#"));
  const std::string others = "devices/" + other.imsi + "/cmd";
  EXPECT_EQ(Observe(out, others, "broad"), others + " broad\n")
      << last_publish_.err;

  const std::string narrow = "devices/" + sim.imsi + "/#";
  r = ApplyGroups(*broker, CamsGroup("devices/#{device_id}/#"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitFor([&] { return RoleAcls(role) == DeviceAcls(narrow); },
                      absl::Seconds(20)))
      << absl::StrJoin(RoleAcls(role), "; ") << broker->log();
  EXPECT_TRUE(
      WaitFor([&] { return Pending(*broker).empty(); }, absl::Seconds(10)));
  EXPECT_EQ(Observe(out, others, "narrow"), "");
  const std::string own = "devices/" + sim.imsi + "/up";
  EXPECT_EQ(Observe(out, own, "own"), own + " own\n") << last_publish_.err;
  // What the device is told follows (RegistrationStatus, bootstrap.json).
  r = broker->Bootstrap(WriteSoftSim(dir_, sim), out,
                        {"--wait-registered=20s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = BootstrapJson(out);
  EXPECT_EQ(j["registry"]["status"], "registered") << j.dump();
  EXPECT_EQ(j["registry"]["registries"][0]["topics"],
            nlohmann::json::array({narrow}));
  // The same groups again: nothing to do.
  r = ApplyGroups(*broker, CamsGroup("devices/#{device_id}/#"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Sql(*broker,
                "SELECT kind, state, attempts FROM registry_outbox WHERE "
                "kind = 'update'"),
            "update|done|1\n");

  // A role widened behind simprov's back is brought back by a renewal.
  ProcessResult ctl =
      Dynsec({"addRoleACL", role, "publishClientSend", "stale/#", "allow"});
  ASSERT_EQ(ctl.exit_code, 0) << ctl.err << ctl.out;
  ASSERT_EQ(RoleAcls(role).size(), 5u);
  r = Renew(*broker, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitFor([&] { return RoleAcls(role) == DeviceAcls(narrow); },
                      absl::Seconds(20)))
      << absl::StrJoin(RoleAcls(role), "; ");
}

// A wildcard outside the device's subtree needs the group's consent.
TEST_F(RegistrySecurityTest, GroupTopicWildcardsStayInTheDevicesSubtree) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  for (const std::string topic : {"devices/#", "devices/+/cmd", "#",
                                  "cams/#{group}/#", "devices/#{device_id}#"}) {
    ProcessResult r = ApplyGroups(*broker, CamsGroup(topic));
    EXPECT_EQ(r.exit_code, 2) << topic << ": " << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "registries.topics")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  for (const std::string topic :
       {"devices/#{device_id}/#", "a/#{imsi}/+/x", "cam-#{iccid}/#"}) {
    ProcessResult r = ApplyGroups(*broker, CamsGroup(topic));
    EXPECT_EQ(r.exit_code, 0) << topic << ": " << r.err;
  }
  ProcessResult r = ApplyGroups(*broker, CamsGroup("devices/#", true));
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// Two valid certificates of one device: revoking one leaves the Mosquitto
// client (the other still connects); revoking the last removes the client
// and the role.
TEST_F(RegistrySecurityTest, RemovalFollowsTheLastValidCertificate) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  StartMosquitto(broker->data_dir());
  TestSim sim = RandomSim("001010000005411");
  broker->Import({sim});
  const std::string first = dir_ + "/first";
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), first,
                                      {"--wait-registered=30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string serial1 = SerialOf(r);
  ASSERT_FALSE(serial1.empty()) << r.out;
  const std::string second = dir_ + "/second";
  ASSERT_EQ(RunProcess({"/bin/cp", "-a", first, second}).exit_code, 0);
  r = Renew(*broker, second);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string serial2 = SerialOf(r);
  ASSERT_FALSE(serial2.empty()) << r.out;
  ASSERT_NE(serial1, serial2);
  ASSERT_TRUE(
      WaitFor([&] { return Pending(*broker).empty(); }, absl::Seconds(20)));
  const std::string role = "simprov-" + sim.imsi;
  const std::string own = "devices/" + sim.imsi + "/up";

  // The renewal's certificate goes; the first one is still valid.
  r = broker->Cli({"devices", "revoke", "--serial", serial2});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Removed(*broker, serial2)) << broker->log();
  EXPECT_TRUE(Has(DynsecClients(), sim.imsi));
  EXPECT_TRUE(Has(DynsecRoles(), role));
  EXPECT_EQ(RoleAcls(role), DeviceAcls("devices/" + sim.imsi + "/#"));
  EXPECT_EQ(Observe(first, own, "still-here"), own + " still-here\n")
      << last_publish_.err;

  // The last one: client and role go.
  r = broker->Cli({"devices", "revoke", "--serial", serial1});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Removed(*broker, serial1)) << broker->log();
  EXPECT_FALSE(Has(DynsecClients(), sim.imsi));
  EXPECT_FALSE(Has(DynsecRoles(), role));
  EXPECT_EQ(Observe(first, own, "gone"), "");
}

TEST_F(RegistrySecurityTest, RegistrationStatusRefusesARevokedCertificate) {
  auto broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  StartMosquitto(broker->data_dir());
  TestSim sim = RandomSim("001010000005421");
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  const std::string sim_path = WriteSoftSim(dir_, sim);
  ProcessResult r = broker->Bootstrap(sim_path, out, {"--wait-registered=30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string serial = SerialOf(r);
  r = broker->Cli({"devices", "revoke", sim.imsi});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The agent's credentials look valid to it: it only asks for the status.
  r = broker->Bootstrap(sim_path, out, {"--wait-registered=3s"});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_TRUE(absl::StrContains(
      r.err, absl::StrCat("certificate ", serial, " was revoked")))
      << r.err;
}

// http:// is for loopback only, and "127.evil.example" is not loopback.
TEST_F(RegistrySecurityTest, IssueHookOverPlainHttpNeedsALoopbackAddress) {
  WriteFileOrDie(dir_ + "/hook-secret", "s3cret\n");
  for (const std::string url :
       {"http://127.evil.example/hook", "http://127.0.0.1.evil.example/hook",
        "http://127.0.0.1@evil.example/hook", "http://localhost.evil/hook"}) {
    ProcessResult r =
        RunBroker({"--issue-hook", url, "--issue-hook-secret-file",
                   dir_ + "/hook-secret"});
    EXPECT_NE(r.exit_code, 0) << url;
    const auto errors = ErrorLines(r.err);
    ASSERT_EQ(errors.size(), 1u) << r.err;
    EXPECT_TRUE(absl::StrContains(errors[0], "--issue-hook")) << url << r.err;
  }
  for (const std::string url :
       {"http://127.0.0.2:9/hook", "http://[::1]:9/hook",
        "http://localhost:9/hook", "https://hooks.example.com/hook"}) {
    auto b = BrokerProcess::Start(
        dir_ + "/ok", {"--issue-hook", url, "--issue-hook-secret-file",
                       dir_ + "/hook-secret"});
    EXPECT_NE(b, nullptr) << url;
  }
}

// The hook's answer is held to the group's rule: a "#" topic would let the
// device read and write every topic.
TEST_F(RegistrySecurityTest, IssueHookAnswerWithAWildcardTopicIsRefused) {
  std::atomic<int> answer{0};
  TestSim sim = RandomSim("001010000005431");
  httplib::Server hook;
  hook.Post("/hook", [&](const httplib::Request&, httplib::Response& res) {
    const char* answers[] = {
        R"({"allow": true, "topics": ["#"]})",
        R"({"allow": true, "topics": ["devices/+/cmd"]})",
        R"({"allow": true, "thing": "a/b"})",
    };
    if (answer < 3) {
      res.set_content(answers[answer.load()], "application/json");
    } else {
      res.set_content(nlohmann::json({{"allow", true},
                                      {"topics", {"fleet/" + sim.imsi + "/#"}}})
                          .dump(),
                      "application/json");
    }
  });
  int port = hook.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { hook.listen_after_bind(); });
  WriteFileOrDie(dir_ + "/hook-secret", "s3cret\n");
  setenv("SIMPROV_TEST_MQ_PASS", kAdminPass, 1);
  auto broker = BrokerProcess::Start(
      dir_ + "/broker", {"--registry", RegistryUrl(), "--issue-hook",
                         absl::StrCat("http://localhost:", port, "/hook"),
                         "--issue-hook-secret-file", dir_ + "/hook-secret"});
  ASSERT_NE(broker, nullptr);
  broker->Import({sim});
  const std::string out = dir_ + "/device";
  for (const char* why :
       {"topic \"#\"", "topic \"devices/+/cmd\"", "thing \"a/b\""}) {
    ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
    EXPECT_EQ(r.exit_code, 3) << r.err;  // kExitRefused
    EXPECT_TRUE(absl::StrContains(r.err, why)) << r.err;
    EXPECT_FALSE(PathExists(out + "/device.crt"));
    ++answer;
  }
  EXPECT_EQ(Sql(*broker, "SELECT COUNT(*) FROM certificates"), "0\n");
  ProcessResult r = broker->Bootstrap(WriteSoftSim(dir_, sim), out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(BootstrapJson(out)["registry"]["registries"][0]["topics"][0],
            "fleet/" + sim.imsi + "/#");
  hook.stop();
  serve.join();
}

// Without tls=1 the dynsec password is sent in clear: only to loopback,
// unless the URL says insecure=1.
TEST_F(RegistrySecurityTest, PlaintextDynsecPasswordOnlyToLoopback) {
  ProcessResult r = RunBroker(
      {"--registry", "mosquitto://admin:hunter2@mqtt.example.com:1883"});
  EXPECT_NE(r.exit_code, 0);
  const auto errors = ErrorLines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_TRUE(absl::StrContains(errors[0], "clear text to mqtt.example.com"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(errors[0], "tls=1")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "hunter2")) << r.err;
  r = RunBroker({"--registry", "mosquitto://admin:hunter2@127.evil.example"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "clear text")) << r.err;

  auto b = BrokerProcess::Start(
      dir_ + "/insecure",
      {"--registry",
       "mosquitto://admin:hunter2@mqtt.example.com:1883?insecure=1"});
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(absl::StrContains(b->log(), "insecure=1")) << b->log();
  EXPECT_FALSE(absl::StrContains(b->log(), "hunter2"));
  for (const std::string url :
       {"mosquitto://admin:x@mqtt.example.com:8883?tls=1",
        "mosquitto://admin:x@[::1]:1883", "mosquitto://admin:x@localhost",
        "mosquitto://admin@mqtt.example.com:1883"}) {
    EXPECT_NE(BrokerProcess::Start(dir_ + "/ok", {"--registry", url}), nullptr)
        << url;
  }
}

}  // namespace
}  // namespace simprov
