// Row helpers shared by the files of the PostgreSQL store
// (postgres_store*.cc). Not for use outside the store.
#ifndef SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_STORE_INTERNAL_H_
#define SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_STORE_INTERNAL_H_

#include <cstddef>
#include <cstdint>

#include "broker/store/postgres/pg_conn.h"
#include "broker/store/store.h"

namespace simprov::pg_internal {

int64_t Unix(absl::Time t);
// A LIMIT for "at most `limit`, 0: all" (LIMIT NULL is no limit).
inline pg::Arg Limit(size_t limit) {
  return limit == 0 ? pg::Arg(pg::Null{}) : pg::Int(limit);
}

// Listings read this many rows per round trip (keyset paging), so `fn` is
// called with no connection held and a huge table is never one result.
inline constexpr size_t kPageRows = 1000;

extern const char kSubscriberColumns[];
SubscriberRecord ReadSubscriber(const pg::Result& r, int row);
extern const char kCertificateColumns[];
CertificateRecord ReadCertificate(const pg::Result& r, int row);
extern const char kAuditColumns[];
AuditEvent ReadAudit(const pg::Result& r, int row);
absl::Status InsertAudit(pg::Connection& db, const AuditEvent& e);
// The certificate's DER hash (what a token's cnf names), recorded with it.
absl::Status InsertCertificateSha256(pg::Connection& db,
                                     const CertificateRecord& cert);
// The registry outbox's columns and one row of them.
extern const char kIntentColumns[];
RegistrationIntent ReadIntent(const pg::Result& r, int row);
// Every certificate row in `r`.
std::vector<CertificateRecord> Certificates(const pg::Result& r);

// The schema, oldest migration first (postgres_store_schema.cc).
extern const char* const kMigrations[];
extern const int kMigrationCount;
// The tables a snapshot holds, in an order that satisfies foreign keys.
extern const char* const kTables[];
extern const int kTableCount;

}  // namespace simprov::pg_internal

#endif  // SIMPROV_BROKER_STORE_POSTGRES_POSTGRES_STORE_INTERNAL_H_
