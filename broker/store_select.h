// The store --store names: SQLite in the data dir ("sqlite"), or a
// PostgreSQL libpq URI (postgresql:// or postgres://).
#ifndef SIMPROV_BROKER_STORE_SELECT_H_
#define SIMPROV_BROKER_STORE_SELECT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/store/store.h"
#include "common/clock.h"

namespace simprov {

bool IsPostgresUri(const std::string& store);

// Opens the store `store` names: SQLite at `sqlite_path`, or PostgreSQL
// with the password in `password_file` (if any). A PostgreSQL server that
// cannot be reached at start is waited for (retried with backoff for up to
// five minutes, each attempt logged), not given up on at once: brokers and
// their database often start together. `write_observer` sees the SQLite
// store's write latencies.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(
    const std::string& store, const std::string& password_file,
    const std::string& sqlite_path, Clock& clock,
    std::function<void(absl::Duration)> write_observer);

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_SELECT_H_
