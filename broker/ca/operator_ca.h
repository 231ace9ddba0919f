// An operator's own issuing CA (`simprov-broker --ca-cert --ca-key
// [--ca-chain]`): reading and checking the files before anything is written
// into the data dir.
//
// Checks, each a one-line error naming the flag and file:
//  - the key file is not readable by group or others (mode & 077 == 0),
//    or the key a pkcs11: URI names is found in its token;
//  - the certificate is a CA (basicConstraints CA:TRUE, keyCertSign);
//  - the key is the certificate's key;
//  - the chain file (intermediates, then the root; any order) leads from
//    the certificate to a self-signed root, valid at `now`. Without a chain
//    file the certificate must itself be the (self-signed) root.
#ifndef SIMPROV_BROKER_CA_OPERATOR_CA_H_
#define SIMPROV_BROKER_CA_OPERATOR_CA_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/ca/ca.h"

namespace simprov {

struct OperatorCaFiles {
  std::string cert;   // --ca-cert
  std::string key;    // --ca-key
  std::string chain;  // --ca-chain, optional
  bool empty() const { return cert.empty() && key.empty() && chain.empty(); }
};

// The public key of the key a --ca-key reference names (a pkcs11: URI),
// e.g. Pkcs11CaSignerFactory::LoadUri's; its errors are returned as they are.
using CaKeyReferenceResolver =
    std::function<absl::StatusOr<EvpPkeyPtr>(const std::string& reference)>;

// With `resolve_reference`, a --ca-key that is a pkcs11: URI is checked
// against --ca-cert through it (instead of the mode and PEM checks) and
// CaMaterial::key_pem holds the URI: the key file's content.
absl::StatusOr<CaMaterial> ReadOperatorCa(
    const OperatorCaFiles& files, absl::Time now,
    const CaKeyReferenceResolver& resolve_reference = nullptr);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_OPERATOR_CA_H_
