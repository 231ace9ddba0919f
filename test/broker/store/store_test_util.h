// Helpers for the store's tests: a temporary directory and recognisable
// subscribers, certificates, audit events and registry intents.
#ifndef SIMPROV_TEST_BROKER_STORE_STORE_TEST_UTIL_H_
#define SIMPROV_TEST_BROKER_STORE_STORE_TEST_UTIL_H_

#include <string>

#include "absl/time/time.h"
#include "broker/store/store.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The key that seals every test subscriber's K || OPc.
extern const Bytes kTestKek;
// The fake clock's start, and a time the tests stamp records with.
inline constexpr absl::Time kT0 = absl::FromUnixSeconds(1700000000);

// Subscriber n's IMSI (15 digits) and plain K || OPc (distinct per n).
std::string Imsi(int n);
Bytes PlainKeys(int n);
NewSubscriber MakeSubscriber(int n, Random& random,
                             const std::string& group = kDefaultGroup);
// A 30-day certificate issued at `issued`.
CertificateRecord Cert(const std::string& serial, const std::string& imsi,
                       const std::string& device, absl::Time issued);
// A device's successful bootstrap event: actor and target are `imsi`.
AuditEvent Event(const std::string& imsi, const std::string& detail,
                 absl::Time at);
// An admin action by "local" on `target`.
AuditEvent AdminEvent(const std::string& action, const std::string& target,
                      absl::Time at);
RegistrationIntent Intent(const std::string& registry, const std::string& kind,
                          const std::string& serial, const std::string& imsi,
                          absl::Time at);

}  // namespace simprov

#endif  // SIMPROV_TEST_BROKER_STORE_STORE_TEST_UTIL_H_
