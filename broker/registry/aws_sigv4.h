// AWS Signature Version 4 (header form), written here because curl 7.88's
// built-in SigV4 does not sort the query. Checked against the AWS test
// suite (test/shared/vectors/aws-sig-v4,
// test/broker/registry/aws_sigv4_test.cc).
//
// `path` is the path as the suite gives it: unencoded. Canonicalisation
// removes dot segments and empty segments, then URI-encodes each segment
// (RFC 3986 unreserved characters stay). For services other than S3 the
// path is normalised and encoded like this from the path *on the wire*,
// which is itself encoded once: callers pass the wire path, and each
// segment ends up encoded twice.
#ifndef SIMPROV_BROKER_REGISTRY_AWS_SIGV4_H_
#define SIMPROV_BROKER_REGISTRY_AWS_SIGV4_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace simprov {

struct SigV4Request {
  std::string method;
  std::string path;  // see above
  // Query parameters, unencoded, in any order.
  std::vector<std::pair<std::string, std::string>> query;
  // Headers as sent; repeated names are joined with ',' in order. Must
  // include host and x-amz-date (YYYYMMDDTHHMMSSZ).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct SigV4Credentials {
  std::string access_key_id;
  std::string secret_access_key;  // never logged
  std::string session_token;      // empty unless temporary credentials
};

struct SigV4Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;x-amz-date"
  std::string signature;       // lower-case hex
  std::string authorization;   // the Authorization header value
};

// RFC 3986 percent-encoding of everything but A-Z a-z 0-9 - . _ ~
std::string AwsUriEncode(absl::string_view s, bool keep_slash = false);

// Signs every header of `req`. The date and scope come from x-amz-date.
SigV4Signature SignV4(const SigV4Request& req, const SigV4Credentials& creds,
                      absl::string_view region, absl::string_view service);

}  // namespace simprov

#endif  // SIMPROV_BROKER_REGISTRY_AWS_SIGV4_H_
