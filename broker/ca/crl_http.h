// The CRLs' HTTP routes on the broker's --http-listen, and the URLs
// certificates name them by.
#ifndef SIMPROV_BROKER_CA_CRL_HTTP_H_
#define SIMPROV_BROKER_CA_CRL_HTTP_H_

#include <httplib.h>

#include <string>

#include "broker/ca/crl_publisher.h"

namespace simprov {

// GET /crl/ca.crl: the active issuing CA's CRL; GET /crl/root.crl: the
// root's; GET /crl/issuing-KEYID.crl: the CRL of the issuing CA with that
// subjectKeyIdentifier (hex; active or retired); all DER
// (application/pkix-crl). GET /crl/chain.pem: all of them, PEM. 404 for a CRL
// the broker does not have, 503 before the first CRL.
void RegisterCrlRoutes(httplib::Server& http, const CrlPublisher& crl);

// The CRL URL certificates carry: --public-url (a base such as
// "http://pki.example.com:8080") + `path`, else derived from the bound
// HTTP address (a wildcard host is replaced by `fallback_host`), else empty
// (no HTTP listener: certificates carry no CRL Distribution Points).
std::string CrlUrl(const std::string& public_url, const std::string& http_host,
                   int http_port, const std::string& fallback_host,
                   const std::string& path = kCrlHttpPath);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CRL_HTTP_H_
