#include "broker/cli/admin_client.h"

#include "absl/strings/str_cat.h"
#include "common/admin_name.h"
#include "common/atomic_file.h"

namespace simprov {

absl::StatusOr<std::shared_ptr<grpc::Channel>> RemoteAdminChannel(
    const std::string& address, const std::string& cert_dir) {
  if (address.empty() || cert_dir.empty()) {
    return absl::InvalidArgumentError(
        "remote admin needs both --admin HOST:PORT and --admin-cert DIR");
  }
  grpc::SslCredentialsOptions ssl;
  struct Part {
    const char* name;
    std::string* into;
  } parts[] = {{"ca.pem", &ssl.pem_root_certs},
               {"admin.key", &ssl.pem_private_key},
               {"admin.pem", &ssl.pem_cert_chain}};
  for (const Part& p : parts) {
    auto text = ReadFileToString(cert_dir + "/" + p.name, 1 << 20);
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--admin-cert ", cert_dir, ": ", text.status().message(),
                       " (write it with simprov admin issue-cert)"));
    }
    *p.into = *std::move(text);
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(kAdminServerName);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

}  // namespace simprov
