#include "broker/store_select.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/atomic_file.h"
#include "common/log.h"

namespace simprov {

namespace {

constexpr absl::Duration kStoreWait = absl::Minutes(5);

}  // namespace

bool IsPostgresUri(const std::string& store) {
  return absl::StartsWith(store, "postgresql://") ||
         absl::StartsWith(store, "postgres://");
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(
    const std::string& store_name, const std::string& password_file,
    const std::string& sqlite_path, Clock& clock,
    std::function<void(absl::Duration)> write_observer) {
  if (store_name == "sqlite") {
    if (!password_file.empty()) {
      return absl::InvalidArgumentError(
          "--store-password-file needs --store postgresql://...");
    }
    auto store = SqliteStore::Open(sqlite_path, clock);
    if (!store.ok()) return store.status();
    (*store)->SetWriteObserver(std::move(write_observer));
    return std::unique_ptr<Store>(std::move(*store));
  }
  PostgresStore::ConnectOptions options;
  options.conninfo = store_name;
  if (!password_file.empty()) {
    auto password = ReadFileToString(password_file, 4096);
    if (!password.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--store-password-file: ", password.status().message()));
    }
    options.password = std::string(absl::StripAsciiWhitespace(*password));
  }
  const std::string shown = pg::RedactConnInfo(store_name);
  const absl::Time deadline = absl::Now() + kStoreWait;
  absl::Duration backoff = absl::Milliseconds(250);
  for (int attempt = 1;; ++attempt) {
    auto store = PostgresStore::Open(options, clock);
    if (store.ok()) {
      LogInfo("store: PostgreSQL %s", shown);
      return std::unique_ptr<Store>(std::move(*store));
    }
    if (!absl::IsUnavailable(store.status()) || absl::Now() >= deadline) {
      return store.status();
    }
    LogWarning(
        "store: PostgreSQL %s not reachable (attempt %d), retrying "
        "in %s: %s",
        shown, attempt, absl::FormatDuration(backoff),
        store.status().message());
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

}  // namespace simprov
