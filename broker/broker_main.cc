// simprov-broker: the cloud service. Thin: flags, data dir, servers,
// signals. The logic lives in bootstrap_service, admin_service and store.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "broker/admin/access_service.h"
#include "broker/admin/admin_listener.h"
#include "broker/admin/admin_service.h"
#include "broker/ca/crl_http.h"
#include "broker/ca/crl_publisher.h"
#include "broker/config_file.h"
#include "broker/data_dir.h"
#include "broker/enrol/bootstrap_service.h"
#include "broker/fleet/fleet_hooks.h"
#include "broker/fleet/fleet_service.h"
#include "broker/keys/kek_rotation.h"
#include "broker/ops/backup.h"
#include "broker/ops/broker_metrics.h"
#include "broker/ops/metrics.h"
#include "broker/ops/ops_service.h"
#include "broker/policy/group_policies.h"
#include "broker/registry/registry_outbox.h"
#include "broker/registry/registry_service.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/tokens/token_http.h"
#include "broker/tokens/token_service.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "common/log.h"

namespace simprov {
namespace {

struct Flags {
  std::string data_dir;
  std::string listen = "127.0.0.1:7443";
  std::string http_listen;
  std::vector<std::string> public_names;
  std::string cert_ttl = "30d";
  std::string session_ttl = "60s";
  int rate_burst = 10;
  std::string rate_refill = "2s";
  std::string log_level = "info";
  std::string public_url;
  std::string crl_validity = "24h";
  // Tokens (docs/tokens.md).
  std::string token_issuer;
  std::vector<std::string> token_audiences;
  std::string token_alg = "ES256";
  std::string token_rotation = "24h";
  std::string token_ttl = "10m";
  std::string token_max_ttl = "1h";
  RegistryFlags registry;  // docs/registry.md
  // Operator CA and remote admin (docs/broker.md).
  OperatorCaFiles ca;
  std::string ca_activate_after = "7d";
  std::string admin_listen;
  // Operations (docs/operations.md).
  std::string kek_file;
};

int Fail(const absl::Status& s) {
  std::cerr << "simprov-broker: " << s.message() << "\n";
  return ExitCodeFor(s) == kExitOk ? kExitError : ExitCodeFor(s);
}

bool IsWildcard(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host.empty();
}

struct TokensConfig {
  TokenOptions options;
  std::unique_ptr<TokenKeyManager> keys;
};

absl::StatusOr<TokensConfig> ConfigureTokens(const Flags& f,
                                             const DataDirPaths& paths,
                                             Clock& clock) {
  TokensConfig c;
  auto ttl = ParseHumanDuration(f.token_ttl);
  if (!ttl.ok()) return ttl.status();
  auto max_ttl = ParseHumanDuration(f.token_max_ttl);
  if (!max_ttl.ok()) return max_ttl.status();
  auto rotation = ParseHumanDuration(f.token_rotation);
  if (!rotation.ok()) return rotation.status();
  if (*max_ttl < absl::Seconds(10) || *max_ttl > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        "--token-max-ttl must be between 10s and 1h");
  }
  if (*ttl < absl::Seconds(10) || *ttl > *max_ttl) {
    return absl::InvalidArgumentError(
        "--token-ttl must be between 10s and --token-max-ttl");
  }
  if (*rotation < absl::Minutes(1)) {
    return absl::InvalidArgumentError("--token-rotation must be at least 1m");
  }
  c.options.issuer = f.token_issuer;
  c.options.audiences.insert(f.token_audiences.begin(),
                             f.token_audiences.end());
  c.options.default_ttl = *ttl;
  c.options.max_ttl = *max_ttl;
  if (absl::Status s = MakeDirectories(paths.root + "/tokens", 0700); !s.ok()) {
    return s;
  }
  TokenKeyOptions ko;
  ko.alg = f.token_alg;
  ko.rotation_period = *rotation;
  ko.max_token_lifetime = *max_ttl;
  ko.path = paths.root + "/tokens/keys.json";
  auto keys = TokenKeyManager::Open(ko, clock);
  if (!keys.ok()) return keys.status();
  c.keys = std::move(*keys);
  return c;
}

int Run(const Flags& f) {
  // Debian's Abseil is built with absl::Mutex deadlock detection on, which
  // records a lock graph on every gRPC mutex acquisition (~2% of the
  // broker's CPU). The broker's own locks are std::mutex.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (f.log_level == "debug") SetLogLevel(LogLevel::kDebug);
  if (f.log_level == "warning") SetLogLevel(LogLevel::kWarning);
  if (f.log_level == "error") SetLogLevel(LogLevel::kError);

  auto listen = ParseHostPort(f.listen);
  if (!listen.ok()) return Fail(listen.status());
  auto cert_ttl = ParseHumanDuration(f.cert_ttl);
  if (!cert_ttl.ok()) return Fail(cert_ttl.status());
  auto session_ttl = ParseHumanDuration(f.session_ttl);
  if (!session_ttl.ok()) return Fail(session_ttl.status());
  if (*session_ttl <= absl::ZeroDuration() ||
      *session_ttl > absl::Seconds(60)) {
    return Fail(absl::InvalidArgumentError(
        "--session-ttl must be between 1ms and 60s"));
  }
  if (*cert_ttl < absl::Seconds(1)) {
    return Fail(absl::InvalidArgumentError("--cert-ttl must be at least 1s"));
  }
  auto crl_validity = ParseHumanDuration(f.crl_validity);
  if (!crl_validity.ok()) return Fail(crl_validity.status());
  if (*crl_validity < absl::Minutes(1)) {
    return Fail(absl::InvalidArgumentError("--crl-validity must be >= 1m"));
  }
  auto refill = ParseHumanDuration(f.rate_refill);
  if (!refill.ok()) return Fail(refill.status());
  if (f.rate_burst < 1) {
    return Fail(absl::InvalidArgumentError("--rate-burst must be at least 1"));
  }

  // Bad operator CA files are refused before the data dir is touched.
  if (!f.ca.empty()) {
    if (auto m = ReadOperatorCa(f.ca, Clock::Real().Now()); !m.ok()) {
      return Fail(m.status());
    }
  }

  // Every file the broker creates is private: keys, store, socket.
  umask(077);
  DataDirPaths paths(f.data_dir);
  if (absl::Status s = MakeDirectories(paths.root, 0700); !s.ok()) {
    return Fail(s);
  }
  Clock& clock = Clock::Real();
  Random& random = Random::Real();
  // The KEK lives in DIR/kek unless --kek-file keeps it elsewhere.
  const std::string kek_path = f.kek_file.empty() ? paths.kek() : f.kek_file;
  if (!f.kek_file.empty() && PathExists(paths.kek())) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        paths.kek(), " exists: this data dir keeps its own KEK; move it to ",
        f.kek_file, " before starting with --kek-file")));
  }
  if (!f.kek_file.empty() && !PathExists(f.kek_file) &&
      PathExists(paths.store())) {
    return Fail(absl::NotFoundError(
        absl::StrCat("--kek-file ", f.kek_file,
                     " does not exist, and the store already holds sealed "
                     "keys (give the KEK they were sealed under)")));
  }
  auto kek = LoadKekRing(kek_path, random);
  if (!kek.ok()) return Fail(kek.status());
  auto activate_after = ParseHumanDuration(f.ca_activate_after);
  if (!activate_after.ok()) return Fail(activate_after.status());
  auto ca = LoadOrCreateCa(paths, clock, random, f.ca, *activate_after);
  if (!ca.ok()) return Fail(ca.status());
  // A staged CA whose time has come signs from this start on.
  if (auto a = (*ca)->MaybeActivateStaged(false); !a.ok()) {
    return Fail(a.status());
  }
  auto admin_ca = LoadOrCreateAdminCa(paths, clock, random);
  if (!admin_ca.ok()) return Fail(admin_ca.status());
  auto admin_revocations =
      AdminRevocations::Load(paths.admin_ca_dir() + "/revoked");
  if (!admin_revocations.ok()) return Fail(admin_revocations.status());
  SetAdminRevocations(admin_revocations->get());
  // Before the store: its destructor still writes (the audit flush) and
  // reports the write to the metrics.
  MetricsRegistry metrics_registry;
  BrokerMetrics metrics(metrics_registry);
  auto store = SqliteStore::Open(paths.store(), clock);
  if (!store.ok()) return Fail(store.status());
  (*store)->SetWriteObserver(
      [&metrics](absl::Duration d) { metrics.ObserveStoreWrite(d); });
  KekRotator rotator(**store, **kek, kek_path, clock, random);
  KekRing* ring = kek->get();
  metrics_registry.AddGauge(
      "simprov_kek_rotation_in_progress",
      "1 while a KEK rotation runs (KEKFILE.next exists), else 0",
      [ring] { return ring->rotating() ? 1.0 : 0.0; });
  if (auto resumed = rotator.ResumePending(); !resumed.ok()) {
    return Fail(resumed.status());
  }

  GroupPolicies policies(**store);
  auto tokens_config = ConfigureTokens(f, paths, clock);
  if (!tokens_config.ok()) return Fail(tokens_config.status());
  tokens_config->options.policies = &policies;
  tokens_config->options.metrics = &metrics;
  TokenService tokens(tokens_config->options, **store, **ca,
                      *tokens_config->keys, clock, random);
  TokenGrpcService token_service(tokens);
  TokenAdminGrpcService token_admin_service(tokens);

  BootstrapOptions options;
  std::vector<std::string> names;
  if (!IsWildcard(listen->host)) names.push_back(listen->host);
  for (const std::string& n : f.public_names) names.push_back(n);
  if (names.empty()) {
    return Fail(absl::InvalidArgumentError(
        "listening on a wildcard address needs at least one --public-name"));
  }
  options.names.insert(names.begin(), names.end());
  options.cert_ttl = *cert_ttl;
  options.session_ttl = *session_ttl;
  options.rate_burst = f.rate_burst;
  options.rate_refill = *refill;
  auto tls = IssueTlsIdentity(paths, **ca, names);
  if (!tls.ok()) return Fail(tls.status());

  CrlPublisher crl(**store, **ca, clock, paths.root + "/ca.crl", *crl_validity);
  if (absl::Status s = crl.Regenerate(); !s.ok()) return Fail(s);
  options.policies = &policies;
  options.crl = &crl;
  options.metrics = &metrics;
  auto outbox = ConfigureRegistries(f.registry, **store, clock, random);
  if (!outbox.ok()) return Fail(outbox.status());
  options.issuance = outbox->get();
  {
    SqliteStore* st = store->get();
    auto stat = [st, &clock](auto field) {
      return [st, &clock, field] {
        auto s = st->GetOutboxStats(clock.Now());
        return s.ok() ? field(*s) : -1.0;  // -1: the store did not answer
      };
    };
    metrics.RegisterOutbox(
        stat([](const OutboxStats& s) { return static_cast<double>(s.depth); }),
        stat([](const OutboxStats& s) {
          return absl::ToDoubleSeconds(s.oldest_age);
        }));
  }
  SetDeviceRevokedListener(
      [&outbox](const DeviceRevocation&) { (*outbox)->Wake(); });
  DeviceRegistryGrpcService device_registry_service(**outbox, **store, **ca,
                                                    clock);
  RegistryAdminGrpcService registry_admin_service(**store, clock);
  Bootstrapper bootstrapper(options, **store, **ca, **kek, clock, random);
  FleetGrpcService fleet_service(**store, policies, crl, clock, random);
  BootstrapGrpcService bootstrap_service(bootstrapper);
  AdminGrpcService admin_service(**store, **kek, clock, random);
  AccessGrpcService access_service(**ca, **admin_ca, **admin_revocations,
                                   **store, clock);
  OpsGrpcService ops_service(rotator, kek_path, **store, paths.root, clock);
  std::vector<grpc::Service*> admin_services = {
      &admin_service,  &fleet_service,          &token_admin_service,
      &access_service, &registry_admin_service, &ops_service};

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  ssl.pem_key_cert_pairs.push_back({tls->key_pem, tls->chain_pem});
  int bound_port = 0;
  grpc::ServerBuilder device_builder;
  device_builder.AddListeningPort(f.listen, grpc::SslServerCredentials(ssl),
                                  &bound_port);
  device_builder.RegisterService(&bootstrap_service);
  device_builder.RegisterService(&token_service);
  device_builder.RegisterService(&device_registry_service);
  // gRPC 1.51's sync server keeps at most 2 pollers by default and creates
  // and destroys threads under load (~270 us of CPU per bootstrap measured).
  device_builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 64);
  std::unique_ptr<grpc::Server> device_server = device_builder.BuildAndStart();
  if (!device_server || bound_port == 0) {
    return Fail(
        absl::UnavailableError(absl::StrCat("cannot listen on ", f.listen)));
  }

  unlink(paths.admin_socket().c_str());
  grpc::ServerBuilder admin_builder;
  admin_builder.AddListeningPort("unix:" + paths.admin_socket(),
                                 grpc::InsecureServerCredentials());
  // Remote admin: the same services over mTLS with admin certificates;
  // admin_auth.h tells the two transports apart.
  int admin_port = 0;
  if (!f.admin_listen.empty()) {
    auto creds = AdminServerCredentials(**admin_ca, f.admin_listen);
    if (!creds.ok()) return Fail(creds.status());
    admin_builder.AddListeningPort(f.admin_listen, *creds, &admin_port);
  }
  for (grpc::Service* service : admin_services) {
    admin_builder.RegisterService(service);
  }
  std::unique_ptr<grpc::Server> admin_server = admin_builder.BuildAndStart();
  if (!admin_server || (!f.admin_listen.empty() && admin_port == 0)) {
    return Fail(absl::UnavailableError(
        absl::StrCat("cannot listen on ", paths.admin_socket(),
                     f.admin_listen.empty() ? "" : " or " + f.admin_listen)));
  }
  chmod(paths.admin_socket().c_str(), 0600);
  if (admin_port != 0) {
    const std::string host = ParseHostPort(f.admin_listen)->host;
    const std::string admin_bound = absl::StrCat(
        host.find(':') != std::string::npos ? absl::StrCat("[", host, "]")
                                            : host,
        ":", admin_port);
    if (absl::Status s =
            WriteFileAtomic(paths.admin_address(), admin_bound + "\n", 0644);
        !s.ok()) {
      return Fail(s);
    }
    LogInfo("remote admin (mTLS, admin certificates) on %s", admin_bound);
  }

  std::unique_ptr<httplib::Server> http;
  std::thread http_thread;
  std::string http_bound;
  if (!f.http_listen.empty()) {
    auto hp = ParseHostPort(f.http_listen);
    if (!hp.ok()) return Fail(hp.status());
    http = std::make_unique<httplib::Server>();
    const std::string anchors = (*ca)->TrustAnchorsPem();
    http->Get("/healthz", [](const httplib::Request&, httplib::Response& r) {
      r.set_content("ok\n", "text/plain");
    });
    // Ready: the store answers a read and the CA is loaded.
    SqliteStore* store_ptr = store->get();
    CertificateAuthority* ca_ptr = ca->get();
    const std::string store_path = paths.store();
    http->Get("/readyz", [store_ptr, ca_ptr, anchors, store_path](
                             const httplib::Request&, httplib::Response& r) {
      std::string why;
      // An open connection keeps reading a deleted file: check the path.
      if (!PathExists(store_path)) {
        why = absl::StrCat("store unreachable: ", store_path, " is missing");
      } else if (auto v = store_ptr->SchemaVersion(); !v.ok()) {
        why = absl::StrCat("store unreachable: ", v.status().message());
      } else if (ca_ptr == nullptr || anchors.empty()) {
        why = "CA not loaded";
      }
      if (why.empty()) {
        r.set_content("ready\n", "text/plain");
      } else {
        r.status = 503;
        r.set_content(why + "\n", "text/plain");
      }
    });
    http->Get("/metrics", [&metrics_registry](const httplib::Request&,
                                              httplib::Response& r) {
      r.set_content(metrics_registry.Render(),
                    "text/plain; version=0.0.4; charset=utf-8");
    });
    http->Get("/ca.pem",
              [anchors](const httplib::Request&, httplib::Response& r) {
                r.set_content(anchors, "application/x-pem-file");
              });
    RegisterCrlRoutes(*http, crl);
    RegisterTokenRoutes(*http, tokens);
    int http_port =
        hp->port == 0
            ? http->bind_to_any_port(hp->host)
            : (http->bind_to_port(hp->host, hp->port) ? hp->port : -1);
    if (http_port <= 0) {
      return Fail(absl::UnavailableError(
          absl::StrCat("cannot listen on ", f.http_listen)));
    }
    http_bound = absl::StrCat(hp->host, ":", http_port);
    crl.SetUrl(CrlUrl(f.public_url, hp->host, http_port, names.front()));
    if (f.token_issuer.empty()) {
      tokens.SetIssuer(hp->host.find(':') != std::string::npos
                           ? absl::StrCat("http://[", hp->host, "]:", http_port)
                           : "http://" + http_bound);
    }
    http_thread = std::thread([&http] { http->listen_after_bind(); });
  }

  if (!http) crl.SetUrl(CrlUrl(f.public_url, "", 0, ""));
  const std::string bound =
      listen->host.find(':') != std::string::npos
          ? absl::StrCat("[", listen->host, "]:", bound_port)
          : absl::StrCat(listen->host, ":", bound_port);
  if (!http_bound.empty()) {
    if (absl::Status s =
            WriteFileAtomic(paths.http_address(), http_bound + "\n", 0644);
        !s.ok()) {
      return Fail(s);
    }
    LogInfo("HTTP (/healthz, /readyz, /metrics, /ca.pem, %s) on %s",
            kCrlHttpPath, http_bound);
  }
  // Written last: its presence means the broker serves.
  if (absl::Status s =
          WriteFileAtomic(paths.listen_address(), bound + "\n", 0644);
      !s.ok()) {
    return Fail(s);
  }
  LogInfo(
      "simprov-broker serving the device API on %s (names: %s), admin on %s",
      bound, absl::StrJoin(names, ", "), paths.admin_socket());

  (*outbox)->Start();
  // Sweeper: expires sessions and idle rate-limit buckets.
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread sweeper([&] {
    std::unique_lock<std::mutex> lock(stop_mu);
    while (!stop_cv.wait_for(lock, std::chrono::seconds(5),
                             [&] { return stopping; })) {
      bootstrapper.Sweep();
      if (absl::Status s = crl.MaybeRefresh(); !s.ok()) {
        LogError("CRL refresh: %s", s.message());
      }
      tokens.Sweep();
      if (auto a = (*ca)->MaybeActivateStaged(false); !a.ok()) {
        LogError("CA activation: %s", a.status().message());
      } else if (*a) {
        LogInfo("staged CA activated: it signs from now on");
      }
    }
  });

  // Signals were blocked in main(); wait for one here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  LogInfo("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");

  const auto deadline =
      std::chrono::system_clock::now() + std::chrono::seconds(5);
  device_server->Shutdown(deadline);
  admin_server->Shutdown(deadline);
  if (http) {
    http->stop();
    http_thread.join();
  }
  {
    std::lock_guard<std::mutex> lock(stop_mu);
    stopping = true;
  }
  stop_cv.notify_all();
  sweeper.join();
  (*outbox)->Stop();
  SetDeviceRevokedListener(nullptr);
  unlink(paths.admin_socket().c_str());
  unlink(paths.listen_address().c_str());
  unlink(paths.http_address().c_str());
  unlink(paths.admin_address().c_str());
  LogInfo("stopped");
  return kExitOk;
}

struct RestoreFlags {
  std::string data_dir;
  std::string archive;
  std::string kek_file;
};

int Restore(const RestoreFlags& r) {
  umask(077);
  auto s = RestoreBackup(
      r.archive, r.data_dir, r.kek_file,
      [](const std::string& path) -> absl::StatusOr<std::unique_ptr<Store>> {
        return SqliteStore::Open(path);
      });
  if (!s.ok()) return Fail(s.status());
  std::cout << "restored " << s->entries << " files (" << s->bytes
            << " bytes, backup of " << s->created_at << ") into " << r.data_dir
            << "\n";
  if (!s->kek_included) {
    std::cerr << "simprov-broker: start it with --kek-file " << r.kek_file
              << "\n";
  }
  return kExitOk;
}

}  // namespace
}  // namespace simprov

int main(int argc, char** argv) {
  // Block termination signals in every thread; Run() waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  simprov::RouteGrpcLogging();
  simprov::Flags f;
  CLI::App app{
      "simprov-broker: SIM-authenticated provisioning service (device API "
      "over gRPC/TLS, admin API on DIR/admin.sock)"};
  auto* data_dir_opt = app.add_option(
      "--data-dir", f.data_dir,
      "Data directory (store, CA, keys); created on first start");
  app.add_option("--listen", f.listen, "Device API address HOST:PORT")
      ->capture_default_str();
  app.add_option("--http-listen", f.http_listen,
                 "HTTP address HOST:PORT for /healthz and /ca.pem");
  app.add_option("--public-name", f.public_names,
                 "Name devices use to reach the broker (repeatable); goes "
                 "into the TLS certificate and the key derivation");
  app.add_option("--cert-ttl", f.cert_ttl, "Device certificate lifetime")
      ->capture_default_str();
  app.add_option("--session-ttl", f.session_ttl,
                 "Lifetime of an AKA challenge (at most 60s)")
      ->capture_default_str();
  app.add_option("--rate-burst", f.rate_burst,
                 "Challenges an IMSI may request at once")
      ->capture_default_str();
  app.add_option("--rate-refill", f.rate_refill,
                 "Time to regain one challenge after the burst")
      ->capture_default_str();
  app.add_option("--public-url", f.public_url,
                 "Base URL devices and peers reach the broker's HTTP at "
                 "(CRL Distribution Points); default: from --http-listen");
  app.add_option("--crl-validity", f.crl_validity,
                 "CRL nextUpdate - thisUpdate (regenerated at half)")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "debug, info, warning or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  app.add_option("--token-issuer", f.token_issuer,
                 "iss of device tokens and the discovery issuer (default: "
                 "http://HTTP-ADDRESS); set it to the public URL")
      ->check([](const std::string& s) {
        return s.rfind("https://", 0) == 0 || s.rfind("http://", 0) == 0
                   ? std::string()
                   : std::string("--token-issuer must be an http(s) URL");
      });
  app.add_option("--token-audiences", f.token_audiences,
                 "Audiences devices may ask tokens for (comma-separated or "
                 "repeated); default: any")
      ->delimiter(',');
  app.add_option("--token-alg", f.token_alg, "Signing alg for new token keys")
      ->capture_default_str()
      ->check(CLI::IsMember({"ES256", "EdDSA"}));
  app.add_option("--token-rotation", f.token_rotation,
                 "Token signing key rotation period")
      ->capture_default_str();
  app.add_option("--token-ttl", f.token_ttl, "Default device token lifetime")
      ->capture_default_str();
  app.add_option("--token-max-ttl", f.token_max_ttl,
                 "Longest device token lifetime (at most 1h)")
      ->capture_default_str();
  app.add_option("--registry", f.registry.registries,
                 "IoT registry URL (repeatable): mosquitto://... or "
                 "aws-iot://... (docs/registry.md)");
  app.add_option("--registry-file", f.registry.registry_file,
                 "File of registry URLs, one a line (keeps passwords off "
                 "the command line)");
  app.add_option("--issue-hook", f.registry.issue_hook,
                 "URL POSTed a signed event before each certificate is "
                 "signed (https, or http on loopback); it may refuse");
  app.add_option("--issue-hook-secret-file", f.registry.issue_hook_secret_file,
                 "HMAC-SHA-256 key of --issue-hook (default: "
                 "$SIMPROV_ISSUE_HOOK_SECRET)");
  app.add_option("--issue-hook-timeout", f.registry.issue_hook_timeout,
                 "How long to wait for --issue-hook")
      ->capture_default_str();
  app.add_flag("--issue-hook-allow-on-timeout",
               f.registry.issue_hook_allow_on_timeout,
               "Issue when --issue-hook does not answer in time (default: "
               "refuse)");
  app.add_option("--ca-cert", f.ca.cert,
                 "Operator's issuing CA certificate (PEM); used instead of a "
                 "development CA at first start, staged for rollover later");
  app.add_option("--ca-key", f.ca.key,
                 "Its private key (PEM, mode 0600); copied into the data dir");
  app.add_option("--ca-chain", f.ca.chain,
                 "Certificates from --ca-cert up to the operator's root "
                 "(PEM bundle; the root is the devices' trust anchor)");
  app.add_option("--ca-activate-after", f.ca_activate_after,
                 "How long a staged CA is only served as a trust anchor "
                 "before it signs (or: simprov ca activate)")
      ->capture_default_str();
  app.add_option("--admin-listen", f.admin_listen,
                 "Remote admin API address HOST:PORT (mTLS with admin "
                 "certificates: simprov admin issue-cert)");
  app.add_option("--kek-file", f.kek_file,
                 "Key-encryption key file outside the data dir (64 hex "
                 "digits, 0600); created on first start when absent");
  // Every flag above is also a --config key and an environment variable.
  simprov::AddConfigSources(app, "SIMPROV_");
  // restore is a subcommand with its own flags: no config keys.
  simprov::RestoreFlags restore;
  auto* restore_cmd = app.add_subcommand(
      "restore",
      "Rebuild a data dir from a `simprov backup` archive (verifies "
      "checksums and the KEK; all or nothing)");
  restore_cmd
      ->add_option("--data-dir", restore.data_dir,
                   "New data directory (absent or empty)")
      ->required();
  restore_cmd->add_option("FILE", restore.archive, "The backup archive")
      ->required();
  restore_cmd->add_option("--kek-file", restore.kek_file,
                          "The KEK, for a backup taken with --kek-file");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    std::cerr << "simprov-broker: " << e.what() << "\n";  // one line
    return simprov::kExitUsage;
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : simprov::kExitUsage;
  }
  if (restore_cmd->parsed()) return simprov::Restore(restore);
  if (absl::Status s = simprov::ApplyEnvFiles(app, "SIMPROV_"); !s.ok()) {
    std::cerr << "simprov-broker: " << s.message() << "\n";
    return simprov::kExitUsage;
  }
  if (data_dir_opt->count() == 0) {
    std::cerr << "simprov-broker: --data-dir is required (or "
                 "SIMPROV_DATA_DIR, or data-dir in --config)\n";
    return simprov::kExitUsage;
  }
  return simprov::Run(f);
}
