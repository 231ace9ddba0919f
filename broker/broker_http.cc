#include "broker/broker_http.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "broker/ca/crl_http.h"
#include "broker/ops/metrics.h"
#include "broker/store/store.h"
#include "broker/tokens/token_http.h"

namespace simprov {

void RegisterBrokerHttpRoutes(httplib::Server& http,
                              const BrokerHttpRoutes& routes) {
  const std::string anchors = routes.anchors_pem;
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& r) {
    r.set_content("ok\n", "text/plain");
  });
  // Ready: the store answers a read and the CA is loaded.
  Store* store = &routes.store;
  http.Get("/readyz",
           [store, anchors](const httplib::Request&, httplib::Response& r) {
             std::string why;
             if (absl::Status s = store->Ping(); !s.ok()) {
               why = absl::StrCat("store unreachable: ", s.message());
             } else if (anchors.empty()) {
               why = "CA not loaded";
             }
             if (why.empty()) {
               r.set_content("ready\n", "text/plain");
             } else {
               r.status = 503;
               r.set_content(why + "\n", "text/plain");
             }
           });
  MetricsRegistry* metrics = &routes.metrics;
  http.Get("/metrics",
           [metrics](const httplib::Request&, httplib::Response& r) {
             r.set_content(metrics->Render(),
                           "text/plain; version=0.0.4; charset=utf-8");
           });
  http.Get("/ca.pem", [anchors](const httplib::Request&, httplib::Response& r) {
    r.set_content(anchors, "application/x-pem-file");
  });
  RegisterCrlRoutes(http, routes.crl);
  RegisterTokenRoutes(http, routes.tokens);
}

}  // namespace simprov
