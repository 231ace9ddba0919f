// Copying another store's tables into an empty PostgreSQL store, all or
// nothing, verified (`simprov-broker migrate-store`): the source is read
// through TableSource (the SQLite side lives with the broker, which may
// name both backends), every table of this schema is inserted in one
// transaction, then read back and compared with what was read: the row
// count and a SHA-256 over the rows in key order. Any difference rolls
// everything back.
#ifndef SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_LOAD_H_
#define SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_LOAD_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/store/postgres/pg_conn.h"
#include "common/clock.h"

namespace simprov {

class TableSource {
 public:
  virtual ~TableSource() = default;
  // Every table the source holds (its own bookkeeping excluded).
  virtual absl::StatusOr<std::vector<std::string>> Tables() = 0;
  // Calls `row` with each row of `table` (the values of `columns`, in that
  // order: integer, text, bytes or NULL), ordered by `key` bytewise.
  using RowFn = std::function<absl::Status(const std::vector<pg::Arg>&)>;
  virtual absl::Status Read(const std::string& table,
                            const std::vector<std::string>& columns,
                            const std::string& key, const RowFn& row) = 0;
};

struct TableReport {
  std::string table;
  uint64_t rows = 0;
  std::string sha256_hex;  // over the rows in key order
};

// Migrates the target's schema, checks it is empty (FailedPrecondition
// otherwise) and that the source has no table the schema lacks
// (FailedPrecondition naming it), then copies and verifies. Returns one
// report per table.
absl::StatusOr<std::vector<TableReport>> LoadIntoPostgres(
    const pg::ConnectOptions& target, TableSource& source,
    Clock& clock = Clock::Real());

}  // namespace simprov

#endif  // SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_LOAD_H_
