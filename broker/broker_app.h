// The broker's wiring: everything simprov-broker runs, built in order from
// its configuration with constructor injection (no process-wide setters).
//
//   BrokerConfig   the settings as given (flags, --config, environment);
//                  broker_main.cc defines the flags that fill it
//   BrokerApp      Create checks the settings and builds the data dir, KEK,
//                  CAs, store, services; Start serves (device API, admin API,
//                  HTTP) and writes the address files; WaitForSignal; Shutdown
//   RunBroker      all of the above for main(), returning the exit code
//   RunRestore     the `restore` subcommand: a data dir from a backup
#ifndef SIMPROV_BROKER_BROKER_APP_H_
#define SIMPROV_BROKER_BROKER_APP_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/ca/operator_ca.h"
#include "broker/ca/pkcs11_signer.h"
#include "broker/data_dir.h"
#include "broker/ops/broker_metrics.h"
#include "broker/ops/metrics.h"
#include "broker/registry/registry_outbox.h"
#include "broker/tokens/pkcs11_token_signer.h"
#include "common/clock.h"
#include "common/duration.h"

namespace grpc {
class Server;
}  // namespace grpc
namespace httplib {
class Server;
}  // namespace httplib

namespace simprov {

class AccessGrpcService;
class AdminAuthorizer;
class AdminGrpcService;
class AdminRevocations;
class BootstrapGrpcService;
class Bootstrapper;
class CertificateAuthority;
class ClusterJobs;
class CrlPublisher;
class DeviceRegistryGrpcService;
class FleetGauges;
class FleetGrpcService;
class GroupPolicies;
class KekRing;
class KekRotator;
class OpsGrpcService;
class RegistryAdminGrpcService;
class Store;
class SupersededRevoker;
class TokenAdminGrpcService;
class TokenGrpcService;
class TokenKeyManager;
class TokenService;

// simprov-broker's settings, one field a flag (docs/broker.md), as text:
// BrokerApp::Create parses and checks them.
struct BrokerConfig {
  std::string data_dir;
  std::string listen = "127.0.0.1:7443";
  std::string http_listen;
  std::vector<std::string> public_names;
  std::string cert_ttl = "30d";
  std::string session_ttl = "60s";
  int rate_burst = 10;
  std::string rate_refill = "2s";
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics_listen;           // empty: /metrics on --http-listen
  std::string metrics_refresh = "60s";  // fleet counts' cache lifetime
  std::string public_url;
  std::string crl_validity = "24h";
  // Tokens (docs/tokens.md).
  std::string token_issuer;
  std::vector<std::string> token_audiences;
  std::string token_alg = "ES256";
  std::string token_rotation = "24h";
  std::string token_ttl = "10m";
  std::string token_max_ttl = "1h";
  std::string token_keys;  // pkcs11:token=...: token keys in an HSM
  RegistryFlags registry;  // docs/registry.md
  // Operator CA and remote admin (docs/broker.md).
  OperatorCaFiles ca;
  std::string ca_activate_after = "7d";
  std::string ca_root_crl;  // the operator's root CRL file
  std::string admin_listen;
  // Operations (docs/operations.md).
  std::string kek_file;
  // The store (docs/broker.md): "sqlite" (DIR/simprov.db) or a libpq URI
  // postgresql://... / postgres://..., and a file holding its password.
  std::string store = "sqlite";
  std::string store_password_file;
  // PKCS#11 (docs/hsm.md): the module and PIN for pkcs11: key URIs.
  std::string pkcs11_module;
  std::string pkcs11_pin_file;
};

class BrokerApp {
 public:
  // Checks `config` (bad values and operator CA files are refused before
  // the data dir is touched), then builds everything in order: data dir,
  // KEK, CA, admin CA, metrics, store, services. Serves nothing yet.
  static absl::StatusOr<std::unique_ptr<BrokerApp>> Create(
      const BrokerConfig& config);
  ~BrokerApp();

  BrokerApp(const BrokerApp&) = delete;
  BrokerApp& operator=(const BrokerApp&) = delete;

  // Serves: the device API, the admin API on DIR/admin.sock (and
  // --admin-listen), HTTP on --http-listen; writes DIR/admin-address,
  // DIR/http-address and last DIR/listen-address (its presence means the
  // broker serves); starts the registry outbox and the sweeper.
  absl::Status Start();

  // Waits for SIGTERM or SIGINT (blocked in every thread by main) and
  // returns it.
  int WaitForSignal();

  // Stops the servers, the sweeper and the outbox; removes the admin socket
  // and the address files. Idempotent; the destructor calls it.
  void Shutdown();

 private:
  explicit BrokerApp(const BrokerConfig& config);
  absl::Status Init();
  absl::Status InitServices();
  absl::Status StartGrpc();
  absl::Status StartHttp();
  // /readyz's check of the PKCS#11 tokens in use; null when none is.
  std::function<absl::Status()> HsmCheck() const;
  absl::Status StartMetricsHttp();
  // The gauges of what expires and the fleet's counts (docs/operations.md).
  void RegisterExpiryMetrics();
  // Where the root CRLs come from (DIR/ca/root.key, --ca-root-crl).
  absl::Status ConfigureRootCrl();
  void Sweep();

  // The data dir's lock, taken by Init before it writes anything there;
  // declared first, so it is released last.
  std::unique_ptr<DataDirLock> lock_;
  const BrokerConfig config_;
  const DataDirPaths paths_;
  Clock& clock_;
  Random& random_;

  // Parsed from config_ by Init.
  HostPort listen_;
  absl::Duration cert_ttl_;
  absl::Duration session_ttl_;
  absl::Duration crl_validity_;
  absl::Duration metrics_refresh_;
  absl::Duration rate_refill_;
  absl::Duration activate_after_;
  std::string kek_path_;
  std::vector<std::string> names_;  // the TLS server certificate's names

  // Built by Init, in this order; destroyed in reverse.
  std::unique_ptr<KekRing> kek_;
  // The CA's signers: key files holding PEM or a pkcs11: URI.
  std::unique_ptr<Pkcs11CaSignerFactory> ca_signers_;
  std::shared_ptr<Pkcs11TokenKeyStore> token_key_store_;  // --token-keys
  std::unique_ptr<CertificateAuthority> ca_;
  std::unique_ptr<CertificateAuthority> admin_ca_;
  std::unique_ptr<AdminRevocations> admin_revocations_;
  std::unique_ptr<AdminAuthorizer> authorizer_;
  // Before the store: its destructor still writes (the audit flush) and
  // reports the write to the metrics.
  MetricsRegistry metrics_registry_;
  BrokerMetrics metrics_{metrics_registry_};
  std::unique_ptr<Store> store_;
  // Periodic jobs, once per cluster where their state is in the store.
  std::unique_ptr<ClusterJobs> jobs_;
  std::unique_ptr<KekRotator> rotator_;
  std::unique_ptr<GroupPolicies> policies_;
  std::unique_ptr<TokenKeyManager> token_keys_;
  std::unique_ptr<TokenService> tokens_;
  std::unique_ptr<TokenGrpcService> token_service_;
  std::unique_ptr<TokenAdminGrpcService> token_admin_service_;
  TlsServerIdentity tls_;
  std::unique_ptr<CrlPublisher> crl_;
  std::unique_ptr<RegistryOutbox> outbox_;
  std::unique_ptr<DeviceRegistryGrpcService> device_registry_service_;
  std::unique_ptr<RegistryAdminGrpcService> registry_admin_service_;
  std::unique_ptr<Bootstrapper> bootstrapper_;
  std::unique_ptr<FleetGrpcService> fleet_service_;
  std::unique_ptr<SupersededRevoker> superseded_;  // run by the sweeper
  std::unique_ptr<BootstrapGrpcService> bootstrap_service_;
  std::unique_ptr<AdminGrpcService> admin_service_;
  std::unique_ptr<AccessGrpcService> access_service_;
  std::unique_ptr<OpsGrpcService> ops_service_;
  std::unique_ptr<FleetGauges> fleet_gauges_;  // refreshed by the sweeper

  // Started by Start.
  int device_port_ = 0;
  std::unique_ptr<grpc::Server> device_server_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_;
  std::unique_ptr<httplib::Server> metrics_http_;  // --metrics-listen
  std::thread metrics_thread_;
  bool outbox_started_ = false;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread sweeper_;
  bool started_ = false;  // Start succeeded: Shutdown removes the files
  bool shut_down_ = false;
};

// Create, Start, WaitForSignal, Shutdown; an error is printed as one
// "simprov-broker: ..." line on stderr. Returns the exit code.
int RunBroker(const BrokerConfig& config);

// `simprov-broker restore`'s settings.
struct RestoreConfig {
  std::string data_dir;
  std::string archive;
  std::string kek_file;
};

// Rebuilds a data dir from a `simprov backup` archive (broker/ops/backup.h)
// and says what it restored. Returns the exit code.
int RunRestore(const RestoreConfig& config);

}  // namespace simprov

#endif  // SIMPROV_BROKER_BROKER_APP_H_
