#include "broker/ca/crl_http.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace simprov {
namespace {

void ServeDer(httplib::Response& r, const Bytes& der, bool any) {
  if (!any) {
    r.status = 503;
    r.set_content("no CRL yet\n", "text/plain");
  } else if (der.empty()) {
    r.status = 404;
    r.set_content("no such CRL\n", "text/plain");
  } else {
    r.set_content(ToString(der), "application/pkix-crl");
  }
}

}  // namespace

void RegisterCrlRoutes(httplib::Server& http, const CrlPublisher& crl) {
  http.Get(kCrlHttpPath, [&crl](const httplib::Request&, httplib::Response& r) {
    Bytes der = crl.Der();
    ServeDer(r, der, !der.empty());
  });
  http.Get(kRootCrlHttpPath,
           [&crl](const httplib::Request&, httplib::Response& r) {
             ServeDer(r, crl.RootDer(), !crl.Der().empty());
           });
  http.Get(kChainCrlHttpPath,
           [&crl](const httplib::Request&, httplib::Response& r) {
             std::string pem = crl.ChainPem();
             if (pem.empty()) {
               r.status = 503;
               r.set_content("no CRL yet\n", "text/plain");
               return;
             }
             r.set_content(pem, "application/x-pem-file");
           });
  // /crl/issuing-KEYID.crl, KEYID the subjectKeyIdentifier, lower-case hex.
  http.Get(R"(/crl/issuing-([0-9a-f]{1,64})\.crl)",
           [&crl](const httplib::Request& req, httplib::Response& r) {
             ServeDer(r, crl.IssuerDer(req.matches[1]), !crl.Der().empty());
           });
}

std::string CrlUrl(const std::string& public_url, const std::string& http_host,
                   int http_port, const std::string& fallback_host,
                   const std::string& path) {
  if (!public_url.empty()) {
    return absl::StrCat(absl::StripSuffix(public_url, "/"), path);
  }
  if (http_port <= 0) return "";
  std::string host = http_host;
  if (host.empty() || host == "0.0.0.0" || host == "::") host = fallback_host;
  if (host.find(':') != std::string::npos) host = absl::StrCat("[", host, "]");
  return absl::StrCat("http://", host, ":", http_port, path);
}

}  // namespace simprov
