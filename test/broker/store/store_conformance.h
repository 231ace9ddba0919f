// The store conformance suite: what every Store backend must do, written
// against broker/store/store.h only. A backend's test instantiates it with
// one line:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformanceTest,
//                            ::testing::Values(SqliteBackend()),
//                            StoreBackendName);
//
// and links simprov_store_conformance.
#ifndef SIMPROV_TEST_BROKER_STORE_STORE_CONFORMANCE_H_
#define SIMPROV_TEST_BROKER_STORE_STORE_CONFORMANCE_H_

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/store/store.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/sqn.h"
#include "test/broker/store/store_test_util.h"

namespace simprov {

// How the suite reaches one backend.
struct StoreBackend {
  using OpenFn = std::function<absl::StatusOr<std::unique_ptr<Store>>(
      const std::string& where, Clock& clock)>;
  std::string name;  // the test name suffix: letters and digits
  // Opens (creating it on first use) the store kept under the directory
  // `where`; opening the same directory again gives the same store.
  OpenFn open;
  // Opens what Store::Snapshot wrote at the path `where` as a store.
  OpenFn open_snapshot;
};

// gtest's names and messages for a backend: its name.
std::string StoreBackendName(const ::testing::TestParamInfo<StoreBackend>& i);
void PrintTo(const StoreBackend& backend, std::ostream* os);

class StoreConformanceTest : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Closes the store and opens it again (a broker restart).
  void Reopen();
  // Imports subscribers first..first+count-1 in one committed import.
  void Import(int first, int count, HeSqnState sqn = HeSqnState{});
  // Records certificate `serial` for `imsi` bound to `device`, issued at
  // `at`, as a bootstrap does.
  void Issue(const std::string& serial, const std::string& imsi,
             const std::string& device, absl::Time at = kT0);
  // Records certificate `serial` of `imsi` (device "dev-" + imsi) with a
  // register intent for each registry, created at `at` and due `due[i]`
  // after it (at once when `due` is shorter).
  void IssueWith(const std::string& serial, const std::string& imsi,
                 const std::vector<std::string>& registries,
                 absl::Time at = kT0, std::vector<absl::Duration> due = {});
  // Revokes one certificate (keyCompromise) by an admin.
  void Revoke(const std::string& serial, absl::Time at);
  // Lists (IMSIs in visiting order) and reads back (whole records).
  std::vector<std::string> ListImsis(const std::string& group,
                                     size_t stop_after = 0);
  std::vector<std::string> PageImsis(const SubscriberFilter& filter);
  std::vector<std::string> GroupNames(const std::string& after, size_t limit);
  std::vector<AuditEvent> Audit(const AuditQuery& query);
  std::vector<RegistrationIntent> Pending(int64_t after_id, size_t limit);
  std::vector<std::string> Serials(const std::vector<CertificateRecord>& certs);
  std::vector<RegistrationIntent> IntentsOf(const std::string& serial);
  std::vector<RegistrationIntent> Due(absl::Time now, size_t limit = 100);
  SubscriberRecord Subscriber(const std::string& imsi);
  Store::TokenSubject Subject(const std::string& serial);

  TempDir dir_;
  FakeClock clock_{kT0};
  DeterministicRandom random_{42};
  std::unique_ptr<Store> store_;
};

}  // namespace simprov

#endif  // SIMPROV_TEST_BROKER_STORE_STORE_CONFORMANCE_H_
