// SqliteStore: operations: re-wrapping sealed keys for a KEK
// rotation.
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"

namespace simprov {

absl::StatusOr<Store::RewrapCounts> SqliteStore::RewrapSealedKeys(
    const RewrapFn& rewrap, size_t batch_size) {
  if (batch_size == 0) batch_size = 1;
  RewrapCounts total;
  std::string after;  // last IMSI of the previous batch; "" sorts first
  while (true) {
    RewrapCounts batch;
    std::string last;
    // Reads and updates in the writer's transaction, so no write between
    // our read and our update can be lost.
    absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
      batch = RewrapCounts{};
      last.clear();
      std::vector<std::pair<std::string, Bytes>> rows;
      {
        auto st = db.Prepare(
            "SELECT imsi, sealed_keys FROM subscribers WHERE imsi > ? "
            "ORDER BY imsi LIMIT ?");
        if (!st.ok()) return st.status();
        (*st)->Bind(1, after);
        (*st)->Bind(2, static_cast<int64_t>(batch_size));
        while (true) {
          int rc = (*st)->Step();
          if (rc == SQLITE_DONE) break;
          if (rc != SQLITE_ROW) return db.Error(rc, "read sealed keys");
          rows.emplace_back((*st)->Text(0), (*st)->Blob(1));
        }
      }
      for (auto& [imsi, sealed] : rows) {
        auto box = rewrap(imsi, sealed);
        if (!box.ok()) return box.status();
        ++batch.rows;
        last = imsi;
        if (!box->has_value()) continue;
        auto up =
            db.Prepare("UPDATE subscribers SET sealed_keys = ? WHERE imsi = ?");
        if (!up.ok()) return up.status();
        (*up)->Bind(1, **box);
        (*up)->Bind(2, imsi);
        int rc = (*up)->Step();
        if (rc != SQLITE_DONE) return db.Error(rc, "re-wrap sealed keys");
        ++batch.rewrapped;
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    total.rows += batch.rows;
    total.rewrapped += batch.rewrapped;
    if (batch.rows < batch_size) return total;
    after = last;
  }
}

}  // namespace simprov
