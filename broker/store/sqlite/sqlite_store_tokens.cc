// SqliteStore: the tokens area: introspection apps, revocations and the
// token subject.
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"
#include "common/digest.h"

namespace simprov {

namespace sqlite_internal {
namespace {

void Sha256Sql(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (argc != 1 || sqlite3_value_type(argv[0]) == SQLITE_NULL) {
    sqlite3_result_null(ctx);
    return;
  }
  const void* data = sqlite3_value_blob(argv[0]);
  const int size = sqlite3_value_bytes(argv[0]);
  const auto* p = static_cast<const uint8_t*>(data);
  const Bytes hash = Sha256(p == nullptr ? Bytes() : Bytes(p, p + size));
  sqlite3_result_blob(ctx, hash.data(), static_cast<int>(hash.size()),
                      SQLITE_TRANSIENT);
}

}  // namespace

absl::Status InsertCertificateSha256(SqliteConnection& db,
                                     const CertificateRecord& cert) {
  const Bytes hash = Sha256(cert.der);
  return db.ExecBound(
      "INSERT INTO certificate_sha256 (serial, sha256) VALUES (?, ?)",
      "record certificate hash", {cert.serial, hash});
}

absl::Status RegisterSha256Function(SqliteConnection& db) {
  if (sqlite3_create_function_v2(
          db.raw(), "simprov_sha256", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
          nullptr, &Sha256Sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return absl::InternalError(absl::StrCat(
        "store: registering simprov_sha256: ", sqlite3_errmsg(db.raw())));
  }
  return absl::OkStatus();
}

}  // namespace sqlite_internal

using sqlite_internal::Unix;

absl::Status SqliteStore::CreateTokenApp(const std::string& name,
                                         const Bytes& key_hash, absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    absl::Status s = db.ExecBound(
        "INSERT INTO token_apps (name, key_hash, created_at) VALUES (?, ?, ?)",
        "create app", {name, key_hash, Unix(at)});
    if (absl::IsAlreadyExists(s)) {  // a constraint: the name is taken
      return absl::AlreadyExistsError(
          absl::StrCat("application ", name, " already exists"));
    }
    return s;
  });
}

absl::StatusOr<Bytes> SqliteStore::TokenAppKeyHash(const std::string& name) {
  std::lock_guard<std::mutex> lock(read_mu_);
  Bytes hash;
  auto found = reader_->QueryRow(
      "SELECT key_hash FROM token_apps WHERE name = ?", "get app", {name},
      [&](SqliteStatement& row) { hash = row.Blob(0); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(absl::StrCat("no application ", name));
  }
  return hash;
}

absl::Status SqliteStore::RevokeTokenId(const std::string& jti, absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    return db.ExecBound(
        "INSERT INTO token_revocations (jti, revoked_at) VALUES (?, ?) "
        "ON CONFLICT (jti) DO NOTHING",
        "revoke token", {jti, Unix(at)});
  });
}

absl::Status SqliteStore::RevokeDeviceTokens(const std::string& imsi,
                                             absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    auto found =
        db.QueryRow("SELECT 1 FROM subscribers WHERE imsi = ?",
                    "revoke device tokens", {imsi}, [](SqliteStatement&) {});
    if (!found.ok()) return found.status();
    if (!*found) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", imsi));
    }
    return db.ExecBound(
        "INSERT INTO token_device_revocations (imsi, revoked_at) VALUES (?, ?) "
        "ON CONFLICT (imsi) DO UPDATE SET revoked_at = excluded.revoked_at",
        "revoke device tokens", {imsi, Unix(at)});
  });
}

absl::StatusOr<bool> SqliteStore::TokenRevoked(const std::string& jti,
                                               const std::string& imsi,
                                               absl::Time iat) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return reader_->QueryRow(
      "SELECT 1 FROM token_revocations WHERE jti = ? UNION ALL "
      "SELECT 1 FROM token_device_revocations WHERE imsi = ? AND "
      "revoked_at >= ?",
      "token revoked", {jti, imsi, Unix(iat)}, [](SqliteStatement&) {});
}

absl::Status SqliteStore::PruneTokenRevocations(absl::Time before) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    return db.ExecBound("DELETE FROM token_revocations WHERE revoked_at < ?",
                        "prune revocations", {Unix(before)});
  });
}

namespace {

// What a token's certificate says about its subject: the columns, and the
// row read back (one reader for the look-up by serial and by hash).
constexpr char kTokenSubjectColumns[] =
    "c.serial, c.status, s.imsi, s.device_id, c.device_id, s.group_name, "
    "s.iccid, s.status, s.imei, c.superseded_at";

Store::TokenSubject TokenSubjectFrom(SqliteStatement& row) {
  Store::TokenSubject t;
  t.serial = row.Text(0);
  t.cert_status = row.Text(1);
  t.imsi = row.Text(2);
  t.device_id = row.Text(3);
  if (t.device_id.empty()) t.device_id = row.Text(4);
  t.group = row.Text(5);
  t.iccid = row.Text(6);
  t.status = row.Text(7);
  t.imei = row.Text(8);
  t.superseded = row.Int(9) != 0;
  return t;
}

}  // namespace

absl::StatusOr<Store::TokenSubject> SqliteStore::GetTokenSubject(
    const std::string& serial) {
  // Read before the look-up and before the read below: an entry filled
  // under an older counter, or by a read a commit may have overtaken, is
  // never used.
  const uint64_t change = wal_index_ != nullptr ? WalChange() : 0;
  if (wal_index_ != nullptr) {
    std::lock_guard<std::mutex> lock(subjects_mu_);
    if (subjects_change_ == change) {
      auto it = subjects_.find(serial);
      if (it != subjects_.end()) return it->second;
    }
  }
  auto reader = LeaseReader();
  if (!reader.ok()) return reader.status();
  TokenSubject t;
  auto found = (*reader)->QueryRow(
      absl::StrCat("SELECT ", kTokenSubjectColumns,
                   " FROM certificates c JOIN subscribers s ON s.imsi = "
                   "c.imsi WHERE c.serial = ?"),
      "token subject", {serial},
      [&](SqliteStatement& row) { t = TokenSubjectFrom(row); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(absl::StrCat("no certificate ", serial));
  }
  if (wal_index_ != nullptr) {
    std::lock_guard<std::mutex> lock(subjects_mu_);
    if (subjects_change_ != change) {
      // Only a read made under the counter that is current now may start
      // the map afresh; an older read is already stale and is not kept.
      if (WalChange() != change) return t;
      subjects_.clear();
      subjects_change_ = change;
    }
    if (subjects_.size() >= kMaxCachedSubjects) subjects_.clear();
    subjects_[serial] = t;
  }
  return t;
}

absl::StatusOr<Store::TokenSubject> SqliteStore::GetTokenSubjectByCertHash(
    const Bytes& cert_sha256) {
  auto reader = LeaseReader();
  if (!reader.ok()) return reader.status();
  TokenSubject t;
  auto found = (*reader)->QueryRow(
      absl::StrCat("SELECT ", kTokenSubjectColumns,
                   " FROM certificate_sha256 h JOIN certificates c ON "
                   "c.serial = h.serial JOIN subscribers s ON s.imsi = c.imsi "
                   "WHERE h.sha256 = ? ORDER BY c.issued_at DESC, c.serial "
                   "LIMIT 1"),
      "token subject by certificate hash", {cert_sha256},
      [&](SqliteStatement& row) { t = TokenSubjectFrom(row); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError("no certificate with that SHA-256 hash");
  }
  return t;
}

}  // namespace simprov
