// simprov-agent: provisions this device with its SIM. Thin: flags, retries,
// exit codes. The protocol lives in bootstrap_client, the files in
// credential_dir.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/bootstrap_client.h"
#include "agent/credential_dir.h"
#include "agent/sim.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "common/log.h"

namespace simprov {
namespace {

struct BootstrapFlags {
  std::string broker;
  std::string sim;
  std::string out;
  std::string broker_ca;
  bool force = false;
  std::string timeout = "10s";
  int attempts = 3;
  bool verbose = false;
};

int Fail(const absl::Status& s) {
  std::cerr << "simprov-agent: " << s.message() << "\n";
  int rc = ExitCodeFor(s);
  return rc == kExitOk ? kExitError : rc;
}

// TLS that does not verify against --broker-ca is not a network hiccup.
bool TlsVerificationFailed(const absl::Status& s) {
  return absl::StrContains(s.message(), "certificate verify failed") ||
         absl::StrContains(s.message(), "No match found for server name");
}

bool Retryable(const absl::Status& s) {
  if (TlsVerificationFailed(s)) return false;
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kResourceExhausted;
}

std::string Time(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

int Bootstrap(const BootstrapFlags& f) {
  if (f.verbose) SetLogLevel(LogLevel::kDebug);
  auto broker = ParseBroker(f.broker);
  if (!broker.ok()) return Fail(broker.status());
  auto timeout = ParseHumanDuration(f.timeout);
  if (!timeout.ok()) return Fail(timeout.status());
  if (f.attempts < 1 || f.attempts > 20) {
    return Fail(absl::InvalidArgumentError("--attempts must be 1 to 20"));
  }
  std::string pinned;
  if (!f.broker_ca.empty()) {
    auto pem = ReadFileToString(f.broker_ca, 1 << 20);
    if (!pem.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--broker-ca: ", pem.status().message())));
    }
    if (!CertsFromPem(*pem).ok()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--broker-ca ", f.broker_ca, " holds no PEM certificate")));
    }
    pinned = *pem;
  }
  Clock& clock = Clock::Real();
  if (!f.force) {
    if (CheckExistingCredentials(f.out, clock.Now()).ok()) {
      std::cout << "credentials in " << f.out
                << " are valid; nothing to do (--force re-provisions)\n";
      return kExitOk;
    }
  }
  auto sim = OpenSim(f.sim);
  if (!sim.ok()) return Fail(sim.status());

  AgentOptions options;
  options.rpc_timeout = *timeout;
  BootstrapClient client(MakeBrokerChannel(*broker, pinned), *broker, clock,
                         Random::Real(), options);
  absl::StatusOr<Credentials> creds;
  absl::Duration backoff = absl::Seconds(1);
  for (int attempt = 1; attempt <= f.attempts; ++attempt) {
    creds = client.Run(**sim);
    if (creds.ok() || !Retryable(creds.status()) || attempt == f.attempts) {
      break;
    }
    // Exponential backoff with full jitter.
    Bytes r = Random::Real().Generate(2);
    double jitter = 0.5 + ((r[0] << 8 | r[1]) / 65535.0) * 0.5;
    absl::Duration wait = absl::Trunc(backoff * jitter, absl::Milliseconds(1));
    LogInfo("attempt %d failed (%s); retrying in %s", attempt,
            creds.status().message(), absl::FormatDuration(wait));
    absl::SleepFor(wait);
    backoff *= 2;
  }
  if (!creds.ok()) {
    if (!pinned.empty() && TlsVerificationFailed(creds.status())) {
      return Fail(absl::UnavailableError(absl::StrCat(
          "TLS: the broker's certificate does not verify against --broker-ca ",
          f.broker_ca, " for host ", broker->identity,
          " (wrong CA, wrong host name, or not a server certificate)")));
    }
    if (creds.status().code() == absl::StatusCode::kUnavailable) {
      return Fail(absl::UnavailableError(absl::StrCat(
          "broker ", f.broker, " unreachable: ", creds.status().message())));
    }
    return Fail(creds.status());
  }
  if (absl::Status s =
          WriteCredentialSet(f.out, *creds, f.broker, Random::Real());
      !s.ok()) {
    return Fail(s);
  }
  std::cout << "provisioned device " << creds->device_id << "\n"
            << "  subject:  " << creds->leaf.subject << "\n"
            << "  serial:   " << creds->leaf.serial_hex << "\n"
            << "  issuer:   " << creds->leaf.issuer << "\n"
            << "  valid:    " << Time(creds->leaf.not_before) << " .. "
            << Time(creds->leaf.not_after) << "\n"
            << "  server time: " << Time(creds->server_time) << " (+/- "
            << absl::ToInt64Milliseconds(creds->round_trip) << " ms)\n"
            << "  files:    " << f.out << "/{device.key,device.crt,chain.pem,"
            << "ca.pem,bootstrap.json}\n";
  return kExitOk;
}

struct RenewFlags {
  std::string broker;
  std::string out;
  std::string timeout = "10s";
  bool verbose = false;
};

int Renew(const RenewFlags& f) {
  if (f.verbose) SetLogLevel(LogLevel::kDebug);
  auto broker = ParseBroker(f.broker);
  if (!broker.ok()) return Fail(broker.status());
  auto timeout = ParseHumanDuration(f.timeout);
  if (!timeout.ok()) return Fail(timeout.status());
  auto ca = ReadFileToString(f.out + "/ca.pem", 1 << 20);
  auto key = ReadFileToString(f.out + "/device.key", 1 << 20);
  auto chain = ReadFileToString(f.out + "/chain.pem", 1 << 20);
  auto meta = ReadFileToString(f.out + "/bootstrap.json", 1 << 20);
  if (!ca.ok() || !key.ok() || !chain.ok() || !meta.ok()) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "no credentials in ", f.out, " to renew: bootstrap first")));
  }
  auto imsi = ImsiFromBootstrapJson(*meta);
  if (!imsi.ok()) return Fail(imsi.status());
  AgentOptions options;
  options.rpc_timeout = *timeout;
  auto creds =
      RenewCredentials(MakeMutualTlsChannel(*broker, *ca, *key, *chain), *imsi,
                       Clock::Real(), options);
  if (!creds.ok()) {
    if (TlsVerificationFailed(creds.status())) {
      return Fail(absl::UnavailableError(
          absl::StrCat("TLS: the broker's certificate does not verify against ",
                       f.out, "/ca.pem for host ", broker->identity)));
    }
    return Fail(creds.status());
  }
  if (absl::Status s =
          WriteCredentialSet(f.out, *creds, f.broker, Random::Real());
      !s.ok()) {
    return Fail(s);
  }
  std::cout << "renewed device " << creds->device_id << "\n"
            << "  serial:   " << creds->leaf.serial_hex << "\n"
            << "  valid:    " << Time(creds->leaf.not_before) << " .. "
            << Time(creds->leaf.not_after) << "\n";
  return kExitOk;
}

}  // namespace
}  // namespace simprov

int main(int argc, char** argv) {
  simprov::RouteGrpcLogging();
  simprov::SetLogLevel(simprov::LogLevel::kWarning);
  simprov::BootstrapFlags f;
  CLI::App app{"simprov-agent: provisions this device with its SIM"};
  app.require_subcommand(1);
  int rc = 0;
  auto* boot = app.add_subcommand(
      "bootstrap",
      "First boot: authenticate with the SIM, get a certificate, write it");
  boot->add_option("--broker", f.broker, "Broker address HOST:PORT")
      ->required();
  boot->add_option("--sim", f.sim, "SIM to use: soft:FILE")->required();
  boot->add_option("--out", f.out, "Credential directory")->required();
  boot->add_option("--broker-ca", f.broker_ca,
                   "Pin the broker's CA (PEM): TLS must verify against it");
  boot->add_flag("--force", f.force,
                 "Re-provision with a new key even if credentials are valid");
  boot->add_option("--timeout", f.timeout, "Per-call timeout")
      ->capture_default_str();
  boot->add_option("--attempts", f.attempts,
                   "Attempts when the broker is unreachable (backoff with "
                   "jitter between them)")
      ->capture_default_str();
  boot->add_flag("-v,--verbose", f.verbose,
                 "Log progress and retries to stderr");
  boot->callback([&] { rc = simprov::Bootstrap(f); });
  simprov::RenewFlags rf;
  auto* renew = app.add_subcommand(
      "renew",
      "Renew now over mutual TLS with the current certificate and a new key "
      "(no SIM); the broker is verified against DIR/ca.pem");
  renew->add_option("--broker", rf.broker, "Broker address HOST:PORT")
      ->required();
  renew->add_option("--out", rf.out, "Credential directory")->required();
  renew->add_option("--timeout", rf.timeout, "Per-call timeout")
      ->capture_default_str();
  renew->add_flag("-v,--verbose", rf.verbose, "Log progress to stderr");
  renew->callback([&] { rc = simprov::Renew(rf); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : simprov::kExitUsage;
  }
  return rc;
}
