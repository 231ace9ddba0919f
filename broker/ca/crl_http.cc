#include "broker/ca/crl_http.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace simprov {

void RegisterCrlRoutes(httplib::Server& http, const CrlPublisher& crl) {
  http.Get(kCrlHttpPath, [&crl](const httplib::Request&, httplib::Response& r) {
    Bytes der = crl.Der();
    if (der.empty()) {
      r.status = 503;
      r.set_content("no CRL yet\n", "text/plain");
      return;
    }
    r.set_content(ToString(der), "application/pkix-crl");
  });
}

std::string CrlUrl(const std::string& public_url, const std::string& http_host,
                   int http_port, const std::string& fallback_host) {
  if (!public_url.empty()) {
    return absl::StrCat(absl::StripSuffix(public_url, "/"), kCrlHttpPath);
  }
  if (http_port <= 0) return "";
  std::string host = http_host;
  if (host.empty() || host == "0.0.0.0" || host == "::") host = fallback_host;
  if (host.find(':') != std::string::npos) host = absl::StrCat("[", host, "]");
  return absl::StrCat("http://", host, ":", http_port, kCrlHttpPath);
}

}  // namespace simprov
