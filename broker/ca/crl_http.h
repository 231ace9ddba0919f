// The CRL's HTTP route on the broker's --http-listen, and the URL
// certificates name it by.
#ifndef SIMPROV_BROKER_CA_CRL_HTTP_H_
#define SIMPROV_BROKER_CA_CRL_HTTP_H_

#include <httplib.h>

#include <string>

#include "broker/ca/crl_publisher.h"

namespace simprov {

// GET /crl/ca.crl: the current CRL, DER (application/pkix-crl).
void RegisterCrlRoutes(httplib::Server& http, const CrlPublisher& crl);

// The CRL URL certificates carry: --public-url (a base such as
// "http://pki.example.com:8080") + /crl/ca.crl, else derived from the bound
// HTTP address (a wildcard host is replaced by `fallback_host`), else empty
// (no HTTP listener: certificates carry no CRL Distribution Points).
std::string CrlUrl(const std::string& public_url, const std::string& http_host,
                   int http_port, const std::string& fallback_host);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CRL_HTTP_H_
