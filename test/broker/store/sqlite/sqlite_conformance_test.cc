// The store conformance suite (test/broker/store/store_conformance.h) on
// the SQLite store: one database file per test directory.
#include <memory>
#include <string>
#include <utility>

#include "broker/store/sqlite/sqlite_store.h"
#include "test/broker/store/store_conformance.h"

namespace simprov {
namespace {

absl::StatusOr<std::unique_ptr<Store>> OpenSqlite(const std::string& path,
                                                  Clock& clock) {
  auto store = SqliteStore::Open(path, clock);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(*store));
}

StoreBackend SqliteBackend() {
  return {"Sqlite",
          [](const std::string& dir, Clock& clock) {
            return OpenSqlite(dir + "/store.db", clock);
          },
          OpenSqlite};
}

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformanceTest,
                         ::testing::Values(SqliteBackend()), StoreBackendName);

}  // namespace
}  // namespace simprov
