#include "broker/admin/admin_listener.h"

#include <arpa/inet.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "common/duration.h"
#include "common/x509.h"

namespace simprov {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> AdminServerCredentials(
    CertificateAuthority& admin_ca, const std::string& listen) {
  auto hp = ParseHostPort(listen);
  if (!hp.ok()) return hp.status();
  std::vector<std::string> dns = {kAdminServerName};
  std::vector<std::string> ips;
  unsigned char buf[16];
  if (inet_pton(AF_INET, hp->host.c_str(), buf) == 1 ||
      inet_pton(AF_INET6, hp->host.c_str(), buf) == 1) {
    if (hp->host != "0.0.0.0" && hp->host != "::") ips.push_back(hp->host);
  } else if (!hp->host.empty()) {
    dns.push_back(hp->host);
  }
  EvpPkeyPtr key = GenerateP256Key();
  auto cert = admin_ca.IssueServerCertificate(key.get(), dns, ips,
                                              absl::Hours(24 * 90));
  if (!cert.ok()) return cert.status();
  auto key_pem = PrivateKeyToPkcs8Pem(key.get());
  if (!key_pem.ok()) return key_pem.status();
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = admin_ca.TrustAnchorsPem();
  ssl.pem_key_cert_pairs.push_back(
      {*key_pem, CertToPem(cert->get()) + admin_ca.ChainPem()});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace simprov
