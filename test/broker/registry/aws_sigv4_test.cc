// SigV4 against every case of the AWS test suite
// (test/shared/vectors/aws-sig-v4): canonical request, string to sign and
// Authorization header, byte for byte.
#include "broker/registry/aws_sigv4.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace simprov {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string VectorsDir() {
  const char* env = std::getenv("SIMPROV_SHARED_DIR");
  std::string shared = env != nullptr ? env : SIMPROV_SHARED_DIR;
  return shared + "/vectors/aws-sig-v4";
}

// Parses a suite .req: request line, headers (continuation lines folded
// with ','), blank line, body. The path is taken unencoded, as the suite
// means it; the query is split and left unencoded too.
SigV4Request ParseReq(const std::string& text) {
  SigV4Request r;
  size_t header_end = text.find("\n\n");
  std::string head = text.substr(0, header_end);
  if (header_end != std::string::npos) r.body = text.substr(header_end + 2);
  std::vector<std::string> lines = absl::StrSplit(head, '\n');
  std::string request_line = lines[0];
  size_t sp = request_line.find(' ');
  r.method = request_line.substr(0, sp);
  std::string target = request_line.substr(sp + 1);
  target = std::string(absl::StripSuffix(target, " HTTP/1.1"));
  size_t q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) {
    for (absl::string_view kv :
         absl::StrSplit(target.substr(q + 1), '&', absl::SkipEmpty())) {
      size_t eq = kv.find('=');
      r.query.emplace_back(
          std::string(kv.substr(0, eq)),
          eq == absl::string_view::npos ? "" : std::string(kv.substr(eq + 1)));
    }
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      r.headers.back().second +=
          "," + std::string(absl::StripAsciiWhitespace(line));
      continue;
    }
    size_t colon = line.find(':');
    r.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  return r;
}

TEST(AwsSigV4, EveryCaseOfTheAwsTestSuite) {
  SigV4Credentials creds;
  creds.access_key_id = "AKIDEXAMPLE";
  // The suite's secret (no '/' before EXAMPLEKEY).
  creds.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  int cases = 0;
  int quirks = 0;
  for (const auto& entry : fs::recursive_directory_iterator(VectorsDir())) {
    if (entry.path().extension() != ".req") continue;
    const fs::path base = entry.path().parent_path() / entry.path().stem();
    SCOPED_TRACE(base.string());
    SigV4Request req = ParseReq(Slurp(entry.path()));
    SigV4Signature sig = SignV4(req, creds, "us-east-1", "service");
    EXPECT_EQ(sig.canonical_request, Slurp(base.string() + ".creq"));
    const std::string name = entry.path().stem().string();
    const bool quirky = name == "post-x-www-form-urlencoded" ||
                        name == "post-x-www-form-urlencoded-parameters";
    if (quirky) {
      // The suite's own files disagree for these two: .creq signs
      // Content-Length (checked above), while .sts and .authz were computed
      // without it, and for -parameters with "charset=utf8" in place of the
      // .req's "charset=utf-8" (recomputed by hand: SHA-256 of that
      // canonical request is the hash in .sts). Check that variant.
      std::erase_if(req.headers,
                    [](const auto& h) { return h.first == "Content-Length"; });
      for (auto& h : req.headers) {
        if (h.first == "Content-Type" && h.second.ends_with("charset=utf-8")) {
          h.second.replace(h.second.size() - 5, 5, "utf8");
        }
      }
      sig = SignV4(req, creds, "us-east-1", "service");
      ++quirks;
    }
    EXPECT_EQ(sig.string_to_sign, Slurp(base.string() + ".sts"));
    const std::string authz = Slurp(base.string() + ".authz");
    if (quirky) {
      // -parameters' .authz lists content-length in SignedHeaders although
      // its signature is over the request without it: the signature only.
      EXPECT_TRUE(authz.ends_with("Signature=" + sig.signature)) << authz;
    } else {
      EXPECT_EQ(sig.authorization, authz);
    }
    ++cases;
  }
  EXPECT_EQ(cases, 31);  // every .req of the suite
  EXPECT_EQ(quirks, 2);
}

TEST(AwsSigV4, EncodesTheWirePathOnceMore) {
  // Non-S3 services: "/things/a b" is sent as "/things/a%20b" and that is
  // what gets canonicalised, so the canonical path is encoded twice.
  SigV4Request req;
  req.method = "POST";
  req.path = "/things/a%20b";
  req.headers = {{"host", "iot.eu-west-1.amazonaws.com"},
                 {"x-amz-date", "20261129T000000Z"}};
  SigV4Signature sig = SignV4(req, {"AK", "SK", ""}, "eu-west-1", "iot");
  EXPECT_NE(sig.canonical_request.find("\n/things/a%2520b\n"),
            std::string::npos)
      << sig.canonical_request;
}

}  // namespace
}  // namespace simprov
