#include "broker/broker_app.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "broker/admin/access_service.h"
#include "broker/admin/admin_auth.h"
#include "broker/admin/admin_listener.h"
#include "broker/admin/admin_service.h"
#include "broker/broker_http.h"
#include "broker/ca/ca.h"
#include "broker/ca/crl_http.h"
#include "broker/ca/crl_publisher.h"
#include "broker/data_dir.h"
#include "broker/enrol/bootstrap_service.h"
#include "broker/fleet/fleet_service.h"
#include "broker/fleet/supersede_job.h"
#include "broker/keys/kek_rotation.h"
#include "broker/listen_socket.h"
#include "broker/ops/backup.h"
#include "broker/ops/fleet_gauges.h"
#include "broker/ops/ops_service.h"
#include "broker/policy/group_policies.h"
#include "broker/registry/registry_service.h"
#include "broker/store/cluster_lease.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store_select.h"
#include "broker/tokens/token_keys.h"
#include "broker/tokens/token_service.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "common/log.h"

namespace simprov {
namespace {

// How long a periodic job's lease lasts unrenewed; the sweeper renews it
// every 5 s, so another broker takes over within this after the holder
// dies.
constexpr absl::Duration kJobLeaseTtl = absl::Seconds(30);

// Prints the error as one line; its exit code (never 0).
int Fail(const absl::Status& s) {
  std::cerr << "simprov-broker: " << s.message() << "\n";
  return ExitCodeFor(s) == kExitOk ? kExitError : ExitCodeFor(s);
}

struct TokensConfig {
  TokenOptions options;
  std::unique_ptr<TokenKeyManager> keys;
};

absl::StatusOr<TokensConfig> ConfigureTokens(
    const BrokerConfig& f, const DataDirPaths& paths, Clock& clock,
    std::shared_ptr<TokenKeyStore> store) {
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
  ko.store = std::move(store);
  auto keys = TokenKeyManager::Open(ko, clock);
  if (!keys.ok()) return keys.status();
  c.keys = std::move(*keys);
  return c;
}

}  // namespace

BrokerApp::BrokerApp(const BrokerConfig& config)
    : config_(config),
      paths_(config.data_dir),
      clock_(Clock::Real()),
      random_(Random::Real()) {}

BrokerApp::~BrokerApp() { Shutdown(); }

absl::StatusOr<std::unique_ptr<BrokerApp>> BrokerApp::Create(
    const BrokerConfig& config) {
  auto app = std::unique_ptr<BrokerApp>(new BrokerApp(config));
  if (absl::Status s = app->Init(); !s.ok()) return s;
  return app;
}

absl::Status BrokerApp::Init() {
  const BrokerConfig& f = config_;
  auto listen = ParseHostPort(f.listen);
  if (!listen.ok()) return listen.status();
  listen_ = *listen;
  if (f.store != "sqlite" && !IsPostgresUri(f.store)) {
    return absl::InvalidArgumentError(
        "--store: expected sqlite, postgresql://... or postgres://...");
  }
  auto cert_ttl = ParseHumanDuration(f.cert_ttl);
  if (!cert_ttl.ok()) return cert_ttl.status();
  cert_ttl_ = *cert_ttl;
  auto session_ttl = ParseHumanDuration(f.session_ttl);
  if (!session_ttl.ok()) return session_ttl.status();
  session_ttl_ = *session_ttl;
  if (session_ttl_ <= absl::ZeroDuration() ||
      session_ttl_ > absl::Seconds(60)) {
    return absl::InvalidArgumentError(
        "--session-ttl must be between 1ms and 60s");
  }
  if (cert_ttl_ < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--cert-ttl must be at least 1s");
  }
  auto crl_validity = ParseHumanDuration(f.crl_validity);
  if (!crl_validity.ok()) return crl_validity.status();
  crl_validity_ = *crl_validity;
  if (crl_validity_ < absl::Minutes(1)) {
    return absl::InvalidArgumentError("--crl-validity must be >= 1m");
  }
  auto metrics_refresh = ParseHumanDuration(f.metrics_refresh);
  if (!metrics_refresh.ok()) return metrics_refresh.status();
  metrics_refresh_ = *metrics_refresh;
  if (metrics_refresh_ < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--metrics-refresh must be >= 1s");
  }
  auto refill = ParseHumanDuration(f.rate_refill);
  if (!refill.ok()) return refill.status();
  rate_refill_ = *refill;
  if (f.rate_burst < 1) {
    return absl::InvalidArgumentError("--rate-burst must be at least 1");
  }
  // Public URLs that name nobody are refused before anything is created
  // (the one derived from --http-listen is checked when it is bound).
  bool loopback = false;
  for (const auto& [flag, url] :
       {std::pair{"--public-url", &f.public_url},
        std::pair{"--token-issuer", &f.token_issuer}}) {
    if (url->empty()) continue;
    if (auto ok = PublicBaseUrl(*url, "", 0, "", &loopback); !ok.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": ", ok.status().message()));
    }
  }

  // Keys in a PKCS#11 token (docs/hsm.md). A --ca-key URI without
  // --ca-cert: a development CA whose keys are generated in that token.
  const pkcs11::ModuleOptions pkcs11_options{.module_path = f.pkcs11_module,
                                             .pin_file = f.pkcs11_pin_file};
  const bool ca_in_token = pkcs11::IsPkcs11Uri(f.ca.key);
  const bool development_in_token =
      ca_in_token && f.ca.cert.empty() && f.ca.chain.empty();
  const OperatorCaFiles operator_ca =
      development_in_token ? OperatorCaFiles{} : f.ca;
  ca_signers_ = std::make_unique<Pkcs11CaSignerFactory>(
      pkcs11_options, development_in_token ? f.ca.key : "");
  Pkcs11CaSignerFactory* signers = ca_signers_.get();
  const CaKeyReferenceResolver resolve =
      [signers](const std::string& uri) -> absl::StatusOr<EvpPkeyPtr> {
    auto signer = signers->LoadUri(uri);
    if (!signer.ok()) return signer.status();
    EVP_PKEY* pub = signer->get()->public_key();
    EVP_PKEY_up_ref(pub);
    return EvpPkeyPtr(pub);
  };
  if (development_in_token) {
    auto uri = pkcs11::ParseUri(f.ca.key);
    if (!uri.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--ca-key: ", uri.status().message()));
    }
  }
  // Bad operator CA files are refused before the data dir is touched.
  if (!operator_ca.empty()) {
    if (auto m = ReadOperatorCa(operator_ca, clock_.Now(), resolve); !m.ok()) {
      return m.status();
    }
  }
  if (!f.token_keys.empty()) {
    if (!pkcs11::IsPkcs11Uri(f.token_keys)) {
      return absl::InvalidArgumentError(
          "--token-keys must be a pkcs11: URI naming a token");
    }
    auto store = Pkcs11TokenKeyStore::Open(f.token_keys, pkcs11_options);
    if (!store.ok()) return store.status();
    token_key_store_ = *std::move(store);
  }

  // Every file the broker creates is private: keys, store, socket.
  umask(077);
  if (absl::Status s = MakeDirectories(paths_.root, 0700); !s.ok()) return s;
  // The data dir is this broker's alone until it exits: a second one on it
  // would share the store and the CA and remove this one's socket.
  auto lock = DataDirLock::Acquire(paths_.root);
  if (!lock.ok()) return lock.status();
  lock_ = std::move(*lock);
  // The KEK lives in DIR/kek unless --kek-file keeps it elsewhere.
  kek_path_ = f.kek_file.empty() ? paths_.kek() : f.kek_file;
  if (!f.kek_file.empty() && PathExists(paths_.kek())) {
    return absl::FailedPreconditionError(absl::StrCat(
        paths_.kek(), " exists: this data dir keeps its own KEK; move it to ",
        f.kek_file, " before starting with --kek-file"));
  }
  if (!f.kek_file.empty() && !PathExists(f.kek_file) &&
      PathExists(paths_.store())) {
    return absl::NotFoundError(
        absl::StrCat("--kek-file ", f.kek_file,
                     " does not exist, and the store already holds sealed "
                     "keys (give the KEK they were sealed under)"));
  }
  auto kek = LoadKekRing(kek_path_, random_);
  if (!kek.ok()) return kek.status();
  kek_ = std::move(*kek);
  auto activate_after = ParseHumanDuration(f.ca_activate_after);
  if (!activate_after.ok()) return activate_after.status();
  activate_after_ = *activate_after;
  // A new development CA's issuing certificate names the root's CRL URL,
  // when it is known before the HTTP listener binds (--public-url, or
  // --http-listen with a fixed port).
  std::string root_crl_url;
  if (auto hp = ParseHostPort(f.http_listen);
      !f.public_url.empty() || (hp.ok() && hp->port > 0)) {
    bool loopback = false;
    auto base = PublicBaseUrl(
        f.public_url, hp.ok() ? hp->host : "", hp.ok() ? hp->port : 0,
        f.public_names.empty() ? "" : f.public_names.front(), &loopback);
    if (base.ok()) root_crl_url = CrlUrl(*base, "", 0, "", kRootCrlHttpPath);
  }
  auto ca =
      LoadOrCreateCa(paths_, clock_, random_, operator_ca, activate_after_,
                     *ca_signers_, resolve, root_crl_url);
  if (!ca.ok()) return ca.status();
  ca_ = std::move(*ca);
  // A staged CA whose time has come signs from this start on.
  if (auto a = ca_->MaybeActivateStaged(false); !a.ok()) return a.status();
  auto admin_ca = LoadOrCreateAdminCa(paths_, clock_, random_);
  if (!admin_ca.ok()) return admin_ca.status();
  admin_ca_ = std::move(*admin_ca);
  auto store =
      OpenStore(f.store, f.store_password_file, paths_.store(), clock_,
                [this](absl::Duration d) { metrics_.ObserveStoreWrite(d); });
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  // Admin-certificate revocations live in the store (a file of the data dir
  // before: imported once).
  auto admin_revocations = AdminRevocations::Open(
      *store_, clock_, paths_.admin_ca_dir() + "/revoked");
  if (!admin_revocations.ok()) return admin_revocations.status();
  admin_revocations_ = std::move(*admin_revocations);
  // Every admin service asks this one who calls (admin_auth.h).
  authorizer_ = std::make_unique<AdminAuthorizer>(*admin_revocations_);
  jobs_ = std::make_unique<ClusterJobs>(*store_, clock_, InstanceId(),
                                        kJobLeaseTtl);
  rotator_ =
      std::make_unique<KekRotator>(*store_, *kek_, kek_path_, clock_, random_);
  KekRing* ring = kek_.get();
  metrics_registry_.AddGauge(
      "simprov_kek_rotation_in_progress",
      "1 while a KEK rotation runs (KEKFILE.next exists), else 0",
      [ring] { return ring->rotating() ? 1.0 : 0.0; });
  if (auto resumed = rotator_->ResumePending(); !resumed.ok()) {
    return resumed.status();
  }
  return InitServices();
}

absl::Status BrokerApp::InitServices() {
  const BrokerConfig& f = config_;
  policies_ = std::make_unique<GroupPolicies>(*store_);
  auto tokens_config = ConfigureTokens(f, paths_, clock_, token_key_store_);
  if (!tokens_config.ok()) return tokens_config.status();
  tokens_config->options.policies = policies_.get();
  tokens_config->options.metrics = &metrics_;
  token_keys_ = std::move(tokens_config->keys);
  tokens_ = std::make_unique<TokenService>(tokens_config->options, *store_,
                                           *ca_, *token_keys_, clock_, random_);
  token_service_ = std::make_unique<TokenGrpcService>(*tokens_);
  token_admin_service_ =
      std::make_unique<TokenAdminGrpcService>(*authorizer_, *tokens_);

  BootstrapOptions options;
  if (!IsWildcard(listen_.host)) names_.push_back(listen_.host);
  for (const std::string& n : f.public_names) names_.push_back(n);
  if (names_.empty()) {
    return absl::InvalidArgumentError(
        "listening on a wildcard address needs at least one --public-name");
  }
  options.names.insert(names_.begin(), names_.end());
  options.cert_ttl = cert_ttl_;
  options.session_ttl = session_ttl_;
  options.rate_burst = f.rate_burst;
  options.rate_refill = rate_refill_;
  auto tls = IssueTlsIdentity(paths_, *ca_, names_);
  if (!tls.ok()) return tls.status();
  tls_ = std::move(*tls);

  crl_ = std::make_unique<CrlPublisher>(*store_, *ca_, clock_,
                                        paths_.root + "/ca.crl", crl_validity_);
  if (absl::Status s = ConfigureRootCrl(); !s.ok()) return s;
  if (absl::Status s = crl_->Regenerate(); !s.ok()) return s;
  options.policies = policies_.get();
  options.crl = crl_.get();
  options.metrics = &metrics_;
  auto outbox = ConfigureRegistries(f.registry, *store_, clock_, random_);
  if (!outbox.ok()) return outbox.status();
  outbox_ = std::move(*outbox);
  outbox_->OnThrottled(metrics_.RegisterRegistries(outbox_->RegistryNames()));
  options.issuance = outbox_.get();
  {
    Store* st = store_.get();
    Clock* clock = &clock_;
    auto stat = [st, clock](auto field) {
      return [st, clock, field] {
        auto s = st->GetOutboxStats(clock->Now());
        return s.ok() ? field(*s) : -1.0;  // -1: the store did not answer
      };
    };
    metrics_.RegisterOutbox(
        stat([](const OutboxStats& s) { return static_cast<double>(s.depth); }),
        stat([](const OutboxStats& s) {
          return absl::ToDoubleSeconds(s.oldest_age);
        }));
  }
  device_registry_service_ = std::make_unique<DeviceRegistryGrpcService>(
      *outbox_, *store_, *ca_, clock_);
  registry_admin_service_ =
      std::make_unique<RegistryAdminGrpcService>(*authorizer_, *store_, clock_);
  bootstrapper_ = std::make_unique<Bootstrapper>(options, *store_, *ca_, *kek_,
                                                 clock_, random_);
  // A revocation wakes the outbox: it queues the registries' removals.
  RegistryOutbox* outbox_ptr = outbox_.get();
  fleet_service_ = std::make_unique<FleetGrpcService>(
      *authorizer_, *store_, *policies_, *crl_, clock_, random_,
      [outbox_ptr](const DeviceRevocation&) { outbox_ptr->Wake(); },
      // A changed policy registers the group's devices again.
      [outbox_ptr](const std::vector<GroupPolicy>& applied) {
        for (const GroupPolicy& p : applied) {
          auto n = outbox_ptr->ReregisterGroup(p);
          if (!n.ok()) return n.status();
        }
        return absl::OkStatus();
      });
  // Superseded certificates whose grace has passed: revoked by the sweeper.
  superseded_ = std::make_unique<SupersededRevoker>(
      *store_, *policies_, *crl_, clock_,
      [outbox_ptr](const DeviceRevocation&) { outbox_ptr->Wake(); });
  bootstrap_service_ = std::make_unique<BootstrapGrpcService>(*bootstrapper_);
  admin_service_ = std::make_unique<AdminGrpcService>(*authorizer_, *store_,
                                                      *kek_, clock_, random_);
  access_service_ = std::make_unique<AccessGrpcService>(
      *authorizer_, *ca_, *admin_ca_, *admin_revocations_, *store_, clock_);
  ops_service_ = std::make_unique<OpsGrpcService>(
      *authorizer_, *rotator_, kek_path_, *store_, paths_.root, clock_);
  RegisterExpiryMetrics();
  return absl::OkStatus();
}

absl::Status BrokerApp::ConfigureRootCrl() {
  // The development root's key (while it is in the data dir, or in the
  // token it names) signs its root's CRL; an operator's root CRLs come
  // from --ca-root-crl.
  std::unique_ptr<CaSigner> root_signer;
  const std::string root_key = paths_.root + "/ca/root.key";
  if (PathExists(root_key)) {
    auto signer = ca_signers_->Load(root_key);
    if (!signer.ok()) return signer.status();
    root_signer = *std::move(signer);
  }
  crl_->SetRootCrlSource(std::move(root_signer), config_.ca_root_crl);
  return absl::OkStatus();
}

void BrokerApp::RegisterExpiryMetrics() {
  fleet_gauges_ = std::make_unique<FleetGauges>(metrics_registry_, *store_,
                                                clock_, metrics_refresh_);
  if (absl::Status s = fleet_gauges_->Refresh(); !s.ok()) {
    LogError("counting certificates and subscribers: %s", s.message());
  }
  Store* store = store_.get();
  metrics_registry_.AddGauge(
      "simprov_ready",
      "1 while the broker is ready (the store answers a read, as /readyz), "
      "else 0",
      [store] { return store->Ping().ok() ? 1.0 : 0.0; });
  const CertificateAuthority* ca = ca_.get();
  const CrlPublisher* crl = crl_.get();
  TokenKeyManager* keys = token_keys_.get();
  BrokerMetrics::ExpirySources sources;
  sources.ca_not_after = [ca] {
    MetricsRegistry::GaugeSamples out;
    for (const CaCertificateRole& c : ca->Certificates()) {
      out.push_back(
          {{c.role, c.info.serial_hex},
           static_cast<double>(absl::ToUnixSeconds(c.info.not_after))});
    }
    return out;
  };
  sources.crl_next_update = [crl] {
    const absl::Time t = crl->NextUpdate();
    return t == absl::InfinitePast()
               ? 0.0
               : static_cast<double>(absl::ToUnixSeconds(t));
  };
  sources.token_key_not_after = [keys] {
    MetricsRegistry::GaugeSamples out;
    for (const auto& k : keys->Keys()) {
      out.push_back(
          {{k->kid}, static_cast<double>(absl::ToUnixSeconds(k->sign_until))});
    }
    return out;
  };
  sources.ca_activation_pending = [ca] {
    return ca->State().staged ? 1.0 : 0.0;
  };
  sources.ca_activation_time = [ca] {
    const CaState st = ca->State();
    return st.staged ? static_cast<double>(absl::ToUnixSeconds(st.activate_at))
                     : 0.0;
  };
  metrics_.RegisterExpiry(std::move(sources));
}

absl::Status BrokerApp::Start() {
  if (absl::Status s = StartGrpc(); !s.ok()) return s;
  if (absl::Status s = StartHttp(); !s.ok()) return s;
  // Written last: its presence means the broker serves.
  if (absl::Status s = WriteFileAtomic(
          paths_.listen_address(),
          JoinHostPort(listen_.host, device_port_) + "\n", 0644);
      !s.ok()) {
    return s;
  }
  LogInfo(
      "simprov-broker serving the device API on %s (names: %s), admin on %s",
      JoinHostPort(listen_.host, device_port_), absl::StrJoin(names_, ", "),
      paths_.admin_socket());

  outbox_->Start();
  outbox_started_ = true;
  // Sweeper: expires sessions and idle rate-limit buckets.
  sweeper_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(stop_mu_);
    while (!stop_cv_.wait_for(lock, std::chrono::seconds(5),
                              [this] { return stopping_; })) {
      Sweep();
    }
  });
  started_ = true;
  return absl::OkStatus();
}

absl::Status BrokerApp::StartGrpc() {
  const BrokerConfig& f = config_;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  ssl.pem_key_cert_pairs.push_back({tls_.key_pem, tls_.chain_pem});
  grpc::ServerBuilder device_builder;
  device_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  device_builder.AddListeningPort(f.listen, grpc::SslServerCredentials(ssl),
                                  &device_port_);
  device_builder.RegisterService(bootstrap_service_.get());
  device_builder.RegisterService(token_service_.get());
  device_builder.RegisterService(device_registry_service_.get());
  // gRPC 1.51's sync server keeps at most 2 pollers by default and creates
  // and destroys threads under load (~270 us of CPU per bootstrap measured).
  device_builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 64);
  device_server_ = device_builder.BuildAndStart();
  if (!device_server_ || device_port_ == 0) {
    return CannotListen(f.listen);
  }

  unlink(paths_.admin_socket().c_str());
  grpc::ServerBuilder admin_builder;
  admin_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  admin_builder.AddListeningPort("unix:" + paths_.admin_socket(),
                                 grpc::InsecureServerCredentials());
  // Remote admin: the same services over mTLS with admin certificates;
  // admin_auth.h tells the two transports apart.
  int admin_port = 0;
  if (!f.admin_listen.empty()) {
    auto creds = AdminServerCredentials(*admin_ca_, f.admin_listen);
    if (!creds.ok()) return creds.status();
    admin_builder.AddListeningPort(f.admin_listen, *creds, &admin_port);
  }
  for (grpc::Service* service : std::vector<grpc::Service*>{
           admin_service_.get(), fleet_service_.get(),
           token_admin_service_.get(), access_service_.get(),
           registry_admin_service_.get(), ops_service_.get()}) {
    admin_builder.RegisterService(service);
  }
  admin_server_ = admin_builder.BuildAndStart();
  if (!admin_server_ || (!f.admin_listen.empty() && admin_port == 0)) {
    if (!f.admin_listen.empty()) {
      if (const std::string why = BindProblem(f.admin_listen); !why.empty()) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen on ", f.admin_listen, ": ", why));
      }
    }
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", paths_.admin_socket(),
                     f.admin_listen.empty() ? "" : " or " + f.admin_listen));
  }
  chmod(paths_.admin_socket().c_str(), 0600);
  if (admin_port != 0) {
    const std::string admin_bound =
        JoinHostPort(ParseHostPort(f.admin_listen)->host, admin_port);
    if (absl::Status s =
            WriteFileAtomic(paths_.admin_address(), admin_bound + "\n", 0644);
        !s.ok()) {
      return s;
    }
    LogInfo("remote admin (mTLS, admin certificates) on %s", admin_bound);
  }
  return absl::OkStatus();
}

std::function<absl::Status()> BrokerApp::HsmCheck() const {
  Pkcs11CaSignerFactory* ca = ca_signers_.get();
  Pkcs11TokenKeyStore* tokens = token_key_store_.get();
  if ((ca == nullptr || !ca->uses_tokens()) && tokens == nullptr) {
    return nullptr;
  }
  return [ca, tokens]() -> absl::Status {
    if (absl::Status s = ca->Check(); !s.ok()) return s;
    return tokens == nullptr ? absl::OkStatus() : tokens->Check();
  };
}

absl::Status BrokerApp::StartHttp() {
  const BrokerConfig& f = config_;
  bool loopback = false;
  if (f.http_listen.empty()) {
    if (!f.public_url.empty()) {
      auto base = PublicBaseUrl(f.public_url, "", 0, "", &loopback);
      if (!base.ok()) return base.status();
      if (f.token_issuer.empty()) tokens_->SetIssuer(*base);
    }
    crl_->SetUrl(CrlUrl(f.public_url, "", 0, ""));
    return StartMetricsHttp();
  }
  auto hp = ParseHostPort(f.http_listen);
  if (!hp.ok()) return hp.status();
  http_ = std::make_unique<httplib::Server>();
  http_->set_socket_options(ExclusiveSocketOptions);
  RegisterBrokerHttpRoutes(
      *http_,
      {.store = *store_,
       .anchors_pem = ca_->TrustAnchorsPem(),
       .metrics = f.metrics_listen.empty() ? &metrics_registry_ : nullptr,
       .crl = *crl_,
       .tokens = *tokens_,
       .hsm = HsmCheck()});
  int http_port =
      hp->port == 0 ? http_->bind_to_any_port(hp->host)
                    : (http_->bind_to_port(hp->host, hp->port) ? hp->port : -1);
  if (http_port <= 0) return CannotListen(f.http_listen);
  const std::string http_bound = absl::StrCat(hp->host, ":", http_port);
  // The token issuer, the JWKS and the CRL address: one public base URL.
  auto base = PublicBaseUrl(
      f.public_url, hp->host, http_port,
      f.public_names.empty() ? names_.front() : f.public_names.front(),
      &loopback);
  if (!base.ok()) return base.status();
  if (loopback && f.public_url.empty()) {
    LogWarning(
        "the broker's public URL is %s, a loopback address: only this "
        "machine can fetch its CRL and JWKS; set --public-url",
        *base);
  }
  crl_->SetUrl(CrlUrl(*base, "", 0, ""));
  if (f.token_issuer.empty()) tokens_->SetIssuer(*base);
  http_thread_ = std::thread([this] { http_->listen_after_bind(); });
  if (absl::Status s =
          WriteFileAtomic(paths_.http_address(), http_bound + "\n", 0644);
      !s.ok()) {
    return s;
  }
  LogInfo("HTTP (/healthz, /readyz,%s /ca.pem, %s) on %s; public URL %s",
          f.metrics_listen.empty() ? " /metrics," : "", kCrlHttpPath,
          http_bound, *base);
  return StartMetricsHttp();
}

absl::Status BrokerApp::StartMetricsHttp() {
  const BrokerConfig& f = config_;
  if (f.metrics_listen.empty()) return absl::OkStatus();
  auto hp = ParseHostPort(f.metrics_listen);
  if (!hp.ok()) return hp.status();
  metrics_http_ = std::make_unique<httplib::Server>();
  metrics_http_->set_socket_options(ExclusiveSocketOptions);
  RegisterMetricsRoute(*metrics_http_, metrics_registry_);
  const int port =
      hp->port == 0
          ? metrics_http_->bind_to_any_port(hp->host)
          : (metrics_http_->bind_to_port(hp->host, hp->port) ? hp->port : -1);
  if (port <= 0) return CannotListen(f.metrics_listen);
  const std::string bound = absl::StrCat(hp->host, ":", port);
  metrics_thread_ = std::thread([this] { metrics_http_->listen_after_bind(); });
  if (absl::Status s =
          WriteFileAtomic(paths_.metrics_address(), bound + "\n", 0644);
      !s.ok()) {
    return s;
  }
  LogInfo("metrics (/metrics) on %s", bound);
  return absl::OkStatus();
}

void BrokerApp::Sweep() {
  // This broker's challenge sessions and rate limits (in the store when it
  // is shared: expiring them there is idempotent).
  bootstrapper_->Sweep();
  // Periodic jobs (broker/store/cluster_lease.h). Once per cluster: the
  // jobs whose state is all in the store. On every broker: the CRL (each
  // broker signs and serves its own copy, numbered from the store's one
  // sequence), token key maintenance and the staged CA, whose state is
  // still files of the data dir; they become once per cluster when their
  // state moves into the store.
  using Scope = ClusterJobs::Scope;
  auto run = [this](const char* name, Scope scope,
                    const std::function<void()>& fn) {
    if (auto ran = jobs_->Run(name, scope, fn); !ran.ok()) {
      LogError("periodic job %s: %s", name, ran.status().message());
    }
  };
  run("crl-refresh", Scope::kPerBroker, [this] {
    if (absl::Status s = crl_->MaybeRefresh(); !s.ok()) {
      LogError("CRL refresh: %s", s.message());
    }
  });
  run("token-maintenance", Scope::kPerBroker, [this] { tokens_->Sweep(); });
  // This broker's cached counts for /metrics.
  run("fleet-gauges", Scope::kPerBroker, [this] {
    if (absl::Status s = fleet_gauges_->MaybeRefresh(); !s.ok()) {
      LogError("counting certificates and subscribers: %s", s.message());
    }
  });
  run("supersede-sweeper", Scope::kOncePerCluster, [this] {
    if (auto n = superseded_->RunOnce(); !n.ok()) {
      LogError("revoking superseded certificates: %s", n.status().message());
    }
  });
  run("ca-activation", Scope::kPerBroker, [this] {
    if (auto a = ca_->MaybeActivateStaged(false); !a.ok()) {
      LogError("CA activation: %s", a.status().message());
    } else if (*a) {
      LogInfo("staged CA activated: it signs from now on");
    }
  });
}

int BrokerApp::WaitForSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

void BrokerApp::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  const auto deadline =
      std::chrono::system_clock::now() + std::chrono::seconds(5);
  if (device_server_) device_server_->Shutdown(deadline);
  if (admin_server_) admin_server_->Shutdown(deadline);
  if (metrics_http_) {
    metrics_http_->stop();
    if (metrics_thread_.joinable()) metrics_thread_.join();
    unlink(paths_.metrics_address().c_str());
  }
  if (http_) {
    http_->stop();
    if (http_thread_.joinable()) http_thread_.join();
  }
  if (sweeper_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(stop_mu_);
      stopping_ = true;
    }
    stop_cv_.notify_all();
    sweeper_.join();
  }
  // Another broker on a shared store takes the periodic jobs over now.
  if (jobs_) jobs_->ReleaseAll();
  if (outbox_started_) outbox_->Stop();
  // Only a broker that served removes the files: a failed start leaves
  // another broker's socket and addresses alone.
  if (started_) {
    unlink(paths_.admin_socket().c_str());
    unlink(paths_.listen_address().c_str());
    unlink(paths_.http_address().c_str());
    unlink(paths_.admin_address().c_str());
  }
}

int RunBroker(const BrokerConfig& config) {
  // Debian's Abseil is built with absl::Mutex deadlock detection on, which
  // records a lock graph on every gRPC mutex acquisition (~2% of the
  // broker's CPU). The broker's own locks are std::mutex.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (config.log_level == "debug") SetLogLevel(LogLevel::kDebug);
  if (config.log_level == "warning") SetLogLevel(LogLevel::kWarning);
  if (config.log_level == "error") SetLogLevel(LogLevel::kError);
  if (LogFormat format; ParseLogFormat(config.log_format, &format)) {
    SetLogFormat(format);
  }

  auto app = BrokerApp::Create(config);
  if (!app.ok()) return Fail(app.status());
  if (absl::Status s = (*app)->Start(); !s.ok()) return Fail(s);
  const int sig = (*app)->WaitForSignal();
  LogInfo("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*app)->Shutdown();
  LogInfo("stopped");
  return kExitOk;
}

}  // namespace simprov
