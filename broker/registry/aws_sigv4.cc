#include "broker/registry/aws_sigv4.h"

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/bytes.h"
#include "common/digest.h"

namespace simprov {

namespace {

std::string Sha256Hex(absl::string_view s) {
  return HexEncode(Sha256(ToBytes(std::string(s))));
}

Bytes Hmac(const Bytes& key, absl::string_view data) {
  return HmacSha256(key, ToBytes(std::string(data)));
}

// Removes "." and ".." segments and empty segments; keeps a trailing '/'.
std::string NormalizePath(absl::string_view path) {
  std::vector<std::string> out;
  for (absl::string_view seg : absl::StrSplit(path, '/')) {
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
      continue;
    }
    out.emplace_back(seg);
  }
  std::string result = "/";
  for (size_t i = 0; i < out.size(); ++i) {
    if (i > 0) result += "/";
    result += AwsUriEncode(out[i]);
  }
  const bool trailing = path.size() > 1 && path.back() == '/';
  if (trailing && !out.empty()) result += "/";
  return result;
}

// Trims and collapses runs of spaces (outside nothing: SigV4 collapses all).
std::string TrimValue(absl::string_view v) {
  v = absl::StripAsciiWhitespace(v);
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string AwsUriEncode(absl::string_view s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' ||
        c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

SigV4Signature SignV4(const SigV4Request& req, const SigV4Credentials& creds,
                      absl::string_view region, absl::string_view service) {
  // Headers: lower-case names, sorted; repeated names joined in order.
  std::map<std::string, std::string> headers;
  for (const auto& [name, value] : req.headers) {
    std::string key = absl::AsciiStrToLower(name);
    std::string v = TrimValue(value);
    auto [it, inserted] = headers.emplace(key, v);
    if (!inserted) it->second += "," + v;
  }
  std::vector<std::string> query;
  for (const auto& [k, v] : req.query) {
    query.push_back(absl::StrCat(AwsUriEncode(k), "=", AwsUriEncode(v)));
  }
  std::sort(query.begin(), query.end());

  SigV4Signature sig;
  std::string canonical_headers;
  std::vector<std::string> names;
  for (const auto& [k, v] : headers) {
    absl::StrAppend(&canonical_headers, k, ":", v, "\n");
    names.push_back(k);
  }
  sig.signed_headers = absl::StrJoin(names, ";");
  sig.canonical_request =
      absl::StrCat(req.method, "\n", NormalizePath(req.path), "\n",
                   absl::StrJoin(query, "&"), "\n", canonical_headers, "\n",
                   sig.signed_headers, "\n", Sha256Hex(req.body));

  const std::string amz_date =
      headers.count("x-amz-date") ? headers["x-amz-date"] : std::string();
  const std::string date = amz_date.substr(0, 8);
  const std::string scope =
      absl::StrCat(date, "/", region, "/", service, "/aws4_request");
  sig.string_to_sign = absl::StrCat("AWS4-HMAC-SHA256\n", amz_date, "\n", scope,
                                    "\n", Sha256Hex(sig.canonical_request));
  Bytes k = ToBytes("AWS4" + creds.secret_access_key);
  Bytes k_date = Hmac(k, date);
  SecureWipe(k);
  Bytes k_region = Hmac(k_date, region);
  Bytes k_service = Hmac(k_region, service);
  Bytes k_signing = Hmac(k_service, "aws4_request");
  sig.signature = HexEncode(Hmac(k_signing, sig.string_to_sign));
  SecureWipe(k_signing);
  sig.authorization = absl::StrCat(
      "AWS4-HMAC-SHA256 Credential=", creds.access_key_id, "/", scope,
      ", SignedHeaders=", sig.signed_headers, ", Signature=", sig.signature);
  return sig;
}

}  // namespace simprov
