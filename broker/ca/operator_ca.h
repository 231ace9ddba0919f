// An operator's own issuing CA (`simprov-broker --ca-cert --ca-key
// [--ca-chain]`): reading and checking the files before anything is written
// into the data dir.
//
// Checks, each a one-line error naming the flag and file:
//  - the key file is not readable by group or others (mode & 077 == 0);
//  - the certificate is a CA (basicConstraints CA:TRUE, keyCertSign);
//  - the key is the certificate's key;
//  - the chain file (intermediates, then the root; any order) leads from
//    the certificate to a self-signed root, valid at `now`. Without a chain
//    file the certificate must itself be the (self-signed) root.
#ifndef SIMPROV_BROKER_CA_OPERATOR_CA_H_
#define SIMPROV_BROKER_CA_OPERATOR_CA_H_

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

absl::StatusOr<CaMaterial> ReadOperatorCa(const OperatorCaFiles& files,
                                          absl::Time now);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_OPERATOR_CA_H_
