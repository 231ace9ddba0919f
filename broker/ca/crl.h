// Building the CA's certificate revocation lists: a to-be-signed X.509 v2
// CRL from the revoked entries, and its DER encoding once signed. Signing
// is the CaSigner's part; scheduling and publishing are crl_publisher.h's.
#ifndef SIMPROV_BROKER_CA_CRL_H_
#define SIMPROV_BROKER_CA_CRL_H_

#include <openssl/x509.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {

// One entry of a CRL.
struct RevokedEntry {
  std::string serial_hex;  // lower-case hex, as CertInfo::serial_hex
  absl::Time revoked_at;
  int reason_code = 0;  // RFC 5280 CRLReason; 0 (unspecified) is omitted
};

// An unsigned v2 CRL issued by `issuer` (its subject and SKI):
// thisUpdate/nextUpdate, one entry per `revoked` (sorted by serial) with
// its reason code as an entry extension, the CRL number and AKI keyid =
// `issuer_ski`. InvalidArgument if `next_update` does not follow
// `this_update` or a serial is not 1..64 hex digits.
absl::StatusOr<X509CrlPtr> BuildCrl(const X509_NAME* issuer,
                                    const Bytes& issuer_ski,
                                    const std::vector<RevokedEntry>& revoked,
                                    uint64_t crl_number, absl::Time this_update,
                                    absl::Time next_update);

// The DER encoding of a (signed) CRL.
absl::StatusOr<Bytes> CrlToDer(X509_CRL* crl);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CRL_H_
