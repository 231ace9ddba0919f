// Work done once per cluster of brokers sharing one store, not once per
// broker: a job runs on the broker that holds its named lease
// (Store::TryAcquireLease). The holder renews the lease each time it runs
// the job; when it dies or stops, another broker takes the lease over once
// it has expired (or at once, after ReleaseAll). With one broker (the
// SQLite store) that broker always holds every lease.
#ifndef SIMPROV_BROKER_STORE_CLUSTER_LEASE_H_
#define SIMPROV_BROKER_STORE_CLUSTER_LEASE_H_

#include <unistd.h>

#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "broker/store/store.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

// This process among every broker of a cluster: host name, process id and
// 8 random bytes (containers often share a pid), fixed for its lifetime.
inline const std::string& InstanceId() {
  static const std::string* const id = [] {
    char host[256] = {0};
    if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
    return new std::string(absl::StrCat(host, ":", getpid(), ":",
                                        HexEncode(Random::Real().Generate(8))));
  }();
  return *id;
}

class ClusterJobs {
 public:
  // Whether a job runs once per cluster (under its lease) or on every
  // broker (its state is the broker's own).
  enum class Scope { kOncePerCluster, kPerBroker };

  // `ttl`: how long a lease lasts without renewal; longer than the period
  // the jobs run at, so that the holder keeps it.
  ClusterJobs(Store& store, Clock& clock, std::string holder,
              absl::Duration ttl)
      : store_(store), clock_(clock), holder_(std::move(holder)), ttl_(ttl) {}

  // Runs `fn` when `scope` is kPerBroker, or when this broker holds (or now
  // takes, or renews) lease `name`. Returns whether it ran; a store error
  // when it could not tell (then it did not run).
  absl::StatusOr<bool> Run(const std::string& name, Scope scope,
                           const std::function<void()>& fn) {
    if (scope == Scope::kOncePerCluster) {
      auto held = store_.TryAcquireLease(name, holder_, ttl_, clock_.Now());
      if (!held.ok()) return held.status();
      if (!*held) return false;
      std::lock_guard<std::mutex> lock(mu_);
      taken_.insert(name);
    }
    fn();
    return true;
  }

  // Gives up every lease taken (at shutdown): another broker takes over at
  // its next run instead of after the ttl.
  void ReleaseAll() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& name : taken_) {
      (void)store_.ReleaseLease(name, holder_);
    }
    taken_.clear();
  }

  const std::string& holder() const { return holder_; }

 private:
  Store& store_;
  Clock& clock_;
  const std::string holder_;
  const absl::Duration ttl_;
  std::mutex mu_;
  std::set<std::string> taken_;  // guarded by mu_
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_CLUSTER_LEASE_H_
