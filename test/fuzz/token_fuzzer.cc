// The application-side JWT verifier (common/token): compact-form splitting,
// strict base64url, strict JSON header and claims, ES256/EdDSA signature
// encodings, the claim checks, JWKS documents and the JOSE helpers.
//
// Input: one selector byte (its low 3 bits mod 6), then:
//   0: a token, verified as is (with the client certificate when bit 3 of
//      the selector is set: the cnf binding);
//   1, 2: "HEADER\nCLAIMS" (JSON texts), signed here with the fixed ES256 /
//      EdDSA key (and a kid naming it) so the claim checks are reached;
//   3: a JWKS document installed in a fresh verifier, then a fixed valid
//      token verified against it;
//   4: base64url, a JWK, the ES256 raw-to-DER and DER-to-raw conversions;
//   5: a certificate (PEM or DER) for the x5t#S256 thumbprint.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "common/token/jose.h"
#include "common/token/token_verifier.h"
#include "test/fuzz/fuzz_keys.h"
#include "test/fuzz/fuzz_support.h"

namespace simprov::fuzz {
namespace {

constexpr int64_t kNowUnix = 1767225600;
EVP_PKEY* es_key = nullptr;
EVP_PKEY* ed_key = nullptr;
std::string jwks;
TokenVerifier* verifier = nullptr;
std::string valid_token;

TokenVerifierOptions Options() {
  TokenVerifierOptions o;
  o.audience = "billing";
  o.issuer = "https://broker.example";
  o.now_unix = [] { return kNowUnix; };
  return o;
}

// HEADER.CLAIMS.SIGNATURE with the signature made by `key`.
std::string SignToken(EVP_PKEY* key, const std::string& header,
                      const std::string& claims) {
  const std::string input =
      jose::Base64UrlEncode(header) + "." + jose::Base64UrlEncode(claims);
  return input + "." + jose::Base64UrlEncode(jose::Sign(key, input));
}

std::string Header(const char* alg, const char* kid) {
  return nlohmann::json{{"alg", alg}, {"typ", "at+jwt"}, {"kid", kid}}.dump();
}

std::string Claims(nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json c = {{"iss", "https://broker.example"},
                      {"sub", "d-1"},
                      {"aud", "billing"},
                      {"iat", kNowUnix - 60},
                      {"nbf", kNowUnix - 60},
                      {"exp", kNowUnix + 600},
                      {"jti", "j-1"},
                      {"imsi", "001010123456789"},
                      {"group", "default"},
                      {"scope", "read write"}};
  for (auto& [k, v] : extra.items()) c[k] = v;
  return c.dump();
}

void WriteSeeds() {
  WriteSeed("es256", WithMode(0, valid_token));
  WriteSeed("eddsa",
            WithMode(0, SignToken(ed_key, Header("EdDSA", "ed"), Claims())));
  WriteSeed("expired",
            WithMode(0, SignToken(es_key, Header("ES256", "es"),
                                  Claims({{"exp", kNowUnix - 10}}))));
  WriteSeed("bound",
            WithMode(8, SignToken(es_key, Header("ES256", "es"),
                                  Claims({{"cnf", {{"x5t#S256", "AAAA"}}}}))));
  WriteSeed("none", WithMode(0, std::string("eyJhbGciOiJub25lIn0.e30.")));
  WriteSeed("es_claims", WithMode(1, Header("ES256", "es") + "\n" + Claims()));
  WriteSeed("ed_claims",
            WithMode(2, Header("EdDSA", "ed") + "\n" +
                            Claims({{"aud", {"other", "billing"}}})));
  WriteSeed("float_dates",
            WithMode(1, Header("ES256", "es") + "\n" +
                            Claims({{"exp", 1767226000.5}, {"iat", 1.0e15}})));
  WriteSeed("crit", WithMode(1, std::string("{\"alg\":\"ES256\",\"typ\":"
                                            "\"at+jwt\",\"kid\":\"es\","
                                            "\"crit\":[\"x\"]}\n{}")));
  WriteSeed("jwks", WithMode(3, jwks));
  WriteSeed("jwk_b64",
            WithMode(4, nlohmann::json::parse(jwks)["keys"][0].dump()));
  WriteSeed("ecdsa_raw", WithMode(4, std::string(64, '\x01')));
  WriteSeed("cert_pem",
            WithMode(5, std::string("-----BEGIN CERTIFICATE-----\nMIIB\n"
                                    "-----END CERTIFICATE-----\n")));
}

}  // namespace
}  // namespace simprov::fuzz

using namespace simprov;
using namespace simprov::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  es_key = LoadKey(kTokenKeyPem).release();
  ed_key = LoadKey(kEd25519KeyPem).release();
  jwks = nlohmann::json{{"keys",
                         {jose::PublicJwk(es_key, "es"),
                          jose::PublicJwk(ed_key, "ed")}}}
             .dump();
  verifier = new TokenVerifier(Options());
  std::string error;
  SIMPROV_FUZZ_CHECK(verifier->SetJwks(jwks, &error));
  valid_token = SignToken(es_key, Header("ES256", "es"), Claims());
  SIMPROV_FUZZ_CHECK(verifier->Verify(valid_token).valid);
  if (SeedDir() != nullptr) {
    WriteSeeds();
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 16384) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int selector = (data[0] & 7) % 6;
  switch (selector) {
    case 0:
      (void)verifier->Verify(in, (data[0] & 8) ? std::string_view("x") : "");
      break;
    case 1:
    case 2: {
      const size_t nl = in.find('\n');
      if (nl == std::string::npos) return 0;
      const std::string token = SignToken(selector == 1 ? es_key : ed_key,
                                          in.substr(0, nl), in.substr(nl + 1));
      (void)verifier->Verify(token);
      break;
    }
    case 3: {
      TokenVerifier fresh(Options());
      std::string error;
      if (fresh.SetJwks(in, &error)) (void)fresh.Verify(valid_token);
      break;
    }
    case 4: {
      std::string out, error;
      (void)jose::Base64UrlDecode(in, &out);
      (void)jose::EcdsaRawToDer(in, &out, &error);
      (void)jose::EcdsaDerToRaw(data + 1, size - 1, &out);
      nlohmann::json jwk;
      if (jose::ParseJsonStrict(in, &jwk, &error)) {
        (void)jose::PublicKeyFromJwk(jwk, &error);
      }
      break;
    }
    case 5:
      (void)jose::CertThumbprintS256(jose::CertificateDer(in));
      break;
  }
  return 0;
}
