// A real Eclipse Mosquitto for registry tests, started per test: the
// dynamic-security plugin, an mTLS listener that trusts the simprov
// broker's CA with use_identity_as_username, and a password listener for
// the broker's admin user and an observer.
#ifndef SIMPROV_TEST_INTEGRATION_MOSQUITTO_TESTING_H_
#define SIMPROV_TEST_INTEGRATION_MOSQUITTO_TESTING_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/atomic_file.h"
#include "test/testing/broker_fixture.h"

namespace simprov::testing {

inline const std::string kMosquitto = "/usr/sbin/mosquitto";
inline const std::string kMosquittoCtrl = "/usr/bin/mosquitto_ctrl";
inline const std::string kMosquittoPub = "/usr/bin/mosquitto_pub";
inline const std::string kMosquittoSub = "/usr/bin/mosquitto_sub";
inline const std::string kMosquittoRr = "/usr/bin/mosquitto_rr";
inline const std::string kOpenssl = "/usr/bin/openssl";
inline const std::string kDynsec =
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
inline constexpr char kAdminPass[] = "admin-pass-for-tests";
inline constexpr char kObserverPass[] = "observer-pass";

inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

inline bool PortOpen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

template <typename Pred>
inline bool WaitFor(Pred p, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (p()) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return p();
}

class MosquittoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    control_port_ = FreePort();
    device_port_ = FreePort();
    while (device_port_ == control_port_) device_port_ = FreePort();
    MakeServerCert();
  }
  void TearDown() override {
    mosquitto_.reset();
    RemoveTree(dir_);
  }

  // A CA of the Mosquitto server's own and a server certificate for
  // 127.0.0.1 (devices get this CA in bootstrap.json as server_ca).
  void MakeServerCert() {
    const std::string d = dir_ + "/mq";
    ASSERT_EQ(mkdir(d.c_str(), 0700), 0);
    ASSERT_EQ(RunProcess({kOpenssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                          d + "/ca.key", "-out", d + "/ca.pem", "-days", "2",
                          "-subj", "/CN=mosquitto test CA"})
                  .exit_code,
              0);
    WriteFileOrDie(d + "/ext.cnf",
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    ASSERT_EQ(RunProcess({kOpenssl, "req", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                          d + "/server.key", "-out", d + "/server.csr", "-subj",
                          "/CN=127.0.0.1"})
                  .exit_code,
              0);
    ASSERT_EQ(RunProcess({kOpenssl, "x509", "-req", "-in", d + "/server.csr",
                          "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
                          "-CAcreateserial", "-out", d + "/server.pem", "-days",
                          "2", "-extfile", d + "/ext.cnf"})
                  .exit_code,
              0);
  }

  std::string RegistryUrl() const {
    return absl::StrCat("mosquitto://admin@127.0.0.1:", control_port_,
                        "?password_env=SIMPROV_TEST_MQ_PASS&device_port=",
                        device_port_, "&server_ca=", dir_, "/mq/ca.pem");
  }

  std::unique_ptr<BrokerProcess> StartBroker() {
    setenv("SIMPROV_TEST_MQ_PASS", kAdminPass, 1);
    // The URL goes through a file: no password on the command line either.
    WriteFileOrDie(dir_ + "/registries",
                   "# test registry\n" + RegistryUrl() + "\n");
    auto b = BrokerProcess::Start(dir_ + "/broker",
                                  {"--registry-file", dir_ + "/registries"});
    EXPECT_NE(b, nullptr);
    return b;
  }

  // Starts Mosquitto trusting the simprov broker's CA (DIR/ca.pem) on the
  // device listener. The dynsec config is made once and kept across
  // restarts (it is Mosquitto's database).
  void StartMosquitto(const std::string& broker_dir) {
    const std::string d = dir_ + "/mq";
    const std::string dynsec = d + "/dynsec.json";
    const bool fresh = !PathExists(dynsec);
    if (fresh) {
      ProcessResult r = RunProcess(
          {kMosquittoCtrl, "dynsec", "init", dynsec, "admin", kAdminPass});
      ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    }
    WriteFileOrDie(
        d + "/mosquitto.conf",
        absl::StrCat(
            // As root Mosquitto would drop to user "mosquitto", which
            // cannot read the test's private files.
            getuid() == 0 ? "user root\n" : "", "per_listener_settings false\n",
            "allow_anonymous false\n", "persistence false\n", "plugin ",
            kDynsec, "\n", "plugin_opt_config_file ", dynsec, "\n",
            "log_dest stderr\n", "log_type error\nlog_type warning\n",
            "log_type notice\n", "listener ", control_port_, " 127.0.0.1\n",
            "listener ", device_port_, " 127.0.0.1\n", "cafile ", broker_dir,
            "/ca.pem\n", "certfile ", d, "/server.pem\n", "keyfile ", d,
            "/server.key\n", "require_certificate true\n",
            "use_identity_as_username true\n"));
    mosquitto_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{kMosquitto, "-c", d + "/mosquitto.conf"},
        d + "/mosquitto.log");
    ASSERT_TRUE(
        WaitFor([&] { return PortOpen(control_port_); }, absl::Seconds(10)))
        << ReadFileOrEmpty(d + "/mosquitto.log");
    if (fresh) {
      // An observer that may read every device topic.
      for (std::vector<std::string> args :
           std::vector<std::vector<std::string>>{
               {"createClient", "observer", "-p", kObserverPass},
               {"createRole", "observer"},
               {"addRoleACL", "observer", "subscribePattern", "devices/#",
                "allow"},
               {"addClientRole", "observer", "observer"}}) {
        std::vector<std::string> argv = {kMosquittoCtrl,
                                         "-h",
                                         "127.0.0.1",
                                         "-p",
                                         absl::StrCat(control_port_),
                                         "-u",
                                         "admin",
                                         "-P",
                                         kAdminPass,
                                         "dynsec"};
        argv.insert(argv.end(), args.begin(), args.end());
        ProcessResult r = RunProcess(argv, absl::Seconds(20));
        ASSERT_EQ(r.exit_code, 0) << args[0] << ": " << r.err << r.out;
      }
    }
  }

  // The dynsec clients' usernames.
  std::vector<std::string> DynsecClients() {
    ProcessResult r = RunProcess(
        {kMosquittoCtrl, "-h", "127.0.0.1", "-p", absl::StrCat(control_port_),
         "-u", "admin", "-P", kAdminPass, "dynsec", "listClients"},
        absl::Seconds(20));
    std::vector<std::string> out;
    for (absl::string_view l : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      out.emplace_back(absl::StripAsciiWhitespace(l));
    }
    return out;
  }

  // Runs `mosquitto_ctrl ... dynsec ARGS` as the admin.
  ProcessResult Dynsec(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kMosquittoCtrl,
                                     "-h",
                                     "127.0.0.1",
                                     "-p",
                                     absl::StrCat(control_port_),
                                     "-u",
                                     "admin",
                                     "-P",
                                     kAdminPass,
                                     "dynsec"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, absl::Seconds(20));
  }

  // The dynsec roles' names.
  std::vector<std::string> DynsecRoles() {
    ProcessResult r = Dynsec({"listRoles"});
    std::vector<std::string> out;
    for (absl::string_view l : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      out.emplace_back(absl::StripAsciiWhitespace(l));
    }
    return out;
  }

  // A role's ACLs as "ACLTYPE TOPIC" lines, sorted, read over the control
  // API (getRole) with mosquitto_rr, as JSON; {"error"} if there is none.
  std::vector<std::string> RoleAcls(const std::string& role) {
    ProcessResult r = RunProcess(
        {kMosquittoRr, "-h", "127.0.0.1", "-p", absl::StrCat(control_port_),
         "-u", "admin", "-P", kAdminPass, "-t", "$CONTROL/dynamic-security/v1",
         "-e", "$CONTROL/dynamic-security/v1/response", "-W", "10", "-m",
         nlohmann::json(
             {{"commands", {{{"command", "getRole"}, {"rolename", role}}}}})
             .dump()},
        absl::Seconds(20));
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    std::vector<std::string> out;
    try {
      const nlohmann::json& resp = j.at("responses").at(0);
      if (resp.contains("error")) return {"error"};
      for (const auto& a : resp.at("data").at("role").at("acls")) {
        out.push_back(absl::StrCat(a.at("acltype").get<std::string>(), " ",
                                   a.at("topic").get<std::string>(),
                                   a.value("allow", false) ? "" : " deny"));
      }
    } catch (const nlohmann::json::exception&) {
      return {"unreadable: " + r.out + r.err};
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // The four ACLs a device role holds for `topic`, sorted like RoleAcls.
  static std::vector<std::string> DeviceAcls(const std::string& topic) {
    return {"publishClientReceive " + topic, "publishClientSend " + topic,
            "subscribePattern " + topic, "unsubscribePattern " + topic};
  }

  // Runs the observer through sh so its stdout lands in a file, publishes,
  // and reports what the observer saw within `wait`.
  std::string Observe(const std::string& out, const std::string& topic,
                      const std::string& message) {
    const std::string seen = absl::StrCat(dir_, "/seen-", message);
    BackgroundProcess sub(
        {"/bin/sh", "-c",
         absl::StrCat("exec ", kMosquittoSub, " -h 127.0.0.1 -p ",
                      control_port_, " -u observer -P ", kObserverPass,
                      " -t 'devices/#' -v -C 1 -W 4 > ", seen)},
        seen + ".err");
    absl::SleepFor(absl::Milliseconds(700));  // subscribed
    ProcessResult pub =
        RunProcess({kMosquittoPub, "-h", "127.0.0.1", "-p",
                    absl::StrCat(device_port_), "--cafile", dir_ + "/mq/ca.pem",
                    "--cert", out + "/chain.pem", "--key", out + "/device.key",
                    "-t", topic, "-m", message, "-q", "1", "-V", "mqttv311"},
                   absl::Seconds(20));
    last_publish_ = pub;
    WaitFor([&] { return !ReadFileOrEmpty(seen).empty(); }, absl::Seconds(3));
    sub.Stop();
    return ReadFileOrEmpty(seen);
  }

  std::vector<nlohmann::json> Pending(const BrokerProcess& b) {
    ProcessResult r = b.Cli({"registry", "pending", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<nlohmann::json> out;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }

  nlohmann::json BootstrapJson(const std::string& out) {
    return nlohmann::json::parse(ReadFileOrEmpty(out + "/bootstrap.json"),
                                 nullptr, false);
  }

  std::string dir_;
  int control_port_ = 0;
  int device_port_ = 0;
  std::unique_ptr<BackgroundProcess> mosquitto_;
  ProcessResult last_publish_;
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_INTEGRATION_MOSQUITTO_TESTING_H_
