// The crash-and-restart soak: a real simprov-broker with a real Mosquitto
// registry under continuous bootstrap, renewal and token load from
// in-process clients (the agent's own code), SIGKILLed at random moments
// and restarted on the same data dir. At the end the invariants the broker
// promises are checked against the store, the registry and the clients'
// own records:
//   - every bootstrap or renewal a client got an answer for is in the store
//     with that serial and that certificate (and the client verified it);
//   - SQN, recovered from every AUTN the SIMs were shown, strictly increases
//     per IMSI: no value was ever issued twice;
//   - every valid certificate's IMSI is a Mosquitto client exactly once,
//     and nothing else is; the outbox drains;
//   - no session was used twice (a SIM never has more bootstrap
//     certificates than challenges it answered), and the audit holds an
//     "ok" record naming every answered certificate;
//   - the store passes PRAGMA integrity_check.
// CI runs the short form (SIMPROV_SOAK_KILLS=5); by hand, e.g.
//   SIMPROV_SOAK_KILLS=50 SIMPROV_SOAK_SEED=7 build/test/soak/soak_test
// The seed is printed; the same seed replays the same kill schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/bootstrap_client.h"
#include "agent/credential_dir.h"
#include "agent/sim/soft_sim.h"
#include "agent/token_client.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/milenage.h"
#include "common/x509.h"
#include "test/integration/mosquitto_testing.h"
#include "test/testing/fake_aws_iot.h"

namespace simprov::testing {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::atoi(v);
}

struct Vector {
  Bytes rand;
  Bytes autn;
};

// What one client knows about its device.
struct Device {
  TestSim sim;
  std::unique_ptr<SoftSim> card;
  std::vector<Vector> vectors;  // every AUTN the SIM was shown, in order
  std::optional<Credentials> creds;
  std::string dir;  // the credential set, for token requests
  // Every certificate a bootstrap or renewal answered: serial -> DER.
  std::map<std::string, Bytes> answered;
  int bootstraps = 0;
  int renewals = 0;
  int tokens = 0;
  std::vector<std::string> jtis;  // every token answered
};

// Shows the SIM every challenge and keeps a copy of it.
class RecordingSim : public SimCard {
 public:
  RecordingSim(SimCard& inner, std::vector<Vector>& seen)
      : inner_(inner), seen_(seen) {}
  absl::StatusOr<std::string> Imsi() override { return inner_.Imsi(); }
  absl::StatusOr<SimAuthResult> Authenticate(const Bytes& rand,
                                             const Bytes& autn) override {
    seen_.push_back({rand, autn});
    return inner_.Authenticate(rand, autn);
  }
  DeviceIdentity Identity() override { return inner_.Identity(); }

 private:
  SimCard& inner_;
  std::vector<Vector>& seen_;
};

Bytes DerOf(const std::string& pem) {
  auto cert = CertFromPem(pem);
  return cert.ok() ? CertToDer(cert->get()) : Bytes();
}

uint64_t Be48(const Bytes& b) {
  uint64_t v = 0;
  for (size_t i = 0; i < 6; ++i) v = (v << 8) | b[i];
  return v;
}

// The broker under test: restarted on the same data dir after each kill,
// on a new port the clients pick up.
class LiveBroker {
 public:
  LiveBroker(std::string dir, std::vector<std::string> args)
      : dir_(std::move(dir)), args_(std::move(args)) {}
  bool Start() {
    auto b = BrokerProcess::Start(dir_, args_);
    if (b == nullptr) return false;
    std::lock_guard<std::mutex> l(mu_);
    address_ = b->address();
    process_ = std::move(b);
    return true;
  }
  void Kill() {
    std::lock_guard<std::mutex> l(mu_);
    process_->Kill();
  }
  std::string address() {
    std::lock_guard<std::mutex> l(mu_);
    return address_;
  }
  BrokerProcess& process() { return *process_; }

 private:
  const std::string dir_;
  const std::vector<std::string> args_;
  std::mutex mu_;
  std::string address_;
  std::unique_ptr<BrokerProcess> process_;
};

class SoakTest : public MosquittoTest {};

TEST_F(SoakTest, SigkillUnderLoadKeepsEveryPromise) {
  const int kills = EnvInt("SIMPROV_SOAK_KILLS", 5);
  const int devices_n = EnvInt("SIMPROV_SOAK_DEVICES", 24);
  const int workers_n = EnvInt("SIMPROV_SOAK_CLIENTS", 4);
  const int seed =
      EnvInt("SIMPROV_SOAK_SEED",
             static_cast<int>(absl::ToUnixMicros(absl::Now()) % 1000000));
  std::cout << "soak: seed " << seed << ", " << kills << " kills, " << devices_n
            << " devices, " << workers_n << " clients\n";
  std::mt19937 rng(static_cast<uint32_t>(seed));

  setenv("SIMPROV_TEST_MQ_PASS", kAdminPass, 1);
  // The AWS IoT test endpoint checks every request's SigV4 signature.
  FakeAwsIot aws;
  setenv("AWS_ACCESS_KEY_ID", kFakeAwsAccessKey, 1);
  setenv("AWS_SECRET_ACCESS_KEY", kFakeAwsSecretKey, 1);
  unsetenv("AWS_SESSION_TOKEN");
  WriteFileOrDie(dir_ + "/registries",
                 absl::StrCat(RegistryUrl(), "\n",
                              "aws-iot://eu-west-1?policy=devices&rate=100&"
                              "endpoint=",
                              aws.url(), "\n"));
  LiveBroker broker(dir_ + "/broker", {"--registry-file", dir_ + "/registries",
                                       "--http-listen", "127.0.0.1:0"});
  ASSERT_TRUE(broker.Start());
  StartMosquitto(dir_ + "/broker");

  std::vector<Device> devices(static_cast<size_t>(devices_n));
  std::vector<TestSim> sims;
  for (int i = 0; i < devices_n; ++i) {
    Device& d = devices[static_cast<size_t>(i)];
    d.sim = RandomSim(absl::StrCat("0010177", absl::Dec(i, absl::kZeroPad8)));
    auto k = HexDecode(d.sim.k);
    auto opc = HexDecode(d.sim.opc);
    ASSERT_TRUE(k.ok() && opc.ok());
    auto card = SoftSim::InMemory(d.sim.imsi, *k, *opc);
    ASSERT_TRUE(card.ok()) << card.status();
    d.card = std::move(*card);
    d.dir = absl::StrCat(dir_, "/dev-", i);
    sims.push_back(d.sim);
  }
  broker.process().Import(sims);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> answered{0}, failed{0};
  std::mutex errors_mu;
  std::set<std::string> errors;  // a sample, for the report
  AgentOptions opts;
  opts.rpc_timeout = absl::Seconds(5);
  auto work = [&](int w) {
    std::mt19937 local(static_cast<uint32_t>(seed + w));
    while (!stop.load()) {
      for (size_t i = static_cast<size_t>(w); i < devices.size() && !stop;
           i += static_cast<size_t>(workers_n)) {
        Device& d = devices[i];
        auto endpoint = ParseBroker(broker.address());
        if (!endpoint.ok()) continue;
        absl::Status st;
        if (!d.creds.has_value()) {
          RecordingSim sim(*d.card, d.vectors);
          BootstrapClient client(MakeBrokerChannel(*endpoint, ""), *endpoint,
                                 Clock::Real(), Random::Real(), opts);
          auto c = client.Run(sim);
          st = c.status();
          if (c.ok()) {
            d.answered[c->leaf.serial_hex] = DerOf(c->cert_pem);
            d.creds = std::move(*c);
            ++d.bootstraps;
          }
        } else if (local() % 3 == 0) {
          auto channel = MakeMutualTlsChannel(
              *endpoint, d.creds->ca_pem, d.creds->key_pem, d.creds->chain_pem);
          auto c =
              RenewCredentials(channel, d.creds->imsi, Clock::Real(), opts);
          st = c.status();
          if (c.ok()) {
            d.answered[c->leaf.serial_hex] = DerOf(c->cert_pem);
            d.creds = std::move(*c);
            ++d.renewals;
          }
        } else {
          st = WriteCredentialSet(d.dir, *d.creds, broker.address(),
                                  Random::Real());
          if (st.ok()) {
            TokenRequestSpec spec;
            spec.audiences = {"https://app.example"};
            auto t =
                RequestDeviceToken(*endpoint, d.dir, spec, absl::Seconds(5));
            st = t.status();
            if (t.ok()) {
              ++d.tokens;
              d.jtis.push_back(t->jti);
            }
          }
        }
        if (st.ok()) {
          ++answered;
          continue;
        }
        ++failed;
        {
          std::lock_guard<std::mutex> l(errors_mu);
          if (errors.size() < 8) errors.insert(std::string(st.message()));
        }
        // Refused (a renewal whose answer was lost is superseded; a
        // revoked device): fall back to the SIM, as the agent does.
        if (absl::IsPermissionDenied(st) || absl::IsUnauthenticated(st)) {
          d.creds.reset();
        }
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < workers_n; ++w) workers.emplace_back(work, w);

  std::uniform_int_distribution<int> pause_ms(700, 2500);
  std::set<std::string> revoked_by_operator;
  for (int k = 0; k < kills; ++k) {
    absl::SleepFor(absl::Milliseconds(pause_ms(rng)));
    if (k % 2 == 1) {
      // An operator revocation between kills: the registry must follow.
      const std::string imsi = devices[rng() % devices.size()].sim.imsi;
      if (broker.process().Cli({"devices", "revoke", imsi}).exit_code == 0) {
        revoked_by_operator.insert(imsi);
      }
    }
    broker.Kill();
    ASSERT_TRUE(broker.Start()) << "restart " << k + 1 << " failed";
  }
  absl::SleepFor(absl::Seconds(2));
  stop = true;
  for (std::thread& t : workers) t.join();
  int64_t bootstraps = 0, renewals = 0, tokens = 0;
  for (const Device& d : devices) {
    bootstraps += d.bootstraps;
    renewals += d.renewals;
    tokens += d.tokens;
  }
  std::cout << "soak: " << bootstraps << " bootstraps, " << renewals
            << " renewals, " << tokens << " tokens answered; " << failed
            << " failed attempts (retried), " << revoked_by_operator.size()
            << " operator revocations\n";
  for (const std::string& e : errors)
    std::cout << "soak: failure: " << e << "\n";
  EXPECT_EQ(answered.load(), bootstraps + renewals + tokens);
  EXPECT_GT(renewals, 0);
  EXPECT_GT(tokens, 0);

  // The outbox drains once the load stops: it may be long after a long
  // run, so the wait ends only when the backlog stops shrinking for 60 s.
  size_t backlog = SIZE_MAX;
  const absl::Time drain_start = absl::Now();
  absl::Time progress = drain_start;
  while (true) {
    auto r = broker.process().Cli({"registry", "pending", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const size_t n =
        static_cast<size_t>(std::count(r.out.begin(), r.out.end(), '\n'));
    if (n == 0) break;
    if (n < backlog) {
      backlog = n;
      progress = absl::Now();
    }
    ASSERT_LT(absl::Now() - progress, absl::Seconds(60))
        << "the outbox stopped draining at " << n << " entries\n"
        << broker.process().Cli({"registry", "pending"}).out
        << broker.process().log();
    absl::SleepFor(absl::Milliseconds(500));
  }
  std::cout << "soak: outbox drained "
            << absl::FormatDuration(absl::Now() - drain_start)
            << " after the load stopped\n";
  const std::vector<std::string> clients = DynsecClients();
  // AWS: which certificates were registered (HTTP 200, by serial) and
  // which were deactivated afterwards.
  std::map<std::string, std::string> serial_of_id;
  for (const FakeAwsIot::Call& c : aws.calls()) {
    if (c.method != "POST" || c.path != "/certificate/register-no-ca") continue;
    const std::string pem = nlohmann::json::parse(c.body)["certificatePem"];
    auto cert = CertFromPem(pem);
    ASSERT_TRUE(cert.ok());
    serial_of_id[HexEncode(Sha256(pem))] = DescribeCert(cert->get()).serial_hex;
  }
  std::map<std::string, int> aws_registered;
  for (const auto& [id, n] : aws.registrations()) {
    aws_registered[serial_of_id[id]] = n;
  }
  std::set<std::string> aws_deactivated;
  for (const FakeAwsIot::Call& c : aws.calls()) {
    if (c.method == "PUT" && absl::StartsWith(c.path, "/certificates/") &&
        c.new_status == "INACTIVE") {
      aws_deactivated.insert(serial_of_id[c.path.substr(14)]);
    }
  }
  EXPECT_EQ(aws.bad_signatures(), 0);
  ASSERT_EQ(broker.process().Stop(), 0) << broker.process().log();

  const std::string db = dir_ + "/broker/simprov.db";
  ProcessResult integrity =
      RunProcess({"/usr/bin/sqlite3", db, "PRAGMA integrity_check"});
  EXPECT_EQ(integrity.out, "ok\n") << integrity.err;

  auto store = SqliteStore::Open(db);
  ASSERT_TRUE(store.ok()) << store.status();
  int64_t checked_serials = 0, checked_sqns = 0, checked_aws = 0;
  for (Device& d : devices) {
    const std::string& imsi = d.sim.imsi;
    // Every answered certificate is in the store, as answered.
    for (const auto& [serial, der] : d.answered) {
      auto rec = (*store)->GetCertificate(serial);
      ASSERT_TRUE(rec.ok()) << imsi << " " << serial << ": " << rec.status();
      EXPECT_EQ(rec->imsi, imsi);
      EXPECT_EQ(rec->der, der) << serial;
      ++checked_serials;
    }
    // SQN strictly increases over every challenge the SIM was shown.
    auto m = Milenage::Create(*HexDecode(d.sim.k), *HexDecode(d.sim.opc));
    ASSERT_TRUE(m.ok());
    uint64_t last = 0;
    for (const Vector& v : d.vectors) {
      const Bytes ak = m->F2345(v.rand).ak;
      Bytes sqn(6);
      for (size_t i = 0; i < 6; ++i) sqn[i] = v.autn[i] ^ ak[i];
      const uint64_t s = Be48(sqn);
      EXPECT_GT(s, last) << imsi << ": SQN " << s << " after " << last;
      last = s;
      ++checked_sqns;
    }
    // Sessions are single-use: never more SIM-bootstrapped certificates
    // than challenges answered; and each answered one is audited.
    auto certs = (*store)->CertificatesOf(imsi);
    ASSERT_TRUE(certs.ok());
    size_t bootstrapped = 0;
    bool valid = false;
    for (const CertificateRecord& c : *certs) {
      if (c.renewed_from.empty()) ++bootstrapped;
      if (c.status == "valid" && c.not_after > absl::Now()) valid = true;
      // AWS holds every certificate: valid ones registered once and
      // active, revoked ones never registered or deactivated.
      const int n = aws_registered[c.serial];
      if (c.status == "valid") {
        EXPECT_EQ(n, 1) << imsi << " " << c.serial << " in AWS " << n;
        EXPECT_EQ(aws_deactivated.count(c.serial), 0u) << c.serial;
      } else {
        EXPECT_LE(n, 1) << c.serial;
        if (n == 1) {
          EXPECT_EQ(aws_deactivated.count(c.serial), 1u) << c.serial;
        }
      }
      ++checked_aws;
    }
    EXPECT_LE(bootstrapped, d.vectors.size()) << imsi;
    EXPECT_GE(bootstrapped, static_cast<size_t>(d.bootstraps)) << imsi;
    auto audit = (*store)->AuditOf(imsi);
    ASSERT_TRUE(audit.ok());
    for (const auto& [serial, der] : d.answered) {
      const bool found =
          std::any_of(audit->begin(), audit->end(), [&](const AuditEvent& e) {
            return e.result == "ok" &&
                   (e.action == "bootstrap" || e.action == "renew") &&
                   absl::StrContains(e.reason, serial);
          });
      EXPECT_TRUE(found) << imsi << ": no audit record for " << serial;
    }
    for (const std::string& jti : d.jtis) {
      const bool found =
          std::any_of(audit->begin(), audit->end(), [&](const AuditEvent& e) {
            return e.result == "ok" && e.action == "token" &&
                   absl::StrContains(e.reason, "jti=" + jti);
          });
      EXPECT_TRUE(found) << imsi << ": no audit record for token " << jti;
    }
    // The registry holds exactly the IMSIs with a valid certificate.
    const auto n = std::count(clients.begin(), clients.end(), imsi);
    EXPECT_EQ(n, valid ? 1 : 0) << imsi << " in Mosquitto " << n << " times";
  }
  auto outbox = (*store)->GetOutboxStats(absl::Now());
  ASSERT_TRUE(outbox.ok());
  EXPECT_EQ(outbox->depth, 0);
  std::cout << "soak: invariants checked: " << checked_serials
            << " answered certificates, " << checked_sqns << " SQNs, "
            << devices.size() << " Mosquitto clients, " << checked_aws
            << " AWS certificates\n";
}

}  // namespace
}  // namespace simprov::testing
