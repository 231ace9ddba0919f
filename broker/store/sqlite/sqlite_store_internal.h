// Row helpers shared by the files of the SQLite store (sqlite_store.cc and
// sqlite_store_fleet.cc). Not for use outside the store.
#ifndef SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_
#define SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_

#include <cstdint>

#include "broker/store/sqlite/sqlite_db.h"
#include "broker/store/store.h"

namespace simprov::sqlite_internal {

int64_t Unix(absl::Time t);

extern const char kSubscriberColumns[];
SubscriberRecord ReadSubscriber(StatementLease& st);
extern const char kCertificateColumns[];
CertificateRecord ReadCertificate(StatementLease& st);
extern const char kAuditColumns[];
AuditEvent ReadAudit(StatementLease& st);
absl::Status InsertAudit(SqliteConnection& db, const AuditEvent& e);

}  // namespace simprov::sqlite_internal

#endif  // SIMPROV_BROKER_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_
