// simprov-broker: the cloud service's entry. Flags only: the wiring lives
// in broker_app.h (BrokerApp), the logic in the services it builds.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "broker/broker_app.h"
#include "broker/config_file.h"
#include "broker/migrate_store.h"
#include "common/cli/completion.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "common/version.h"

int main(int argc, char** argv) {
  // Block termination signals in every thread; the app waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  simprov::RouteGrpcLogging();
  simprov::BrokerConfig f;
  CLI::App app{
      "simprov-broker: SIM-authenticated provisioning service (device API "
      "over gRPC/TLS, admin API on DIR/admin.sock)"};
  app.set_version_flag("--version",
                       std::string("simprov-broker ") + simprov::kVersion);
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
                 "Base URL devices and applications reach the broker's HTTP "
                 "at: the token issuer, the JWKS URL and the CRL "
                 "Distribution Point derive from it (default: http://"
                 "HTTP-LISTEN, a wildcard host replaced by the first "
                 "--public-name)");
  app.add_option("--metrics-listen", f.metrics_listen,
                 "Serve /metrics on this HOST:PORT instead of on "
                 "--http-listen (keep it off the public port)");
  app.add_option("--metrics-refresh", f.metrics_refresh,
                 "How often the certificate and subscriber gauges are "
                 "counted from the store")
      ->capture_default_str();
  app.add_option("--crl-validity", f.crl_validity,
                 "CRL nextUpdate - thisUpdate (regenerated at half)")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "debug, info, warning or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  app.add_option("--log-format", f.log_format,
                 "text, or json (one JSON object per line)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--token-issuer", f.token_issuer,
                 "iss of device tokens and the metadata's issuer (default: "
                 "--public-url)")
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
                 "Its private key (PEM, mode 0600; copied into the data dir), "
                 "or a pkcs11: URI of the key in an HSM (docs/hsm.md)");
  app.add_option("--ca-chain", f.ca.chain,
                 "Certificates from --ca-cert up to the operator's root "
                 "(PEM bundle; the root is the devices' trust anchor)");
  app.add_option("--ca-root-crl", f.ca_root_crl,
                 "The operator's root CRL (DER or PEM; PEM may add the "
                 "intermediates' CRLs), served at /crl/root.crl and "
                 "/crl/chain.pem; re-read when it changes");
  app.add_option("--ca-activate-after", f.ca_activate_after,
                 "How long a staged CA is only served as a trust anchor "
                 "before it signs (or: simprov ca activate)")
      ->capture_default_str();
  app.add_option("--admin-listen", f.admin_listen,
                 "Remote admin API address HOST:PORT (mTLS with admin "
                 "certificates: simprov admin issue-cert)");
  app.add_option("--pkcs11-module", f.pkcs11_module,
                 "PKCS#11 module (shared library) for pkcs11: key URIs "
                 "without module-path (docs/hsm.md)");
  app.add_option("--pkcs11-pin-file", f.pkcs11_pin_file,
                 "File (0600) holding the token's PIN (default: "
                 "$SIMPROV_PKCS11_PIN)");
  app.add_option("--token-keys", f.token_keys,
                 "pkcs11:token=... : make and keep the token signing keys "
                 "in that HSM token (default: in the data dir)");
  app.add_option("--kek-file", f.kek_file,
                 "Key-encryption key file outside the data dir (64 hex "
                 "digits, 0600); created on first start when absent");
  app.add_option("--store", f.store,
                 "Where the state lives: sqlite (DIR/simprov.db) or a libpq "
                 "URI postgresql://USER@HOST:PORT/DB?PARAMS shared by "
                 "several brokers")
      ->capture_default_str();
  app.add_option("--store-password-file", f.store_password_file,
                 "The PostgreSQL password (first line, trimmed); or libpq's "
                 "PGPASSWORD, ~/.pgpass, passfile=");
  // Every flag above is also a --config key and an environment variable.
  simprov::AddConfigSources(app, "SIMPROV_");
  // restore is a subcommand with its own flags: no config keys.
  simprov::RestoreConfig restore;
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
  // migrate-store: likewise its own flags.
  simprov::MigrateStoreConfig migrate;
  auto* migrate_cmd = app.add_subcommand(
      "migrate-store",
      "Copy a stopped broker's SQLite store into an empty PostgreSQL "
      "database (all or nothing, verified by row counts and checksums)");
  migrate_cmd
      ->add_option("--data-dir", migrate.data_dir,
                   "The data directory whose simprov.db is copied")
      ->required();
  migrate_cmd->add_option("--to", migrate.to, "postgresql://... (libpq URI)")
      ->required();
  migrate_cmd->add_option("--store-password-file", migrate.password_file,
                          "The PostgreSQL password (or libpq's ways)");
  std::string completion_shell;
  CLI::App* completion = simprov::AddCompletionCommand(app, &completion_shell);
  if (simprov::HandleCompletion(app, "simprov-broker", argc, argv)) return 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    std::cerr << "simprov-broker: " << e.what() << "\n";  // one line
    return simprov::kExitUsage;
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : simprov::kExitUsage;
  }
  if (completion->parsed()) {
    std::cout << simprov::CompletionScript(app, "simprov-broker",
                                           completion_shell);
    return 0;
  }
  if (restore_cmd->parsed()) return simprov::RunRestore(restore);
  if (migrate_cmd->parsed()) return simprov::RunMigrateStore(migrate);
  if (absl::Status s = simprov::ApplyEnvFiles(app, "SIMPROV_"); !s.ok()) {
    std::cerr << "simprov-broker: " << s.message() << "\n";
    return simprov::kExitUsage;
  }
  if (data_dir_opt->count() == 0) {
    std::cerr << "simprov-broker: --data-dir is required (or "
                 "SIMPROV_DATA_DIR, or data-dir in --config)\n";
    return simprov::kExitUsage;
  }
  return simprov::RunBroker(f);
}
