// What happens around the signing of a device certificate besides the CA
//: the --issue-hook webhook before signing, the registry outbox
// entries written with the certificate, synchronous registration, and the
// registry details of the enrolment answer. The bootstrap service calls
// these; broker/registry/registry_outbox.h implements them.
#ifndef SIMPROV_BROKER_ENROL_ISSUANCE_HOOKS_H_
#define SIMPROV_BROKER_ENROL_ISSUANCE_HOOKS_H_

#include <openssl/evp.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/policy/policy.h"
#include "broker/store/store.h"

namespace simprov {

struct IssuanceContext {
  std::string action;  // "bootstrap" or "renew"
  const SubscriberRecord* subscriber = nullptr;
  const GroupPolicy* policy = nullptr;
  TemplateValues values;
  // The CSR's key, not owned; PEM-encoded (PublicKeyPem) only by a hook
  // that sends it: OpenSSL 3.0's encoder costs ~0.1 ms per key.
  EVP_PKEY* public_key = nullptr;
};

// SubjectPublicKeyInfo PEM of `key` ("" if it cannot be encoded).
std::string PublicKeyPem(EVP_PKEY* key);

class IssuanceHooks {
 public:
  virtual ~IssuanceHooks() = default;
  // Before signing. PermissionDenied (with the reason) refuses the
  // certificate. Returns the hook's registry details as JSON ("" if none).
  virtual absl::StatusOr<std::string> BeforeSigning(
      const IssuanceContext& c) = 0;
  // The outbox entries to record in the certificate's transaction.
  virtual absl::StatusOr<std::vector<RegistrationIntent>> Intents(
      const IssuanceContext& c, const CertificateRecord& cert,
      const std::string& hook_details) = 0;
  // After the certificate is recorded. For groups with registration "sync"
  // delivers now; Unavailable when a registry could not be reached (the
  // certificate is then revoked and never handed out).
  virtual absl::Status AfterRecorded(const IssuanceContext& c,
                                     const CertificateRecord& cert) = 0;
  // The enrolment answer's registry_info_json ("" when no registry).
  virtual std::string RegistryInfo(const CertificateRecord& cert) = 0;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_ENROL_ISSUANCE_HOOKS_H_
