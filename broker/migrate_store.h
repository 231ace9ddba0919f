// `simprov-broker migrate-store --data-dir DIR --to postgresql://...`:
// copies a stopped broker's SQLite store (DIR/simprov.db) into an empty
// PostgreSQL database, all or nothing, verified per table by row count and
// SHA-256 (broker/store/postgres/postgres_load.h). The SQLite file is left
// as it was.
#ifndef SIMPROV_BROKER_MIGRATE_STORE_H_
#define SIMPROV_BROKER_MIGRATE_STORE_H_

#include <string>

namespace simprov {

struct MigrateStoreConfig {
  std::string data_dir;
  std::string to;  // a libpq URI
  std::string password_file;
};

// Prints one line per table (name, rows, sha256) and a summary; returns
// the exit code (common/exit_codes.h).
int RunMigrateStore(const MigrateStoreConfig& config);

}  // namespace simprov

#endif  // SIMPROV_BROKER_MIGRATE_STORE_H_
