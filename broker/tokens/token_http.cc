#include "broker/tokens/token_http.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace simprov {
namespace {

constexpr size_t kMaxIntrospectBody = 16 << 10;

void Json(httplib::Response& r, int status, const std::string& body) {
  r.status = status;
  r.set_header("Cache-Control", "no-store");
  r.set_content(body, "application/json");
}

}  // namespace

void RegisterTokenRoutes(httplib::Server& server, TokenService& tokens) {
  server.Get("/.well-known/jwks.json", [&tokens](const httplib::Request&,
                                                 httplib::Response& r) {
    r.set_header("Cache-Control",
                 absl::StrCat("public, max-age=",
                              absl::ToInt64Seconds(tokens.jwks_max_age())));
    r.set_content(tokens.JwksJson(), "application/jwk-set+json");
  });
  // RFC 8414 metadata. Not served as OpenID Connect discovery: simprov is
  // no OpenID provider (no authorization endpoint, no ID tokens).
  server.Get("/.well-known/oauth-authorization-server",
             [&tokens](const httplib::Request&, httplib::Response& r) {
               r.set_header("Cache-Control", "public, max-age=300");
               r.set_content(tokens.DiscoveryJson(), "application/json");
             });
  server.Post("/v1/introspect", [&tokens](const httplib::Request& req,
                                          httplib::Response& r) {
    if (req.body.size() > kMaxIntrospectBody) {
      Json(r, 413, R"({"error":"invalid_request"})");
      return;
    }
    std::string token;
    if (req.has_param("token")) {
      token = req.get_param_value("token");
    } else {
      httplib::Params params;
      httplib::detail::parse_query_text(req.body, params);
      auto it = params.find("token");
      if (it != params.end()) token = it->second;
    }
    // A token read from a file ends in a newline; whitespace is never
    // part of a JWS.
    token = std::string(absl::StripAsciiWhitespace(token));
    auto answer =
        tokens.Introspect(req.get_header_value("Authorization"), token);
    if (!answer.ok()) {
      if (answer.status().code() == absl::StatusCode::kUnauthenticated) {
        r.set_header("WWW-Authenticate", "Basic realm=\"simprov\"");
        Json(r, 401, R"({"error":"invalid_client"})");
      } else {
        Json(r, 503, R"({"error":"temporarily_unavailable"})");
      }
      return;
    }
    if (token.empty()) {
      Json(r, 400, R"({"error":"invalid_request"})");
      return;
    }
    Json(r, 200, *answer);
  });
}

}  // namespace simprov
