// simprov-agent: provisions this device with its SIM and keeps its
// credentials fresh. Thin: flags, exit codes. The protocol lives in
// bootstrap_client, the files in credential_dir, the loop in daemon.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/bootstrap_client.h"
#include "agent/credential_dir.h"
#include "agent/daemon.h"
#include "agent/registration_client.h"
#include "agent/sim/sim.h"
#include "agent/token_client.h"
#include "common/atomic_file.h"
#include "common/cli/completion.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/version.h"
#include "common/x509.h"

namespace simprov {
namespace {

// Flags shared by the subcommands; each uses the ones it declares.
struct Flags {
  std::string broker;
  std::string sim;
  std::string key = "file";
  std::string out;
  std::string broker_ca;
  bool force = false;
  std::string timeout = "10s";
  int attempts = 3;
  std::string on_renew;
  std::string max_backoff = "5m";
  std::string max_round_trip = "30s";
  bool set_clock = false;
  std::string max_skew = "2s";
  bool verbose = false;
  std::string log_format = "text";
  // Tokens (docs/tokens.md).
  std::vector<std::string> audiences;
  std::vector<std::string> scopes;
  std::string ttl;
  std::string token_file;
  // Registries (docs/registry.md): empty unless --wait-registered.
  std::string wait_registered;
};

int Fail(const absl::Status& s) {
  std::cerr << "simprov-agent: " << s.message() << "\n";
  int rc = ExitCodeFor(s);
  return rc == kExitOk ? kExitError : rc;
}

std::string Time(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// Validates the flags into a config.
absl::StatusOr<AgentConfig> Configure(const Flags& f) {
  if (f.verbose) SetLogLevel(LogLevel::kDebug);
  if (LogFormat format; ParseLogFormat(f.log_format, &format)) {
    SetLogFormat(format);
  }
  AgentConfig c;
  auto broker = ParseBroker(f.broker);
  if (!broker.ok()) return broker.status();
  c.broker = *broker;
  c.sim_spec = f.sim;
  auto key = ParseKeySpec(f.key);
  if (!key.ok()) return key.status();
  c.key = *key;
  c.out = f.out;
  c.on_renew = f.on_renew;
  auto timeout = ParseHumanDuration(f.timeout);
  if (!timeout.ok()) return timeout.status();
  c.options.rpc_timeout = *timeout;
  c.options.elapsed_clock = &Clock::Boottime();
  auto max_rtt = ParseHumanDuration(f.max_round_trip);
  if (!max_rtt.ok()) return max_rtt.status();
  c.options.max_round_trip = *max_rtt;
  auto max_backoff = ParseHumanDuration(f.max_backoff);
  if (!max_backoff.ok()) return max_backoff.status();
  c.max_backoff = std::max(*max_backoff, c.min_backoff);
  if (f.attempts < 1 || f.attempts > 20) {
    return absl::InvalidArgumentError("--attempts must be 1 to 20");
  }
  c.attempts = f.attempts;
  if (!f.broker_ca.empty()) {
    auto pem = ReadFileToString(f.broker_ca, 1 << 20);
    if (!pem.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--broker-ca: ", pem.status().message()));
    }
    if (!CertsFromPem(*pem).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--broker-ca ", f.broker_ca, " holds no PEM certificate"));
    }
    c.pinned_ca_pem = *pem;
  }
  return c;
}

// Turns a TLS verification failure into the message an operator needs.
absl::Status ExplainFailure(const absl::Status& s, const AgentConfig& c,
                            const std::string& anchor) {
  if (TlsVerificationFailed(s)) {
    return absl::UnavailableError(absl::StrCat(
        "TLS: the broker's certificate does not verify against ", anchor,
        " for host ", c.broker.identity,
        " (wrong CA, wrong host name, or not a server certificate)"));
  }
  if (s.code() == absl::StatusCode::kUnavailable) {
    return absl::UnavailableError(absl::StrCat("broker ", c.broker.target,
                                               " unreachable: ", s.message()));
  }
  return s;
}

void PrintSet(const char* verb, const Credentials& c, const std::string& out) {
  std::cout << verb << " device " << c.device_id << "\n"
            << "  subject:  " << c.leaf.subject << "\n"
            << "  serial:   " << c.leaf.serial_hex << "\n"
            << "  issuer:   " << c.leaf.issuer << "\n"
            << "  valid:    " << Time(c.leaf.not_before) << " .. "
            << Time(c.leaf.not_after) << "\n"
            << "  server time: " << Time(c.server_time) << " (+/- "
            << absl::ToInt64Milliseconds(c.round_trip) << " ms)\n"
            << "  files:    " << out
            << "/{device.key,device.crt,chain.pem,ca.pem,bootstrap.json}\n";
}

// --wait-registered: waits for the IoT registries (docs/registry.md).
int WaitForRegistries(const Flags& f, const AgentConfig& config) {
  if (f.wait_registered.empty()) return kExitOk;
  auto wait = ParseHumanDuration(f.wait_registered);
  if (!wait.ok()) return Fail(wait.status());
  absl::Status s =
      WaitRegistered(config.broker, f.out, *wait, config.options.rpc_timeout);
  if (!s.ok()) return Fail(s);
  std::cout << "  registry: registered\n";
  return kExitOk;
}

int Bootstrap(const Flags& f) {
  auto config = Configure(f);
  if (!config.ok()) return Fail(config.status());
  // A store that is not there is a configuration error: nothing written.
  auto keys = OpenKeyStore(config->key);
  if (!keys.ok()) return Fail(keys.status());
  if (!f.force &&
      CheckExistingCredentials(f.out, Clock::Real().Now(), keys->get()).ok()) {
    std::cout << "credentials in " << f.out
              << " are valid; nothing to do (--force re-provisions)\n";
    return WaitForRegistries(f, *config);
  }
  auto creds = BootstrapAndWrite(*config, Clock::Real(), Random::Real());
  if (!creds.ok()) {
    return Fail(
        ExplainFailure(creds.status(), *config, "--broker-ca " + f.broker_ca));
  }
  PrintSet("provisioned", *creds, f.out);
  return WaitForRegistries(f, *config);
}

int Renew(const Flags& f) {
  auto config = Configure(f);
  if (!config.ok()) return Fail(config.status());
  auto creds = RenewAndWrite(*config, Clock::Real(), Random::Real());
  if (!creds.ok()) {
    return Fail(ExplainFailure(creds.status(), *config, f.out + "/ca.pem"));
  }
  PrintSet("renewed", *creds, f.out);
  return kExitOk;
}

int TimeCommand(const Flags& f) {
  auto config = Configure(f);
  if (!config.ok()) return Fail(config.status());
  auto max_skew = ParseHumanDuration(f.max_skew);
  if (!max_skew.ok()) return Fail(max_skew.status());
  auto check =
      CheckClock(*config, Clock::Real(), Random::Real(),
                 f.set_clock ? &ClockSetter::System() : nullptr, *max_skew);
  if (!check.ok()) {
    return Fail(
        ExplainFailure(check.status(), *config, "--broker-ca " + f.broker_ca));
  }
  auto fmt = [](absl::Time t) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
  };
  const double skew = absl::ToDoubleSeconds(check->skew);
  std::cout << "authenticated time: " << fmt(check->authenticated.time)
            << " (+/- "
            << absl::ToInt64Milliseconds(check->authenticated.uncertainty)
            << " ms)\n"
            << "local clock:        " << fmt(check->local) << "\n"
            << "skew:               " << absl::StrFormat("%+.3f", skew)
            << " s (" << (skew >= 0 ? "local is ahead" : "local is behind")
            << ")\n";
  if (check->set) std::cout << "clock set to the authenticated time\n";
  return kExitOk;
}

absl::StatusOr<TokenRequestSpec> TokenSpec(const Flags& f) {
  TokenRequestSpec spec;
  spec.audiences = f.audiences;
  spec.scopes = f.scopes;
  if (!f.ttl.empty()) {
    auto ttl = ParseHumanDuration(f.ttl);
    if (!ttl.ok()) return ttl.status();
    if (*ttl < absl::Seconds(10)) {
      return absl::InvalidArgumentError("--ttl must be at least 10s");
    }
    spec.ttl = *ttl;
  }
  return spec;
}

int Token(const Flags& f) {
  auto config = Configure(f);
  if (!config.ok()) return Fail(config.status());
  auto spec = TokenSpec(f);
  if (!spec.ok()) return Fail(spec.status());
  if (config->key.kind != KeySpec::Kind::kFile) {
    return Fail(absl::FailedPreconditionError(
        "device tokens are bound to a mutual-TLS client certificate, which a "
        "key in hardware cannot present yet (docs/agent.md)"));
  }
  auto token = RequestDeviceToken(config->broker, f.out, *spec,
                                  config->options.rpc_timeout);
  if (!token.ok()) {
    return Fail(ExplainFailure(token.status(), *config, f.out + "/ca.pem"));
  }
  std::cout << token->token << "\n";
  return kExitOk;
}

int Run(const Flags& f, const sigset_t& stop) {
  auto config = Configure(f);
  if (!config.ok()) return Fail(config.status());
  if (!f.token_file.empty()) {
    if (f.audiences.empty()) {
      return Fail(absl::InvalidArgumentError(
          "--token-file needs at least one --token-audience"));
    }
    auto spec = TokenSpec(f);
    if (!spec.ok()) return Fail(spec.status());
    config->token_file = f.token_file;
    config->token_spec = *spec;
  }
  // A bad --sim or --key is a configuration error: say so now, not in a
  // loop.
  if (auto sim = OpenSim(f.sim); !sim.ok()) return Fail(sim.status());
  if (auto keys = OpenKeyStore(config->key); !keys.ok()) {
    return Fail(keys.status());
  }
  if (!f.token_file.empty() && config->key.kind != KeySpec::Kind::kFile) {
    return Fail(absl::FailedPreconditionError(
        "--token-file: device tokens need a mutual-TLS client certificate, "
        "which a key in hardware cannot present yet (docs/agent.md)"));
  }
  if (!f.verbose) SetLogLevel(LogLevel::kInfo);
  return RunDaemon(*config, stop, Clock::Real(), Random::Real());
}

}  // namespace
}  // namespace simprov

int main(int argc, char** argv) {
  // The daemon waits for these with sigtimedwait; block them everywhere.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  simprov::RouteGrpcLogging();
  simprov::SetLogLevel(simprov::LogLevel::kWarning);
  simprov::Flags f;
  CLI::App app{"simprov-agent: provisions this device with its SIM"};
  app.set_version_flag("--version",
                       std::string("simprov-agent ") + simprov::kVersion);
  app.require_subcommand(1);
  int rc = 0;
  auto broker = [&](CLI::App* c) {
    c->add_option("--broker", f.broker, "Broker address HOST:PORT")->required();
  };
  auto out = [&](CLI::App* c) {
    c->add_option("--out", f.out, "Credential directory")->required();
  };
  auto key = [&](CLI::App* c) {
    c->add_option("--key", f.key,
                  "Where the device key lives: file (DIR/device.key), "
                  "tpm2[:TCTI] or iotsafe[:container=N] (docs/agent.md)")
        ->capture_default_str();
  };
  auto common = [&](CLI::App* c) {
    c->add_option("--timeout", f.timeout, "Per-call timeout")
        ->capture_default_str();
    c->add_option("--max-round-trip", f.max_round_trip,
                  "Refuse answers slower than this (their time is too "
                  "uncertain)")
        ->capture_default_str();
    c->add_flag("-v,--verbose", f.verbose, "Log progress and retries");
    c->add_option("--log-format", f.log_format,
                  "text, or json (one JSON object per line)")
        ->capture_default_str()
        ->check(CLI::IsMember({"text", "json"}));
  };
  auto sim = [&](CLI::App* c) {
    c->add_option("--sim", f.sim,
                  "SIM: soft:FILE, at:DEVICE[,baud=N] or pcsc[:READER]")
        ->required();
    c->add_option("--broker-ca", f.broker_ca,
                  "Pin the broker's CA (PEM): TLS must verify against it");
    c->add_option("--attempts", f.attempts,
                  "Attempts per bootstrap when the broker is unreachable "
                  "(backoff with jitter between them)")
        ->capture_default_str();
  };

  auto* boot = app.add_subcommand(
      "bootstrap",
      "First boot: authenticate with the SIM, get a certificate, write it");
  broker(boot);
  sim(boot);
  out(boot);
  boot->add_flag("--force", f.force,
                 "Re-provision with a new key even if credentials are valid");
  boot->add_flag("--wait-registered{2m}", f.wait_registered,
                 "After provisioning, wait until the IoT registries have the "
                 "device (--wait-registered=TIMEOUT, default 2m); "
                 "bootstrap.json follows the registration status");
  key(boot);
  common(boot);
  boot->callback([&] { rc = simprov::Bootstrap(f); });

  auto* renew = app.add_subcommand(
      "renew",
      "Renew now over mutual TLS with the current certificate and a new key "
      "(no SIM); the broker is verified against DIR/ca.pem");
  broker(renew);
  out(renew);
  key(renew);
  common(renew);
  renew->callback([&] { rc = simprov::Renew(f); });

  auto* run = app.add_subcommand(
      "run",
      "Daemon: bootstrap if needed, renew at 2/3 of the lifetime, fall back "
      "to the SIM when renewal is refused or the certificate expired");
  broker(run);
  sim(run);
  out(run);
  run->add_option("--on-renew", f.on_renew,
                  "Shell command to run after each new set is in place");
  run->add_option("--max-backoff", f.max_backoff,
                  "Longest wait between failed attempts")
      ->capture_default_str();
  run->add_option("--token-file", f.token_file,
                  "Keep a fresh device token in this file (0600), refreshed "
                  "at 2/3 of its life and after every renewal");
  run->add_option("--token-audience", f.audiences,
                  "Audience of the --token-file token (repeatable)");
  run->add_option("--token-scope", f.scopes,
                  "Scope of the --token-file token (repeatable)");
  run->add_option("--token-ttl", f.ttl,
                  "Lifetime of the --token-file token (default: the "
                  "broker's, 10m)");
  key(run);
  common(run);
  run->callback([&] { rc = simprov::Run(f, stop); });

  auto* token = app.add_subcommand(
      "token",
      "Get a short-lived device token for an application API over mutual "
      "TLS with the credentials in DIR; prints the JWT on stdout");
  broker(token);
  out(token);
  token
      ->add_option("--audience", f.audiences,
                   "The application(s) the token is for (repeatable)")
      ->required();
  token->add_option("--scope", f.scopes, "Requested scope (repeatable)");
  token->add_option("--ttl", f.ttl,
                    "Lifetime (default: the broker's, 10m; at most 1h)");
  key(token);
  common(token);
  token->callback([&] { rc = simprov::Token(f); });

  auto* time = app.add_subcommand(
      "time",
      "Get authenticated time from the broker through a fresh AKA exchange "
      "and print the local clock's skew");
  broker(time);
  sim(time);
  time->add_flag("--set-clock", f.set_clock,
                 "Set the system clock when the skew exceeds --max-skew "
                 "(needs CAP_SYS_TIME)");
  time->add_option("--max-skew", f.max_skew, "Skew tolerated by --set-clock")
      ->capture_default_str();
  time->add_option("--out", f.out,
                   "Keep the last authenticated time in DIR/time.json: the "
                   "time then never goes backwards within one boot");
  common(time);
  time->callback([&] { rc = simprov::TimeCommand(f); });

  std::string completion_shell;
  CLI::App* completion = simprov::AddCompletionCommand(app, &completion_shell);
  if (simprov::HandleCompletion(app, "simprov-agent", argc, argv)) return 0;

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : simprov::kExitUsage;
  }
  if (completion->parsed()) {
    std::cout << simprov::CompletionScript(app, "simprov-agent",
                                           completion_shell);
    return 0;
  }
  return rc;
}
