#include "broker/broker_http.h"

#include <httplib.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "broker/ca/crl_http.h"
#include "broker/ops/metrics.h"
#include "broker/registry/registry.h"
#include "broker/store/store.h"
#include "broker/tokens/token_http.h"

namespace simprov {

void RegisterBrokerHttpRoutes(httplib::Server& http,
                              const BrokerHttpRoutes& routes) {
  const std::string anchors = routes.anchors_pem;
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& r) {
    r.set_content("ok\n", "text/plain");
  });
  // Ready: the store answers a read, the CA is loaded, the HSM answers.
  Store* store = &routes.store;
  http.Get("/readyz", [store, anchors, hsm = routes.hsm](
                          const httplib::Request&, httplib::Response& r) {
    std::string why;
    if (absl::Status s = store->Ping(); !s.ok()) {
      why = absl::StrCat("store unreachable: ", s.message());
    } else if (anchors.empty()) {
      why = "CA not loaded";
    } else if (absl::Status h = hsm ? hsm() : absl::OkStatus(); !h.ok()) {
      why = absl::StrCat("HSM unavailable: ", h.message());
    }
    if (why.empty()) {
      r.set_content("ready\n", "text/plain");
    } else {
      r.status = 503;
      r.set_content(why + "\n", "text/plain");
    }
  });
  if (routes.metrics != nullptr) RegisterMetricsRoute(http, *routes.metrics);
  http.Get("/ca.pem", [anchors](const httplib::Request&, httplib::Response& r) {
    r.set_content(anchors, "application/x-pem-file");
  });
  RegisterCrlRoutes(http, routes.crl);
  RegisterTokenRoutes(http, routes.tokens);
}

void RegisterMetricsRoute(httplib::Server& http, MetricsRegistry& metrics) {
  MetricsRegistry* m = &metrics;
  http.Get("/metrics", [m](const httplib::Request&, httplib::Response& r) {
    r.set_content(m->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

absl::StatusOr<std::string> PublicBaseUrl(const std::string& public_url,
                                          const std::string& http_host,
                                          int http_port,
                                          const std::string& public_name,
                                          bool* loopback) {
  std::string base;
  if (!public_url.empty()) {
    base = std::string(absl::StripSuffix(public_url, "/"));
  } else {
    std::string host = http_host;
    if (host.empty() || host == "0.0.0.0" || host == "::") host = public_name;
    if (host.find(':') != std::string::npos)
      host = absl::StrCat("[", host, "]");
    base = absl::StrCat("http://", host, ":", http_port);
  }
  absl::string_view rest = base;
  if (!absl::ConsumePrefix(&rest, "https://") &&
      !absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat(base, " is not an http(s) URL"));
  }
  // The host: up to the port, path, query or fragment; brackets for IPv6.
  absl::string_view host = rest.substr(0, rest.find_first_of("/?#"));
  if (absl::ConsumePrefix(&host, "[")) {
    host = host.substr(0, host.find(']'));
  } else {
    host = host.substr(0, host.rfind(':'));
  }
  const std::string h = absl::AsciiStrToLower(host);
  if (h.empty() || h == "0.0.0.0" || h == "::" || h == "0:0:0:0:0:0:0:0") {
    return absl::InvalidArgumentError(absl::StrCat(
        base,
        " names no reachable host (a wildcard address; tokens' iss, "
        "the JWKS and the CRL address would point there): set --public-url "
        "to the URL peers use, e.g. https://broker.example.com"));
  }
  *loopback = IsLoopbackHost(h);
  return base;
}

}  // namespace simprov
