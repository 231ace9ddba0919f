// Row helpers shared by the files of the SQLite store (sqlite_store*.cc).
// Not for use outside the store.
#ifndef SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_
#define SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_

#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"
#include "broker/store/sqlite/sqlite_db.h"
#include "broker/store/store.h"

namespace simprov::sqlite_internal {

// Schema migrations, applied in order, each in its own transaction
// (sqlite_store_schema.cc).
absl::Span<const char* const> Migrations();

int64_t Unix(absl::Time t);
// A LIMIT for "at most `limit`, 0: all" (SQLite reads -1 as no limit).
inline int64_t SqlLimit(size_t limit) {
  return limit == 0 ? int64_t{-1} : static_cast<int64_t>(limit);
}

extern const char kSubscriberColumns[];
SubscriberRecord ReadSubscriber(SqliteStatement& row);
extern const char kCertificateColumns[];
CertificateRecord ReadCertificate(SqliteStatement& row);
extern const char kAuditColumns[];
AuditEvent ReadAudit(SqliteStatement& row);
extern const char kIntentColumns[];
RegistrationIntent ReadIntent(SqliteStatement& row);
absl::Status InsertAudit(SqliteConnection& db, const AuditEvent& e);
// The certificate's DER hash (what a token's cnf names), recorded with it.
absl::Status InsertCertificateSha256(SqliteConnection& db,
                                     const CertificateRecord& cert);
// SQL function simprov_sha256(BLOB) -> BLOB, for the migration that hashes
// the certificates issued before the hashes were recorded.
absl::Status RegisterSha256Function(SqliteConnection& db);

}  // namespace simprov::sqlite_internal

#endif  // SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_
