// The registry outbox: registration intents recorded with the
// certificate, delivered by a worker thread until each registry has
// acknowledged them.
//
// Guarantees: an issued certificate has its intents in the store (same
// transaction). The worker makes the first attempt as soon as it is woken
// (within about a second of issuance), then retries with exponential
// backoff (1 s, 2 s, 4 s ...) and jitter, capped at 30 s. Adapters are
// idempotent, so a delivery repeated after a crash (between the registry's
// answer and the store's "done") does no harm; after a SIGKILL and restart
// every certificate ends up registered exactly once. Revoked certificates
// (and terminated subscribers) get "remove" entries; a removal keeps what a
// still-valid certificate of the device needs. A changed group policy
// queues "update" entries (ReregisterGroup).
//
// Quotas: deliveries to a registry are paced to its rate (URL rate=, see
// RegistryPacer). A throttling answer (ThrottledError: HTTP 429,
// ThrottlingException, Retry-After) pauses every delivery to that registry,
// not only the entry that got it, and is not counted as a failed attempt:
// the entry stays due as it was and goes again when the pause is over.
// Devices never wait for this, except in a group that registers
// synchronously.
#ifndef SIMPROV_BROKER_REGISTRY_REGISTRY_OUTBOX_H_
#define SIMPROV_BROKER_REGISTRY_REGISTRY_OUTBOX_H_

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker/enrol/issuance_hooks.h"
#include "broker/registry/issue_hook.h"
#include "broker/registry/registry.h"
#include "broker/registry/registry_pacer.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

struct OutboxOptions {
  absl::Duration base_delay = absl::Seconds(1);
  absl::Duration max_delay = absl::Seconds(30);
  // How often the worker looks for due entries and new removals when
  // nobody wakes it.
  absl::Duration poll_interval = absl::Seconds(1);
  size_t batch = 64;
  // Entries are claimed with a lease (Store::ClaimIntents) so that of
  // several brokers on one store one delivers each entry at a time; a
  // broker that dies holds its claims until the lease runs out. `holder`
  // names this outbox (empty: "outbox@" and the process's InstanceId).
  // A zero lease claims nothing (one broker on its own store: the broker
  // reads due entries as they are, and a restart after a crash does not
  // wait for its old leases).
  std::string holder;
  absl::Duration lease = absl::Seconds(60);
};

class RegistryOutbox : public IssuanceHooks {
 public:
  // `hook` may be null (no --issue-hook).
  RegistryOutbox(Store& store,
                 std::vector<std::unique_ptr<Registry>> registries,
                 std::unique_ptr<IssueHook> hook, Clock& clock, Random& random,
                 OutboxOptions options = {});
  ~RegistryOutbox() override;

  // The worker thread.
  void Start();
  void Stop();
  // Something to deliver: look now.
  void Wake();

  // One pass (what the worker does each round): queues removals, delivers
  // every due entry. Returns how many were delivered.
  absl::StatusOr<int> RunOnce();

  // The delay before attempt `attempts` + 1, jittered into [d/2, d] where
  // d = base * 2^attempts, capped at max_delay.
  absl::Duration Backoff(int64_t attempts);

  bool HasRegistries() const { return !registries_.empty(); }
  std::vector<std::string> RegistryNames() const;
  // Called with the registry's name at each throttling answer (the
  // simprov_registry_throttled_total metric). Set before Start.
  void OnThrottled(std::function<void(const std::string&)> fn) {
    on_throttled_ = std::move(fn);
  }
  Registry* Find(const std::string& name) const;

  // Registers again, through the outbox, every valid certificate of the
  // group's devices whose registration differs from what `policy` gives
  // now (thing, topics, group; values the issue hook chose are kept), or
  // that is not registered with a registry the policy now names. Compares
  // with what was last queued, so applying the same groups again after a
  // crash queues what is still missing and nothing else. Returns how many
  // were queued.
  absl::StatusOr<int64_t> ReregisterGroup(const GroupPolicy& policy);

  // The registration state of a certificate: {"status": "registered" |
  // "pending" | "none", "registries": [...connection details, state,
  // last_error]}.
  absl::StatusOr<nlohmann::json> StatusOf(const std::string& serial);

  // IssuanceHooks.
  absl::StatusOr<std::string> BeforeSigning(const IssuanceContext& c) override;
  absl::StatusOr<std::vector<RegistrationIntent>> Intents(
      const IssuanceContext& c, const CertificateRecord& cert,
      const std::string& hook_details) override;
  absl::Status AfterRecorded(const IssuanceContext& c,
                             const CertificateRecord& cert) override;
  std::string RegistryInfo(const CertificateRecord& cert) override;

 private:
  // Where a group's devices are registered, with which templates.
  struct Target {
    const Registry* registry;
    std::string thing_template;
    std::vector<std::string> topic_templates;
  };
  // FailedPrecondition for a binding to a registry this broker does not
  // have, unless `skip_unknown`.
  absl::StatusOr<std::vector<Target>> TargetsFor(const GroupPolicy* policy,
                                                 const std::string& group,
                                                 bool skip_unknown) const;
  // Attempts one entry and records the outcome.
  absl::Status Deliver(const RegistrationIntent& intent);
  absl::Status Attempt(const RegistrationIntent& intent, Registry& registry,
                       const DeviceRegistration& device, std::string* answer);
  // The registrations with `registry` of the device's other valid
  // certificates (not revoked, not expired, subscriber not terminated):
  // those with the same device id or the same IMSI as `removal`.
  absl::StatusOr<std::vector<DeviceRegistration>> StillValid(
      const RegistrationIntent& removal);
  void WorkerLoop();
  // Waits for the next delivery slot of `registry` (its rate). False when
  // the registry is paused after a throttling answer, or when stopping.
  bool WaitForSlot(const Registry& registry);

  // Constant after construction.
  Store& store_;
  std::vector<std::unique_ptr<Registry>> registries_;
  std::unique_ptr<IssueHook> hook_;
  Clock& clock_;
  const OutboxOptions options_;
  RegistryPacer pacer_;
  std::function<void(const std::string&)> on_throttled_;

  std::mutex random_mu_;
  Random& random_;  // guarded by random_mu_

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;        // guarded by mu_
  bool woken_ = false;           // guarded by mu_
  std::set<int64_t> in_flight_;  // guarded by mu_: ids being delivered
  // Device ids with a delivery under way: one delivery per device at a time,
  // so a removal's look at the device's other certificates and what it
  // deletes cannot interleave with a registration of the same device.
  std::set<std::string> busy_devices_;  // guarded by mu_
  std::condition_variable device_cv_;
  std::thread worker_;
};

// The broker's registry flags (docs/registry.md).
struct RegistryFlags {
  std::vector<std::string> registries;  // --registry URL (repeatable)
  std::string registry_file;            // --registry-file FILE
  std::string issue_hook;               // --issue-hook URL
  std::string issue_hook_secret_file;   // else $SIMPROV_ISSUE_HOOK_SECRET
  std::string issue_hook_timeout = "5s";
  bool issue_hook_allow_on_timeout = false;
};

// Builds the outbox from the flags. Registries are not contacted here: the
// broker starts even when they are down. InvalidArgument for a bad URL or
// two registries of the same name.
absl::StatusOr<std::unique_ptr<RegistryOutbox>> ConfigureRegistries(
    const RegistryFlags& flags, Store& store, Clock& clock, Random& random);

// The entry that says how certificate `intents` (IntentsOf) stands with
// `registry`: its "update" entry if it has one, else its "register" entry;
// null when it has none or was removed.
const RegistrationIntent* CurrentRegistration(
    const std::vector<RegistrationIntent>& intents,
    const std::string& registry);

// One line for `simprov devices list|show`: the state of a certificate's
// registrations, one `NAME:STATE` per registry in name order, where STATE is
// `registered`, `pending(N)` (N failed attempts; also while an update
// waits), `removing`, `removed`,
// `cancelled` or `skipped`; "-" when there are none.
std::string RegistryStatusLine(const std::vector<RegistrationIntent>& intents);

}  // namespace simprov

#endif  // SIMPROV_BROKER_REGISTRY_REGISTRY_OUTBOX_H_
