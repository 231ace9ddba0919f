// The routes of the broker's --http-listen server: /healthz, /readyz,
// /metrics, /ca.pem, the CRL (broker/ca/crl_http.h) and the token endpoints
// (broker/tokens/token_http.h).
#ifndef SIMPROV_BROKER_BROKER_HTTP_H_
#define SIMPROV_BROKER_BROKER_HTTP_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace simprov {

class CrlPublisher;
class MetricsRegistry;
class Store;
class TokenService;

// What the routes read; each outlives the server.
struct BrokerHttpRoutes {
  Store& store;             // /readyz: Store::Ping
  std::string anchors_pem;  // /ca.pem: the devices' trust anchors
  // /metrics; null when --metrics-listen serves it on its own listener.
  MetricsRegistry* metrics;
  const CrlPublisher& crl;
  TokenService& tokens;
  // /readyz: the HSM's keys answer (null: no HSM in use).
  std::function<absl::Status()> hsm = nullptr;
};

//   GET /healthz   "ok": the process answers
//   GET /readyz    "ready" when the store answers a read, the CA is
//                  loaded and the HSM (if any) answers, else 503 saying
//                  which is not
//   GET /metrics   Prometheus text format
//   GET /ca.pem    the trust anchors (PEM)
// and the CRL and token routes.
void RegisterBrokerHttpRoutes(httplib::Server& http,
                              const BrokerHttpRoutes& routes);

//   GET /metrics   Prometheus text format (also on --metrics-listen)
void RegisterMetricsRoute(httplib::Server& http, MetricsRegistry& metrics);

// The base URL peers reach the broker's HTTP at: the token issuer, the
// JWKS and the CRL Distribution Point derive from it. `public_url` when
// given; else http://HOST:PORT of the HTTP listener, with a wildcard host
// (0.0.0.0, ::) replaced by `public_name`. InvalidArgument for a URL that
// is not http(s) or names a wildcard address (nobody can reach it);
// `*loopback` says whether it names a loopback address (worth a warning).
absl::StatusOr<std::string> PublicBaseUrl(const std::string& public_url,
                                          const std::string& http_host,
                                          int http_port,
                                          const std::string& public_name,
                                          bool* loopback);

}  // namespace simprov

#endif  // SIMPROV_BROKER_BROKER_HTTP_H_
