#include "agent/daemon.h"

#include <openssl/crypto.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/credential_dir.h"
#include "agent/sim/sim.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/x509.h"

namespace simprov {

namespace {

// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.
void SdNotify(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t len = strlen(path);
  if (len >= sizeof addr.sun_path) return;
  memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract socket
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  (void)sendto(fd, state, strlen(state), 0, reinterpret_cast<sockaddr*>(&addr),
               static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  close(fd);
}

// Half the watchdog interval systemd asked for, or infinite.
absl::Duration WatchdogInterval() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  int64_t v = 0;
  if (usec == nullptr || !absl::SimpleAtoi(usec, &v) || v <= 0) {
    return absl::InfiniteDuration();
  }
  return absl::Microseconds(v) / 2;
}

// Sleeps up to `d` (watchdog pings included); true when a stop signal came.
bool SleepOrStop(absl::Duration d, const sigset_t& stop) {
  const absl::Duration watchdog = WatchdogInterval();
  while (d > absl::ZeroDuration()) {
    absl::Duration step = std::min(d, watchdog);
    step = std::min(step, absl::Hours(1));
    timespec ts = absl::ToTimespec(step);
    int sig = sigtimedwait(&stop, nullptr, &ts);
    if (sig > 0) return true;
    if (sig < 0 && errno != EAGAIN && errno != EINTR) return false;
    d -= step;
    if (watchdog != absl::InfiniteDuration()) SdNotify("WATCHDOG=1");
  }
  return false;
}

// The clock that measures elapsed time: CLOCK_BOOTTIME unless injected.
Clock& ElapsedClock(const AgentConfig& config) {
  return config.options.elapsed_clock ? *config.options.elapsed_clock
                                      : Clock::Boottime();
}

void RunHook(const std::string& command) {
  if (command.empty()) return;
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  if (pid < 0) {
    LogWarning("--on-renew: cannot fork: %s", strerror(errno));
    return;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    LogWarning("--on-renew command failed (status %d)", status);
  }
}

struct CurrentSet {
  absl::Time issued;
  absl::Time not_after;
};

// The set in `out`, if it is complete and valid now.
absl::StatusOr<CurrentSet> ReadCurrentSet(const std::string& out,
                                          const KeySpec& key, absl::Time now) {
  auto keys = OpenKeyStore(key);
  if (!keys.ok()) return keys.status();
  if (absl::Status s = CheckExistingCredentials(out, now, keys->get());
      !s.ok()) {
    return s;
  }
  auto meta = ReadFileToString(out + "/bootstrap.json", 1 << 20);
  if (!meta.ok()) return meta.status();
  nlohmann::json j = nlohmann::json::parse(*meta, nullptr, false);
  CurrentSet set;
  std::string err;
  if (!j.is_object() ||
      !absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", j.value("server_time", ""),
                       &set.issued, &err) ||
      !absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", j.value("not_after", ""),
                       &set.not_after, &err)) {
    return absl::FailedPreconditionError("bootstrap.json is incomplete");
  }
  return set;
}

}  // namespace

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

absl::Duration Jittered(absl::Duration d, Random& random) {
  Bytes r = random.Generate(2);
  double f = 0.5 + ((r[0] << 8 | r[1]) / 65535.0) * 0.5;
  return absl::Trunc(d * f, absl::Milliseconds(1));
}

absl::Time RenewalTime(absl::Time issued, absl::Time not_after,
                       Random& random) {
  const absl::Duration life = not_after - issued;
  if (life <= absl::ZeroDuration()) return issued;
  Bytes r = random.Generate(2);
  const double jitter = ((r[0] << 8 | r[1]) / 65535.0) / 12.0;
  return issued + life * (2.0 / 3.0) - life * jitter;
}

absl::StatusOr<Credentials> BootstrapAndWrite(const AgentConfig& config,
                                              Clock& clock, Random& random) {
  auto sim = OpenSim(config.sim_spec);
  if (!sim.ok()) return sim.status();
  auto keys = OpenKeyStore(config.key);
  if (!keys.ok()) return keys.status();
  BootstrapClient client(MakeBrokerChannel(config.broker, config.pinned_ca_pem),
                         config.broker, clock, random, config.options);
  absl::StatusOr<Credentials> creds;
  absl::Duration backoff = config.min_backoff;
  for (int attempt = 1; attempt <= config.attempts; ++attempt) {
    creds = client.Run(**sim, keys->get());
    if (creds.ok() || !Retryable(creds.status()) ||
        attempt == config.attempts) {
      break;
    }
    absl::Duration wait = Jittered(backoff, random);
    LogInfo("attempt %d failed (%s); retrying in %s", attempt,
            creds.status().message(), absl::FormatDuration(wait));
    absl::SleepFor(wait);
    backoff = std::min(backoff * 2, config.max_backoff);
  }
  if (!creds.ok()) return creds.status();
  // The estimate below is for this moment: the answer just arrived.
  Clock& elapsed = ElapsedClock(config);
  const absl::Time arrived = elapsed.Now();
  if (absl::Status s =
          WriteCredentialSet(config.out, *creds, config.broker.target, random);
      !s.ok()) {
    return s;
  }
  // Remember the authenticated time: later ones never go backwards.
  ApplyTimeFloor(config.out + "/time.json",
                 creds->server_time + creds->round_trip / 2, arrived, BootId());
  return creds;
}

namespace {
// A key in hardware cannot sign inside gRPC's TLS: server-authenticated TLS
// against DIR/ca.pem, and the proof of possession in band.
absl::StatusOr<Credentials> RenewInBand(const AgentConfig& config,
                                        const std::string& imsi,
                                        const std::string& stored,
                                        const std::string& ca_pem,
                                        const std::string& chain_pem,
                                        Clock& clock) {
  auto keys = OpenKeyStore(config.key);
  if (!keys.ok()) return keys.status();
  auto current = (*keys)->Load(stored);
  if (!current.ok()) return current.status();
  auto chain = CertsFromPem(chain_pem);
  if (!chain.ok() || chain->empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.out, "/chain.pem holds no certificate"));
  }
  InBandProof proof;
  proof.current = current->get();
  proof.leaf_der = CertToDer(chain->front().get());
  proof.broker_identity = config.broker.identity;
  return RenewCredentialsInBand(MakeBrokerChannel(config.broker, ca_pem), imsi,
                                proof, **keys, clock, config.options);
}
}  // namespace

absl::StatusOr<Credentials> RenewAndWrite(const AgentConfig& config,
                                          Clock& clock, Random& random) {
  auto ca = ReadFileToString(config.out + "/ca.pem", 1 << 20);
  auto key = ReadFileToString(config.out + "/device.key", 1 << 20);
  auto chain = ReadFileToString(config.out + "/chain.pem", 1 << 20);
  auto meta = ReadFileToString(config.out + "/bootstrap.json", 1 << 20);
  if (!ca.ok() || !key.ok() || !chain.ok() || !meta.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no credentials in ", config.out, " to renew: bootstrap first"));
  }
  auto imsi = ImsiFromBootstrapJson(*meta);
  if (!imsi.ok()) return imsi.status();
  const std::string wanted = KeyStoreName(config.key.kind);
  if (const std::string store = StoreOfBootstrapJson(*meta); store != wanted) {
    OPENSSL_cleanse(key->data(), key->size());
    return absl::FailedPreconditionError(
        absl::StrCat("the key in ", config.out, " is in the ", store,
                     " store, not --key ", wanted,
                     ": renew with the --key it was made "
                     "with, or bootstrap again"));
  }
  absl::StatusOr<Credentials> creds;
  if (config.key.kind == KeySpec::Kind::kFile) {
    creds =
        RenewCredentials(MakeMutualTlsChannel(config.broker, *ca, *key, *chain),
                         *imsi, clock, config.options);
    OPENSSL_cleanse(key->data(), key->size());
  } else {
    creds = RenewInBand(config, *imsi, *key, *ca, *chain, clock);
  }
  if (!creds.ok()) return creds.status();
  if (absl::Status s =
          WriteCredentialSet(config.out, *creds, config.broker.target, random);
      !s.ok()) {
    return s;
  }
  return creds;
}

namespace {
class SystemClockSetter : public ClockSetter {
 public:
  absl::Status Set(absl::Time t) override {
    timespec ts = absl::ToTimespec(t);
    if (clock_settime(CLOCK_REALTIME, &ts) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot set the clock: ", strerror(errno), " (needs CAP_SYS_TIME)"));
    }
    return absl::OkStatus();
  }
};
}  // namespace

ClockSetter& ClockSetter::System() {
  static SystemClockSetter* setter = new SystemClockSetter;
  return *setter;
}

std::string BootId() {
  auto id = ReadFileToString("/proc/sys/kernel/random/boot_id", 128);
  return id.ok() ? std::string(absl::StripAsciiWhitespace(*id)) : "";
}

absl::Time ApplyTimeFloor(const std::string& state_path, absl::Time t,
                          absl::Time now_elapsed, const std::string& boot_id) {
  if (state_path.empty()) return t;
  auto text = ReadFileToString(state_path, 4096);
  if (text.ok()) {
    nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_object() && j.value("boot_id", "") == boot_id &&
        !boot_id.empty() && j.contains("authenticated_unix_ms") &&
        j.contains("elapsed_ms")) {
      const absl::Time floor =
          absl::FromUnixMillis(j["authenticated_unix_ms"].get<int64_t>()) +
          (now_elapsed - absl::FromUnixMillis(j["elapsed_ms"].get<int64_t>()));
      if (t < floor) {
        // Within a round trip or so this is just the estimates' error
        // (+/- RTT/2, millisecond server time); beyond, worth a warning.
        if (floor - t > absl::Seconds(1)) {
          LogWarning(
              "authenticated time is %s earlier than the last one plus the "
              "elapsed time; keeping the later",
              absl::FormatDuration(floor - t));
        }
        t = floor;
      }
    }
  }
  nlohmann::json out;
  out["boot_id"] = boot_id;
  out["authenticated_unix_ms"] = absl::ToUnixMillis(t);
  out["elapsed_ms"] = absl::ToUnixMillis(now_elapsed);
  absl::Status written = MakeDirectories(DirName(state_path), 0700);
  if (written.ok()) {
    written = WriteFileAtomic(state_path, out.dump() + "\n", 0600);
  }
  if (!written.ok()) {
    LogWarning("cannot keep the authenticated time: %s", written.message());
  }
  return t;
}

absl::StatusOr<ClockCheck> CheckClock(const AgentConfig& config, Clock& local,
                                      Random& random, ClockSetter* setter,
                                      absl::Duration max_skew) {
  auto sim = OpenSim(config.sim_spec);
  if (!sim.ok()) return sim.status();
  BootstrapClient client(MakeBrokerChannel(config.broker, config.pinned_ca_pem),
                         config.broker, local, random, config.options);
  auto t = client.Time(**sim);
  Clock& elapsed = ElapsedClock(config);
  const absl::Time arrived = elapsed.Now();  // the moment t describes
  if (!t.ok()) return t.status();
  if (!config.out.empty()) {
    t->time =
        ApplyTimeFloor(config.out + "/time.json", t->time, arrived, BootId());
  }
  ClockCheck check;
  check.authenticated = *t;
  check.local = local.Now();
  check.skew = check.local - t->time;
  if (setter != nullptr && absl::AbsDuration(check.skew) > max_skew) {
    if (absl::Status s = setter->Set(t->time); !s.ok()) return s;
    check.set = true;
  }
  return check;
}

int RunDaemon(const AgentConfig& config, const sigset_t& stop, Clock& clock,
              Random& random) {
  bool ready = false;
  absl::Duration backoff = config.min_backoff;
  std::unique_ptr<TokenFileKeeper> token_keeper;
  if (!config.token_file.empty()) {
    token_keeper = std::make_unique<TokenFileKeeper>(
        config.broker, config.out, config.token_file, config.token_spec,
        config.options.rpc_timeout, clock);
    token_keeper->Start();
  }
  while (true) {
    auto current = ReadCurrentSet(config.out, config.key, clock.Now());
    absl::StatusOr<Credentials> fresh;
    if (!current.ok()) {
      LogInfo("no valid credentials (%s): bootstrapping with the SIM",
              current.status().message());
      fresh = BootstrapAndWrite(config, clock, random);
    } else {
      if (!ready) {
        SdNotify("READY=1");
        ready = true;
      }
      const absl::Time due =
          RenewalTime(current->issued, current->not_after, random);
      const absl::Duration wait = due - clock.Now();
      if (wait > absl::ZeroDuration()) {
        LogInfo("certificate valid until %s; renewing in %s",
                absl::FormatTime(current->not_after),
                absl::FormatDuration(absl::Trunc(wait, absl::Seconds(1))));
        if (SleepOrStop(wait, stop)) break;
        continue;  // re-read: the set may have changed meanwhile
      }
      fresh = RenewAndWrite(config, clock, random);
      if (!fresh.ok() && !Retryable(fresh.status()) &&
          !TlsVerificationFailed(fresh.status())) {
        LogWarning("renewal refused (%s): bootstrapping with the SIM",
                   fresh.status().message());
        fresh = BootstrapAndWrite(config, clock, random);
      }
    }
    if (fresh.ok()) {
      LogInfo("new credentials: serial %s valid until %s",
              fresh->leaf.serial_hex, absl::FormatTime(fresh->leaf.not_after));
      backoff = config.min_backoff;
      RunHook(config.on_renew);
      if (token_keeper) token_keeper->Renewed();
      if (!ready) {
        SdNotify("READY=1");
        ready = true;
      }
      continue;
    }
    // Refusals of the SIM are retried too, but slowly: an operator may
    // import or resume the subscriber.
    if (!Retryable(fresh.status())) backoff = config.max_backoff;
    const absl::Duration wait = Jittered(backoff, random);
    LogWarning("%s; retrying in %s", fresh.status().message(),
               absl::FormatDuration(wait));
    if (SleepOrStop(wait, stop)) break;
    backoff = std::min(backoff * 2, config.max_backoff);
  }
  SdNotify("STOPPING=1");
  if (token_keeper) token_keeper->Stop();
  LogInfo("stopping");
  return kExitOk;
}

}  // namespace simprov
