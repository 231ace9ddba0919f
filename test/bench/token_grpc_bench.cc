// simprov-token-grpc-bench: device token issuance over gRPC (mutual TLS)
// against an empty authenticated call (Tokens.Ping) on the same
// connections, in the same run. Each thread has its own connection.
//
//   simprov-token-grpc-bench --broker HOST:PORT --out DEVICE_DIR
//       [--threads 8] [--seconds 5]
// DEVICE_DIR: credentials from `simprov-agent bootstrap`.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "agent/bootstrap_client.h"
#include "common/atomic_file.h"
#include "simprov/v1/token.grpc.pb.h"

namespace simprov {
namespace {

struct Phase {
  double rate = 0;
  uint64_t errors = 0;
  double broker_us_per_call = 0;  // with --broker-pid
  double bench_us_per_call = 0;   // this load generator's own CPU
};

// CPU seconds (user + system) used so far by process `pid`; 0 if unknown.
double ProcessCpuSeconds(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; fields >> f; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stod(f);
    if (i == 15) {
      stime = std::stod(f);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

Phase RunPhase(const std::vector<std::unique_ptr<v1::Tokens::Stub>>& stubs,
               bool issue, double seconds, int broker_pid) {
  const double cpu0 = ProcessCpuSeconds(broker_pid);
  const double self0 = ProcessCpuSeconds(getpid());
  std::atomic<uint64_t> done{0}, errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& stub : stubs) {
    threads.emplace_back([&, s = stub.get()] {
      while (!stop.load(std::memory_order_relaxed)) {
        grpc::ClientContext ctx;
        grpc::Status st;
        if (issue) {
          v1::IssueTokenRequest req;
          req.add_audience("billing");
          v1::IssueTokenResponse resp;
          st = s->IssueToken(&ctx, req, &resp);
        } else {
          v1::PingRequest req;
          v1::PingResponse resp;
          st = s->Ping(&ctx, req, &resp);
        }
        (st.ok() ? done : errors).fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const double cpu = ProcessCpuSeconds(broker_pid) - cpu0;
  const double self = ProcessCpuSeconds(getpid()) - self0;
  const double n = static_cast<double>(std::max<uint64_t>(done.load(), 1));
  return {static_cast<double>(done.load()) / elapsed, errors.load(),
          1e6 * cpu / n, 1e6 * self / n};
}

int Main(int argc, char** argv) {
  std::string broker, out;
  int threads = 8;
  double seconds = 5;
  int broker_pid = 0;
  CLI::App app{"simprov-token-grpc-bench: token issuance vs an empty call"};
  app.add_option("--broker", broker, "HOST:PORT")->required();
  app.add_option("--out", out, "Device credential directory")->required();
  app.add_option("--threads", threads, "Connections/threads")
      ->capture_default_str();
  app.add_option("--seconds", seconds, "Per phase")->capture_default_str();
  app.add_option("--broker-pid", broker_pid,
                 "The broker's pid: also report its CPU per call (same host)");
  CLI11_PARSE(app, argc, argv);
  auto endpoint = ParseBroker(broker);
  auto ca = ReadFileToString(out + "/ca.pem");
  auto key = ReadFileToString(out + "/device.key");
  auto chain = ReadFileToString(out + "/chain.pem");
  if (!endpoint.ok() || !ca.ok() || !key.ok() || !chain.ok()) {
    std::cerr << "bad --broker or no credentials in " << out << "\n";
    return 1;
  }
  std::vector<std::unique_ptr<v1::Tokens::Stub>> stubs;
  for (int i = 0; i < threads; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("simprov.bench.channel", i);  // one connection each
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca;
    ssl.pem_private_key = *key;
    ssl.pem_cert_chain = *chain;
    stubs.push_back(v1::Tokens::NewStub(grpc::CreateCustomChannel(
        endpoint->target, grpc::SslCredentials(ssl), args)));
  }
  RunPhase(stubs, false, 1, 0);  // warm-up: connections, handshakes
  double ping = 0, issue = 0;
  uint64_t errors = 0;
  for (int round = 0; round < 2; ++round) {
    Phase p = RunPhase(stubs, false, seconds, broker_pid);
    Phase t = RunPhase(stubs, true, seconds, broker_pid);
    std::printf("round %d: empty call %.0f/s, IssueToken %.0f/s (%.0f%%)",
                round + 1, p.rate, t.rate, 100 * t.rate / p.rate);
    if (broker_pid > 0) {
      std::printf("; broker CPU per call: empty %.0f us, IssueToken %.0f us",
                  p.broker_us_per_call, t.broker_us_per_call);
    }
    std::printf("; bench CPU per call: empty %.0f us, IssueToken %.0f us",
                p.bench_us_per_call, t.bench_us_per_call);
    std::printf("\n");
    ping += p.rate / 2;
    issue += t.rate / 2;
    errors += p.errors + t.errors;
  }
  std::printf(
      "mean: empty call %.0f/s, IssueToken %.0f/s: %.0f%% (threads %d, "
      "errors %llu)\n",
      ping, issue, 100 * issue / ping, threads,
      static_cast<unsigned long long>(errors));
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace simprov

int main(int argc, char** argv) { return simprov::Main(argc, argv); }
