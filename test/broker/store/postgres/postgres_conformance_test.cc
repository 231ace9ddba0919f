// The store conformance suite (test/broker/store/store_conformance.h) on
// the PostgreSQL store: a real PostgreSQL 15 (test/testing/postgres_server.h)
// shared by the tests of this binary, one fresh database per test
// directory; a snapshot is restored into a fresh database of its own.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "broker/store/postgres/postgres_store.h"
#include "test/broker/store/store_conformance.h"
#include "test/testing/postgres_server.h"

namespace simprov {
namespace {

using testing::PostgresServer;

absl::StatusOr<std::unique_ptr<Store>> OpenDatabase(const std::string& db,
                                                    Clock& clock) {
  auto store = PostgresStore::Open({PostgresServer::Shared().Uri(db)}, clock);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(*store));
}

// A directory's database, created on its first open.
absl::StatusOr<std::string> DatabaseOf(const std::string& dir) {
  static std::mutex mu;
  static auto* databases = new std::map<std::string, std::string>();
  std::lock_guard<std::mutex> lock(mu);
  PostgresServer& server = PostgresServer::Shared();
  if (!server.ok()) return server.status();
  auto it = databases->find(dir);
  if (it != databases->end()) return it->second;
  auto db = server.CreateDatabase();
  if (!db.ok()) return db.status();
  (*databases)[dir] = *db;
  return *db;
}

StoreBackend PostgresBackend() {
  return {"Postgres",
          [](const std::string& dir,
             Clock& clock) -> absl::StatusOr<std::unique_ptr<Store>> {
            auto db = DatabaseOf(dir);
            if (!db.ok()) return db.status();
            return OpenDatabase(*db, clock);
          },
          [](const std::string& path,
             Clock& clock) -> absl::StatusOr<std::unique_ptr<Store>> {
            auto db = DatabaseOf(path);
            if (!db.ok()) return db.status();
            const PostgresStore::ConnectOptions options{
                PostgresServer::Shared().Uri(*db)};
            if (absl::Status s = PostgresStore::Restore(options, path, clock);
                !s.ok()) {
              return s;
            }
            return OpenDatabase(*db, clock);
          }};
}

INSTANTIATE_TEST_SUITE_P(Postgres, StoreConformanceTest,
                         ::testing::Values(PostgresBackend()),
                         StoreBackendName);

}  // namespace
}  // namespace simprov
