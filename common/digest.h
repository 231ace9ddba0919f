// SHA-256 and HMAC-SHA-256: the one copy of each digest helper that agent,
// broker and common/ share, plus the digest choices tied to keys and
// certificates (the signing digest for a key, a certificate's fingerprint).
//
// Sha256 and HmacSha256 abort the process if OpenSSL fails (only on
// allocation failure): a wrong or empty digest must never be used as a MAC,
// a transcript hash or a key.
#ifndef SIMPROV_COMMON_DIGEST_H_
#define SIMPROV_COMMON_DIGEST_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/strings/string_view.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {

inline constexpr size_t kSha256Size = 32;

// SHA-256 of `data` (32 bytes).
Bytes Sha256(const Bytes& data);
Bytes Sha256(absl::string_view data);
// SHA-256 over data given in pieces (archives streamed in chunks).
class Sha256Hasher {
 public:
  Sha256Hasher();
  void Update(absl::string_view data);
  // The digest of everything given so far (32 bytes); ends the hasher.
  Bytes Final();

 private:
  EvpMdCtxPtr ctx_;
};

// HMAC-SHA-256 of `data` under `key` (32 bytes).
Bytes HmacSha256(const Bytes& key, const Bytes& data);

// The digest to sign with `key`: SHA-256, or none for the EdDSA keys, which
// hash internally (EVP_DigestSignInit's md argument).
const EVP_MD* SigningDigestFor(EVP_PKEY* key);
// SHA-256 of the certificate's DER encoding (32 bytes): its fingerprint.
// Empty for a null certificate or when the encoding fails.
Bytes CertSha256(X509* cert);

}  // namespace simprov

#endif  // SIMPROV_COMMON_DIGEST_H_
