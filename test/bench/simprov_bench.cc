// simprov-bench: end-to-end bootstrap throughput against a running broker.
//
//   simprov-bench --broker HOST:PORT --data-dir DIR --devices N
//                 --concurrency C [--connections K] [--broker-ca FILE]
//                 [--broker-pid PID]
//
// 1. Generates N fresh software SIMs (random K/OPc; IMSIs "99999" + a
//    random run prefix + the device index, so repeated runs against the
//    same broker never collide).
// 2. Imports them over the broker's admin socket (DIR/admin.sock), streamed
//    in batches of 500 rows, exactly as `simprov subscribers import` does.
// 3. Times only the bootstraps: N full BootstrapClient::Run (key pair, CSR,
//    AKA through the soft SIM, Enrol, answer and chain verification) with C
//    in flight, over K shared TLS connections (default 4), or with
//    --connections 0 over a fresh channel (fresh TLS handshake) per device.
//
// Progress goes to stderr; the last line on stdout is one JSON object
// (per_second, p50_ms, p90_ms, p99_ms, max_ms, errors, ...). With
// --broker-pid the broker's CPU time over the timed phase is read from
// /proc and reported per bootstrap. Exit code 0 only if every bootstrap
// succeeded (otherwise the code of the first failure, common/exit_codes.h).
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/bootstrap_client.h"
#include "agent/sim/soft_sim.h"
#include "broker/cli/subscriber_importer.h"
#include "common/bytes.h"
#include "common/cli/completion.h"
#include "common/clock.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "common/version.h"
#include "simprov/v1/admin.grpc.pb.h"

namespace simprov {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr size_t kMaxDevices = 1000000;
constexpr int kMaxConcurrency = 4096;
constexpr int kMaxConnections = 1024;
constexpr int kImportAttempts = 3;
constexpr size_t kErrorsShown = 5;

struct Flags {
  std::string broker;
  std::string data_dir;
  std::string admin_socket;
  std::string broker_ca;
  size_t devices = 1000;
  int concurrency = 32;
  int connections = 4;
  int broker_pid = 0;
  double rpc_timeout_s = 10;
  double connect_timeout_s = 10;
};

int Fail(const absl::Status& s) {
  std::cerr << "simprov-bench: " << s.message() << "\n";
  int rc = ExitCodeFor(s);
  return rc == kExitOk ? kExitError : rc;
}

// ---- SIMs -------------------------------------------------------------------

struct Device {
  std::string imsi;
  std::string k_hex;
  std::string opc_hex;
  std::unique_ptr<SoftSim> sim;
};

// Number of decimal digits needed for the indices 0..n-1.
int IndexDigits(size_t n) {
  int d = 1;
  for (size_t v = n > 0 ? n - 1 : 0; v >= 10; v /= 10) ++d;
  return d;
}

// "99999" (MCC 999, reserved for private/test networks) + a random run
// prefix + the zero-padded index: always 15 digits.
absl::StatusOr<std::vector<Device>> MakeDevices(size_t n, Random& random) {
  const int index_digits = IndexDigits(n);
  const int prefix_digits = 10 - index_digits;  // >= 4 for n <= 1e6
  std::string run_prefix;
  Bytes r = random.Generate(static_cast<size_t>(prefix_digits));
  for (uint8_t b : r) run_prefix.push_back(static_cast<char>('0' + b % 10));
  std::vector<Device> devices(n);
  for (size_t i = 0; i < n; ++i) {
    Device& d = devices[i];
    std::string index = std::to_string(i);
    index.insert(0, static_cast<size_t>(index_digits) - index.size(), '0');
    d.imsi = absl::StrCat("99999", run_prefix, index);
    Bytes k = random.Generate(16);
    Bytes opc = random.Generate(16);
    d.k_hex = HexEncode(k);
    d.opc_hex = HexEncode(opc);
    auto sim = SoftSim::InMemory(d.imsi, k, opc);
    SecureWipe(k);
    SecureWipe(opc);
    if (!sim.ok()) return sim.status();
    d.sim = std::move(*sim);
  }
  return devices;
}

// ---- Import over the admin socket -------------------------------------------

absl::Status Import(const std::string& socket_path,
                    const std::vector<Device>& devices) {
  auto channel = grpc::CreateChannel("unix:" + socket_path,
                                     grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(5))) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the broker's admin socket ", socket_path,
                     " (is simprov-broker running with this --data-dir?)"));
  }
  auto stub = v1::Admin::NewStub(channel);
  SubscriberImporter importer(*stub);
  uint64_t total = 0;
  for (const Device& d : devices) {
    v1::ImportRow row;
    row.set_line(total + 2);  // as if from a CSV file with a header line
    row.set_imsi(d.imsi);
    row.set_ki(d.k_hex);
    row.set_opc(d.opc_hex);
    ++total;
    if (!importer.Add(std::move(row))) break;  // refused; Finish says why
  }
  auto imported = importer.Finish();
  if (!imported.ok()) {
    return absl::Status(imported.status().code(),
                        absl::StrCat("import: ", imported.status().message()));
  }
  if (*imported != total) {
    return absl::InternalError(absl::StrCat("import: broker imported ",
                                            *imported, " of ", total, " rows"));
  }
  return absl::OkStatus();
}

// ---- Channels ---------------------------------------------------------------

// MakeBrokerChannel's credentials and arguments, plus a local subchannel
// pool and a per-channel tag: gRPC shares a subchannel (one TCP/TLS
// connection) between channels whose arguments compare equal, so without
// these K "channels" could be one connection.
std::shared_ptr<grpc::Channel> MakeBenchChannel(const BrokerEndpoint& broker,
                                                const std::string& ca_pem,
                                                int64_t tag) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetString("simprov.bench.channel", std::to_string(tag));
  return MakeBrokerChannel(broker, ca_pem, std::move(args));
}

// ---- CPU accounting ---------------------------------------------------------

// utime + stime of a process in microseconds, from /proc/PID/stat.
std::optional<double> ProcessCpuUs(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may contain
  // spaces: state(3) ... utime(14) stime(15).
  size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  if (!rest) return std::nullopt;
  const double tick_us = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  return static_cast<double>(utime + stime) * tick_us;
}

// Busy and total CPU time of the whole host, in microseconds, from the
// "cpu" line of /proc/stat (busy = everything but idle and iowait). Lets a
// run tell how much of the machine other processes were using.
struct HostCpu {
  double busy_us = 0;
  double total_us = 0;
};
std::optional<HostCpu> ReadHostCpu() {
  std::ifstream in("/proc/stat");
  std::string label;
  if (!(in >> label) || label != "cpu") return std::nullopt;
  // user nice system idle iowait irq softirq steal
  unsigned long long v[8] = {};
  for (auto& x : v) {
    if (!(in >> x)) return std::nullopt;
  }
  const double tick_us = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  HostCpu h;
  h.busy_us =
      static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * tick_us;
  h.total_us = h.busy_us + static_cast<double>(v[3] + v[4]) * tick_us;
  return h;
}

double SelfCpuUs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) * 1e6 +
           static_cast<double>(tv.tv_usec);
  };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

// ---- The timed phase --------------------------------------------------------

struct Outcome {
  double latency_ms = 0;
  bool ok = false;
};

class ErrorLog {
 public:
  void Add(const absl::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!first_) first_ = s;
    std::string key = absl::StrCat(absl::StatusCodeToString(s.code()), ": ",
                                   std::string(s.message()));
    auto [it, inserted] = counts_.try_emplace(key, 0);
    ++it->second;
    if (inserted) order_.push_back(key);
  }
  void Print() const {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < order_.size() && i < kErrorsShown; ++i) {
      std::cerr << "simprov-bench: error (x" << counts_.at(order_[i])
                << "): " << order_[i] << "\n";
    }
    if (order_.size() > kErrorsShown) {
      std::cerr << "simprov-bench: ... and " << order_.size() - kErrorsShown
                << " more distinct errors\n";
    }
  }
  std::optional<absl::Status> first() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_;
  }

 private:
  mutable std::mutex mu_;
  std::optional<absl::Status> first_;
  std::map<std::string, size_t> counts_;
  std::vector<std::string> order_;
};

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank.
  size_t rank = static_cast<size_t>(
      std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  if (rank < 1) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

double Round3(double v) { return std::round(v * 1000.0) / 1000.0; }

int Run(const Flags& f) {
  // Validate everything before touching the broker.
  if (f.devices < 1 || f.devices > kMaxDevices) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--devices must be between 1 and ", kMaxDevices)));
  }
  if (f.concurrency < 1 || f.concurrency > kMaxConcurrency) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--concurrency must be between 1 and ", kMaxConcurrency)));
  }
  if (f.connections < 0 || f.connections > kMaxConnections) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--connections must be between 0 (a fresh connection per device) "
        "and ",
        kMaxConnections)));
  }
  if (!(f.rpc_timeout_s > 0) || !(f.connect_timeout_s > 0)) {
    return Fail(
        absl::InvalidArgumentError("timeouts must be positive (seconds)"));
  }
  auto endpoint = ParseBroker(f.broker);
  if (!endpoint.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--broker ", f.broker, ": ", endpoint.status().message())));
  }
  std::string ca_pem;
  if (!f.broker_ca.empty()) {
    std::ifstream in(f.broker_ca, std::ios::binary);
    if (!in) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--broker-ca: cannot read ", f.broker_ca)));
    }
    ca_pem.assign(std::istreambuf_iterator<char>(in),
                  std::istreambuf_iterator<char>());
    if (ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--broker-ca: ", f.broker_ca, " holds no PEM certificate")));
    }
  }
  std::string socket_path = f.admin_socket;
  if (socket_path.empty()) {
    if (f.data_dir.empty()) {
      return Fail(absl::InvalidArgumentError(
          "say where the broker's admin socket is: --data-dir DIR or "
          "--admin-socket PATH"));
    }
    socket_path = f.data_dir + "/admin.sock";
  }
  if (f.broker_pid > 0 && !ProcessCpuUs(f.broker_pid)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--broker-pid: cannot read /proc/", f.broker_pid, "/stat")));
  }

  Random& random = Random::Real();
  const size_t n = f.devices;

  // 1. Shared connections, established first (a wrong address or --broker-ca
  // fails before anything is imported) and before the clock starts.
  // With --connections 0 one probe connection is made and dropped.
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < std::max(f.connections, 1); ++i) {
    channels.push_back(MakeBenchChannel(*endpoint, ca_pem, i));
  }
  const auto connect_deadline = std::chrono::system_clock::now() +
                                std::chrono::milliseconds(static_cast<int64_t>(
                                    f.connect_timeout_s * 1000));
  for (auto& ch : channels) {
    if (!ch->WaitForConnected(connect_deadline)) {
      return Fail(absl::UnavailableError(absl::StrCat(
          "cannot connect to the broker at ", f.broker,
          " (TLS; is it listening there",
          ca_pem.empty() ? "?)" : ", and does --broker-ca match?)")));
    }
  }
  if (f.connections == 0) channels.clear();

  // 2. SIMs and import. A run prefix that collides with an earlier run's
  // (unlikely: >= 4 random digits) makes the all-or-nothing import fail
  // on a duplicate IMSI; then draw another prefix.
  std::vector<Device> devices;
  double import_s = 0;
  for (int attempt = 1;; ++attempt) {
    auto made = MakeDevices(n, random);
    if (!made.ok()) return Fail(made.status());
    devices = std::move(*made);
    std::cerr << "simprov-bench: importing " << n << " subscribers ("
              << devices.front().imsi << " .. " << devices.back().imsi
              << ") over " << socket_path << "\n";
    const auto t0 = SteadyClock::now();
    absl::Status imported = Import(socket_path, devices);
    import_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    if (imported.ok()) break;
    const bool duplicate =
        absl::StrContains(imported.message(), "duplicate IMSI");
    if (!duplicate || attempt >= kImportAttempts) return Fail(imported);
    std::cerr << "simprov-bench: IMSI prefix already used; drawing another\n";
  }
  std::cerr << "simprov-bench: imported in " << import_s << " s\n";

  // 3. The timed phase.
  AgentOptions options;
  options.rpc_timeout = absl::Milliseconds(f.rpc_timeout_s * 1000);
  std::vector<Outcome> outcomes(n);
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::atomic<int64_t> channel_tag{std::max(f.connections, 1)};
  ErrorLog errors;
  std::atomic<size_t> error_count{0};

  auto worker = [&] {
    while (true) {
      const size_t i = next.fetch_add(1);
      if (i >= n) return;
      const auto t0 = SteadyClock::now();
      std::shared_ptr<grpc::Channel> channel =
          f.connections > 0
              ? channels[i % channels.size()]
              : MakeBenchChannel(*endpoint, ca_pem, channel_tag.fetch_add(1));
      BootstrapClient client(std::move(channel), *endpoint, Clock::Real(),
                             random, options);
      auto creds = client.Run(*devices[i].sim);
      const auto t1 = SteadyClock::now();
      outcomes[i].latency_ms =
          std::chrono::duration<double, std::milli>(t1 - t0).count();
      outcomes[i].ok = creds.ok();
      if (!creds.ok()) {
        errors.Add(creds.status());
        error_count.fetch_add(1);
      }
      done.fetch_add(1);
    }
  };

  std::cerr << "simprov-bench: " << n << " bootstraps, concurrency "
            << f.concurrency << ", "
            << (f.connections > 0
                    ? absl::StrCat(f.connections, " shared connections")
                    : std::string("a fresh connection per device"))
            << "\n";
  const std::optional<double> broker_cpu0 =
      f.broker_pid > 0 ? ProcessCpuUs(f.broker_pid) : std::nullopt;
  const double self_cpu0 = SelfCpuUs();
  const std::optional<HostCpu> host0 = ReadHostCpu();
  const auto start = SteadyClock::now();

  std::mutex progress_mu;
  std::condition_variable progress_cv;
  bool finished = false;
  std::thread progress([&] {
    std::unique_lock<std::mutex> lock(progress_mu);
    while (!progress_cv.wait_for(lock, std::chrono::seconds(2),
                                 [&] { return finished; })) {
      const double s =
          std::chrono::duration<double>(SteadyClock::now() - start).count();
      const size_t d = done.load();
      std::fprintf(stderr, "simprov-bench: %zu/%zu done, %zu errors, %.0f/s\n",
                   d, n, error_count.load(),
                   s > 0 ? static_cast<double>(d) / s : 0);
    }
  });

  std::vector<std::thread> workers;
  const size_t threads =
      std::min<size_t>(static_cast<size_t>(f.concurrency), n);
  workers.reserve(threads);
  for (size_t t = 0; t < threads; ++t) workers.emplace_back(worker);
  for (auto& t : workers) t.join();

  const double seconds =
      std::chrono::duration<double>(SteadyClock::now() - start).count();
  const double self_cpu1 = SelfCpuUs();
  const std::optional<HostCpu> host1 = ReadHostCpu();
  const std::optional<double> broker_cpu1 =
      f.broker_pid > 0 ? ProcessCpuUs(f.broker_pid) : std::nullopt;
  {
    std::lock_guard<std::mutex> lock(progress_mu);
    finished = true;
  }
  progress_cv.notify_all();
  progress.join();

  std::vector<double> lat;
  lat.reserve(n);
  double sum = 0;
  for (const Outcome& o : outcomes) {
    if (!o.ok) continue;
    lat.push_back(o.latency_ms);
    sum += o.latency_ms;
  }
  std::sort(lat.begin(), lat.end());
  const size_t ok = lat.size();
  const size_t failed = n - ok;

  nlohmann::json out;
  out["devices"] = n;
  out["concurrency"] = f.concurrency;
  out["connections"] = f.connections;
  out["ok"] = ok;
  out["errors"] = failed;
  out["seconds"] = Round3(seconds);
  out["per_second"] =
      Round3(seconds > 0 ? static_cast<double>(ok) / seconds : 0);
  out["p50_ms"] = Round3(Percentile(lat, 50));
  out["p90_ms"] = Round3(Percentile(lat, 90));
  out["p99_ms"] = Round3(Percentile(lat, 99));
  out["max_ms"] = Round3(lat.empty() ? 0 : lat.back());
  out["mean_ms"] = Round3(ok > 0 ? sum / static_cast<double>(ok) : 0);
  out["import_seconds"] = Round3(import_s);
  out["bench_cpu_us_per_bootstrap"] =
      Round3((self_cpu1 - self_cpu0) / static_cast<double>(n));
  double broker_cpu_us = 0;
  if (broker_cpu0 && broker_cpu1) {
    broker_cpu_us = *broker_cpu1 - *broker_cpu0;
    out["broker_cpu_us_per_bootstrap"] =
        Round3(broker_cpu_us / static_cast<double>(n));
  }
  if (host0 && host1 && seconds > 0) {
    // In cores: 2.0 = two cores busy for the whole timed phase. "others"
    // is what neither this process nor the broker (with --broker-pid) used:
    // noise from whatever else runs on the host.
    const double busy = host1->busy_us - host0->busy_us;
    out["host_busy_cores"] = Round3(busy / (seconds * 1e6));
    out["host_cores"] =
        Round3((host1->total_us - host0->total_us) / (seconds * 1e6));
    out["others_busy_cores"] =
        Round3(std::max(0.0, busy - (self_cpu1 - self_cpu0) - broker_cpu_us) /
               (seconds * 1e6));
  }

  if (failed > 0) {
    std::cerr << "simprov-bench: " << failed << " of " << n
              << " bootstraps failed\n";
    errors.Print();
  }
  std::cout << out.dump() << std::endl;
  if (failed == 0) return kExitOk;
  auto first = errors.first();
  const int rc = first ? ExitCodeFor(*first) : kExitError;
  return rc == kExitOk ? kExitError : rc;
}

}  // namespace
}  // namespace simprov

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: every absl::Mutex, gRPC's
  // included, runs deadlock detection (1.6 % of this load generator's CPU).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  simprov::Flags f;
  CLI::App app{
      "simprov-bench: end-to-end bootstrap throughput. Imports N fresh soft "
      "SIMs through the broker's admin socket, then times N full bootstraps "
      "(the agent's own code) with C in flight. The last stdout line is a "
      "JSON summary."};
  app.set_version_flag("--version",
                       std::string("simprov-bench ") + simprov::kVersion);
  app.add_option("--broker", f.broker, "The broker's device API, HOST:PORT")
      ->required();
  app.add_option("--data-dir", f.data_dir,
                 "The broker's data directory (admin socket DIR/admin.sock)");
  app.add_option("--admin-socket", f.admin_socket,
                 "Path of the broker's admin socket (overrides --data-dir)");
  app.add_option("--devices", f.devices, "Number of SIMs to bootstrap")
      ->capture_default_str();
  app.add_option("--concurrency", f.concurrency,
                 "Bootstraps in flight (worker threads)")
      ->capture_default_str();
  app.add_option("--connections", f.connections,
                 "Shared TLS connections; 0 = a fresh connection per device")
      ->capture_default_str();
  app.add_option("--broker-ca", f.broker_ca,
                 "Pin the broker's TLS certificate to this CA (PEM); "
                 "default: TLS unverified, the sealed answer authenticates");
  app.add_option("--broker-pid", f.broker_pid,
                 "Report the broker's CPU time per bootstrap (same host; "
                 "read from /proc/PID/stat)");
  app.add_option("--rpc-timeout", f.rpc_timeout_s,
                 "Deadline of each RPC, seconds")
      ->capture_default_str();
  app.add_option("--connect-timeout", f.connect_timeout_s,
                 "How long to wait for the shared connections, seconds")
      ->capture_default_str();
  std::string completion_shell;
  CLI::App* completion = simprov::AddCompletionCommand(app, &completion_shell);
  if (simprov::HandleCompletion(app, "simprov-bench", argc, argv)) return 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? simprov::kExitOk : simprov::kExitUsage;
  }
  if (completion->parsed()) {
    std::cout << simprov::CompletionScript(app, "simprov-bench",
                                           completion_shell);
    return 0;
  }
  return simprov::Run(f);
}
