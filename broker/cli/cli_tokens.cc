// simprov apps create | tokens revoke | token verify (docs/tokens.md).
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/cli/cli_common.h"
#include "common/atomic_file.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "common/token/token_verifier.h"
#include "simprov/v1/token.grpc.pb.h"

namespace simprov {
namespace {

constexpr size_t kMaxJwksBytes = 64 << 10;

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(30);
}

int CreateApp(const CliContext& g, const std::string& name) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::TokenAdmin::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  v1::CreateAppRequest req;
  req.set_name(name);
  v1::CreateAppResponse resp;
  grpc::Status st = stub->CreateApp(&ctx, req, &resp);
  if (!st.ok()) return Fail(Explain(st, where));
  if (g.json) {
    PrintJson({{"name", resp.name()}, {"key", resp.key()}});
  } else {
    std::cout << "application: " << resp.name() << "\n"
              << "key:         " << resp.key() << "\n";
  }
  std::cerr << "simprov: the key is shown once; the broker keeps only its "
               "hash. Introspect with HTTP Basic "
            << resp.name() << ":KEY\n";
  return kExitOk;
}

int Revoke(const CliContext& g, const std::string& jti,
           const std::string& imsi) {
  if (jti.empty() == imsi.empty()) {
    return Fail(absl::InvalidArgumentError(
        "give either a token id (JTI) or --device IMSI"));
  }
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::TokenAdmin::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  v1::RevokeTokenResponse resp;
  grpc::Status st;
  if (!jti.empty()) {
    v1::RevokeTokenRequest req;
    req.set_jti(jti);
    st = stub->RevokeToken(&ctx, req, &resp);
  } else {
    v1::RevokeDeviceTokensRequest req;
    req.set_imsi(imsi);
    st = stub->RevokeDeviceTokens(&ctx, req, &resp);
  }
  if (!st.ok()) return Fail(Explain(st, where));
  if (g.json) {
    PrintJson({{"jti", jti}, {"device", imsi}});
  } else if (!jti.empty()) {
    std::cout << "revoked token " << jti << "\n";
  } else {
    std::cout << "revoked every token issued so far to " << imsi << "\n";
  }
  return kExitOk;
}

// GETs an http(s) URL, bounded in size.
bool FetchUrl(const std::string& url, std::string* body, std::string* error) {
  const size_t scheme_end = url.find("://");
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string base = url.substr(0, path_start);
  const std::string path =
      path_start == std::string::npos ? "/" : url.substr(path_start);
  httplib::Client client(base);
  client.set_connection_timeout(10);
  client.set_read_timeout(10);
  client.set_follow_location(false);
  auto res = client.Get(path);
  if (!res) {
    *error = absl::StrCat("cannot fetch ", url, ": ",
                          httplib::to_string(res.error()));
    return false;
  }
  if (res->status != 200) {
    *error = absl::StrCat("cannot fetch ", url, ": HTTP ", res->status);
    return false;
  }
  if (res->body.size() > kMaxJwksBytes) {
    *error = absl::StrCat(url, ": larger than 64 KiB");
    return false;
  }
  *body = res->body;
  return true;
}

struct VerifyFlags {
  std::string jwks;
  std::string audience;
  std::string issuer;
  std::string cert;
  int64_t leeway = 30;
  std::string token;
};

int Verify(const VerifyFlags& f, bool as_json) {
  const bool url = absl::StartsWith(f.jwks, "http://") ||
                   absl::StartsWith(f.jwks, "https://");
  TokenVerifierOptions o;
  o.audience = f.audience;
  o.issuer = f.issuer;
  o.leeway_seconds = f.leeway;
  const std::string source = f.jwks;
  o.fetch_jwks = [url, source](std::string* body, std::string* error) {
    if (url) return FetchUrl(source, body, error);
    auto text = ReadFileToString(source, kMaxJwksBytes);
    if (!text.ok()) {
      *error = std::string(text.status().message());
      return false;
    }
    *body = *text;
    return true;
  };
  TokenVerifier verifier(o);
  std::string error;
  if (!verifier.Refresh(&error)) {
    return Fail(absl::UnavailableError(absl::StrCat("JWKS: ", error)));
  }
  std::string token = f.token;
  if (token == "-") {
    std::string line;
    std::getline(std::cin, line);
    token = line;
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  std::string cert;
  if (!f.cert.empty()) {
    auto pem = ReadFileToString(f.cert, 1 << 20);
    if (!pem.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--cert: ", pem.status().message())));
    }
    cert = *pem;
  }
  TokenVerifyResult r = verifier.Verify(token, cert);
  if (!r.valid) {
    std::cerr << "simprov: token invalid: " << r.error << "\n";
    return kExitInvalid;
  }
  if (as_json) {
    PrintJson({{"valid", true},
               {"claims",
                nlohmann::json::parse(r.token.claims_json, nullptr, false)}});
    return kExitOk;
  }
  std::cout << r.token.claims_json << "\n";
  return kExitOk;
}

}  // namespace

void AddTokenCommands(CLI::App& app, CliContext& ctx) {
  auto* apps = app.add_subcommand(
      "apps", "Applications that verify device tokens (introspection keys)");
  apps->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  auto* create = apps->add_subcommand(
      "create", "Create an application and print its key (shown once)");
  create
      ->add_option("NAME", *name,
                   "The application's name: the token audience it accepts")
      ->required();
  AddJsonFlag(create, ctx);
  create->callback([&ctx, name] { ctx.rc = CreateApp(ctx, *name); });

  auto* tokens = app.add_subcommand("tokens", "Device tokens");
  tokens->require_subcommand(1);
  auto jti = std::make_shared<std::string>();
  auto imsi = std::make_shared<std::string>();
  auto* revoke = tokens->add_subcommand(
      "revoke",
      "Revoke a token (JTI) or every token a device holds (--device IMSI); "
      "introspection answers active=false at once");
  revoke->add_option("JTI", *jti, "The token's jti claim");
  revoke->add_option("--device", *imsi, "Revoke all tokens of this IMSI");
  AddJsonFlag(revoke, ctx);
  revoke->callback([&ctx, jti, imsi] { ctx.rc = Revoke(ctx, *jti, *imsi); });

  auto* token = app.add_subcommand("token", "Work with one device token");
  token->require_subcommand(1);
  auto vf = std::make_shared<VerifyFlags>();
  auto* verify = token->add_subcommand(
      "verify",
      "Verify a device token against a JWKS (exit 0: valid, prints the "
      "claims; 6: invalid, with the reason)");
  verify->add_option("--jwks", vf->jwks, "JWKS URL (http/https) or file")
      ->required();
  verify->add_option("--audience", vf->audience, "This application's audience")
      ->required();
  verify->add_option("--issuer", vf->issuer, "Expected iss");
  verify->add_option("--cert", vf->cert,
                     "The client certificate (PEM) the application saw: "
                     "checks the token's cnf binding");
  verify
      ->add_option("--leeway", vf->leeway,
                   "Clock skew tolerated for exp, nbf and iat (seconds)")
      ->capture_default_str()
      ->check(CLI::Range(0, 300));
  verify
      ->add_option("TOKEN", vf->token, "The token, or - to read it from stdin")
      ->required();
  AddJsonFlag(verify, ctx);
  verify->callback([&ctx, vf] { ctx.rc = Verify(*vf, ctx.json); });
}

}  // namespace simprov
