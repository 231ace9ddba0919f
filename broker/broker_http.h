// The routes of the broker's --http-listen server: /healthz, /readyz,
// /metrics, /ca.pem, the CRL (broker/ca/crl_http.h) and the token endpoints
// (broker/tokens/token_http.h).
#ifndef SIMPROV_BROKER_BROKER_HTTP_H_
#define SIMPROV_BROKER_BROKER_HTTP_H_

#include <string>

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
  MetricsRegistry& metrics;
  const CrlPublisher& crl;
  TokenService& tokens;
};

//   GET /healthz   "ok": the process answers
//   GET /readyz    "ready" when the store answers a read and the CA is
//                  loaded, else 503 saying which is not
//   GET /metrics   Prometheus text format
//   GET /ca.pem    the trust anchors (PEM)
// and the CRL and token routes.
void RegisterBrokerHttpRoutes(httplib::Server& http,
                              const BrokerHttpRoutes& routes);

}  // namespace simprov

#endif  // SIMPROV_BROKER_BROKER_HTTP_H_
