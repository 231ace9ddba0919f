// SqliteStore: the tokens area: introspection apps and
// revocations.
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {

using sqlite_internal::Unix;

absl::Status SqliteStore::CreateTokenApp(const std::string& name,
                                         const Bytes& key_hash, absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    auto st = db.Prepare(
        "INSERT INTO token_apps (name, key_hash, created_at) VALUES (?, ?, ?)");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, name);
    (*st)->Bind(2, key_hash);
    (*st)->Bind(3, Unix(at));
    int rc = (*st)->Step();
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
      return absl::AlreadyExistsError(
          absl::StrCat("application ", name, " already exists"));
    }
    if (rc != SQLITE_DONE) return db.Error(rc, "create app");
    return absl::OkStatus();
  });
}

absl::StatusOr<Bytes> SqliteStore::TokenAppKeyHash(const std::string& name) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare("SELECT key_hash FROM token_apps WHERE name = ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, name);
  int rc = (*st)->Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("no application ", name));
  }
  if (rc != SQLITE_ROW) return reader_->Error(rc, "get app");
  return (*st)->Blob(0);
}

absl::Status SqliteStore::RevokeTokenId(const std::string& jti, absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    auto st = db.Prepare(
        "INSERT INTO token_revocations (jti, revoked_at) VALUES (?, ?) "
        "ON CONFLICT (jti) DO NOTHING");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, jti);
    (*st)->Bind(2, Unix(at));
    int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return db.Error(rc, "revoke token");
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::RevokeDeviceTokens(const std::string& imsi,
                                             absl::Time at) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    {
      auto st = db.Prepare("SELECT 1 FROM subscribers WHERE imsi = ?");
      if (!st.ok()) return st.status();
      (*st)->Bind(1, imsi);
      int rc = (*st)->Step();
      if (rc == SQLITE_DONE) {
        return absl::NotFoundError(
            absl::StrCat("no subscriber with IMSI ", imsi));
      }
      if (rc != SQLITE_ROW) return db.Error(rc, "revoke device tokens");
    }
    auto st = db.Prepare(
        "INSERT INTO token_device_revocations (imsi, revoked_at) VALUES (?, ?) "
        "ON CONFLICT (imsi) DO UPDATE SET revoked_at = excluded.revoked_at");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, imsi);
    (*st)->Bind(2, Unix(at));
    int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return db.Error(rc, "revoke device tokens");
    return absl::OkStatus();
  });
}

absl::StatusOr<bool> SqliteStore::TokenRevoked(const std::string& jti,
                                               const std::string& imsi,
                                               absl::Time iat) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(
      "SELECT 1 FROM token_revocations WHERE jti = ? UNION ALL "
      "SELECT 1 FROM token_device_revocations WHERE imsi = ? AND "
      "revoked_at >= ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, jti);
  (*st)->Bind(2, imsi);
  (*st)->Bind(3, Unix(iat));
  int rc = (*st)->Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return reader_->Error(rc, "token revoked");
}

absl::Status SqliteStore::PruneTokenRevocations(absl::Time before) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    auto st = db.Prepare("DELETE FROM token_revocations WHERE revoked_at < ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, Unix(before));
    int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return db.Error(rc, "prune revocations");
    return absl::OkStatus();
  });
}

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
  auto st = (*reader)->Prepare(
      "SELECT c.status, s.imsi, s.device_id, c.device_id, s.group_name, "
      "s.iccid, s.status, s.imei FROM certificates c JOIN subscribers s ON "
      "s.imsi = c.imsi WHERE c.serial = ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, serial);
  int rc = (*st)->Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("no certificate ", serial));
  }
  if (rc != SQLITE_ROW) return (*reader)->Error(rc, "token subject");
  TokenSubject t;
  t.cert_status = (*st)->Text(0);
  t.imsi = (*st)->Text(1);
  t.device_id = (*st)->Text(2);
  if (t.device_id.empty()) t.device_id = (*st)->Text(3);
  t.group = (*st)->Text(4);
  t.iccid = (*st)->Text(5);
  t.status = (*st)->Text(6);
  t.imei = (*st)->Text(7);
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

}  // namespace simprov
