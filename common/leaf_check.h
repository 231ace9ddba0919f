// The agent's fast check of the certificate the broker issued for its P-256
// key: a strict DER walk of the one shape simprov's CA issues, instead of
// OpenSSL 3.0's general decoding and chain building (most of a bootstrap's
// agent CPU). Anything else takes the general path (common/x509.h).
#ifndef SIMPROV_COMMON_LEAF_CHECK_H_
#define SIMPROV_COMMON_LEAF_CHECK_H_

#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace simprov {

// The agent's check of the certificate a broker issued for its P-256 `key`,
// for the shape simprov's CA issues (v3, ecdsa-with-SHA256, known
// extensions, issued by `issuer` under `anchors`). When it returns a value,
// CertFromDer + SamePublicKey + VerifyChain(leaf, {issuer}, anchors, at,
// "sslclient") + DescribeCert would have returned the same; it does so
// without OpenSSL 3.0's decoding of the leaf's key and re-verifying the
// issuer (0.3 ms of a bootstrap's agent CPU), remembering that `issuer`
// chains to `anchors` (validity is checked at every call). nullopt for any
// other shape and for anything that does not check out: the caller then
// takes the general path, which also words the error.
std::optional<CertInfo> VerifyP256LeafFast(const Bytes& der, EVP_PKEY* key,
                                           X509* issuer,
                                           const std::vector<X509*>& anchors,
                                           absl::Time at);

}  // namespace simprov

#endif  // SIMPROV_COMMON_LEAF_CHECK_H_
