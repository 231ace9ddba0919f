// The token endpoints on the broker's --http-listen server:
//   GET  /.well-known/jwks.json              the published keys
//   GET  /.well-known/openid-configuration   issuer, jwks_uri, ...
//   POST /v1/introspect                      RFC 7662, HTTP Basic APP:KEY
#ifndef SIMPROV_BROKER_TOKENS_TOKEN_HTTP_H_
#define SIMPROV_BROKER_TOKENS_TOKEN_HTTP_H_

#include <httplib.h>

#include "broker/tokens/token_service.h"

namespace simprov {

void RegisterTokenRoutes(httplib::Server& server, TokenService& tokens);

}  // namespace simprov

#endif  // SIMPROV_BROKER_TOKENS_TOKEN_HTTP_H_
