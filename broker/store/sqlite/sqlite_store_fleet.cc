// The fleet lifecycle's part of the SQLite store: groups,
// subscriber status, revocation, replacement, IMEI binding, CRL numbers and
// audit queries. Every mutation writes its audit event in its own
// transaction.
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {

using namespace sqlite_internal;  // NOLINT: the store's own helpers

namespace {

// Runs a statement that returns no rows.
template <typename... Args>
absl::Status ExecBound(SqliteConnection& db, const std::string& sql,
                       const char* what, const Args&... args) {
  auto st = db.Prepare(sql);
  if (!st.ok()) return st.status();
  int i = 0;
  ((*st)->Bind(++i, args), ...);
  int rc = (*st)->Step();
  if (rc != SQLITE_DONE) return db.Error(rc, what);
  return absl::OkStatus();
}

absl::StatusOr<std::string> StatusOf(SqliteConnection& db,
                                     const std::string& imsi) {
  auto st = db.Prepare("SELECT status FROM subscribers WHERE imsi = ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, imsi);
  int rc = (*st)->Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("no subscriber with IMSI ", imsi));
  }
  if (rc != SQLITE_ROW) return db.Error(rc, "subscriber status");
  return (*st)->Text(0);
}

// Revokes every valid certificate matching `where` (bound to `key`), and
// with them every token issued to their subscribers up to `at` (tokens are
// bound to a certificate; the device asks again with a valid one).
absl::StatusOr<std::vector<CertificateRecord>> RevokeWhere(
    SqliteConnection& db, const std::string& where, const std::string& key,
    const std::string& reason, absl::Time at) {
  std::vector<CertificateRecord> revoked;
  {
    auto st = db.Prepare(absl::StrCat("SELECT ", kCertificateColumns,
                                      " FROM certificates WHERE ", where,
                                      " AND status = 'valid' ORDER BY serial"));
    if (!st.ok()) return st.status();
    (*st)->Bind(1, key);
    while (true) {
      int rc = (*st)->Step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return db.Error(rc, "revoke");
      revoked.push_back(ReadCertificate(*st));
    }
  }
  for (CertificateRecord& c : revoked) {
    c.status = "revoked";
    c.revocation_reason = reason;
    c.revoked_at = at;
    if (absl::Status s =
            ExecBound(db,
                      "UPDATE certificates SET status = 'revoked', "
                      "revocation_reason = ?, revoked_at = ? WHERE serial = ?",
                      "revoke", reason, Unix(at), c.serial);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            ExecBound(db,
                      "INSERT INTO token_device_revocations (imsi, revoked_at) "
                      "VALUES (?, ?) ON CONFLICT (imsi) DO UPDATE SET "
                      "revoked_at = max(revoked_at, excluded.revoked_at)",
                      "revoke tokens", c.imsi, Unix(at));
        !s.ok()) {
      return s;
    }
  }
  return revoked;
}

}  // namespace

absl::Status SqliteStore::PutGroups(const std::vector<GroupRow>& groups,
                                    const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    for (const GroupRow& g : groups) {
      if (absl::Status s = ExecBound(db, "DELETE FROM groups WHERE name = ?",
                                     "apply group", g.name);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = ExecBound(
              db,
              "INSERT INTO groups (name, policy, updated_at) VALUES (?, ?, ?)",
              "apply group", g.name, g.policy_json, Unix(g.updated_at));
          !s.ok()) {
        return s;
      }
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<GroupRow> SqliteStore::GetGroup(const std::string& name) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(
      "SELECT name, policy, updated_at FROM groups WHERE name = ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, name);
  int rc = (*st)->Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("no group named ", name));
  }
  if (rc != SQLITE_ROW) return reader_->Error(rc, "get group");
  return GroupRow{(*st)->Text(0), (*st)->Text(1),
                  absl::FromUnixSeconds((*st)->Int(2))};
}

absl::Status SqliteStore::ListGroups(
    const std::string& after, size_t limit,
    const std::function<bool(const GroupRow&)>& fn) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(
      "SELECT name, policy, updated_at FROM groups WHERE name > ? "
      "ORDER BY name LIMIT ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, after);
  (*st)->Bind(2, limit == 0 ? int64_t{-1} : static_cast<int64_t>(limit));
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return reader_->Error(rc, "list groups");
    if (!fn({(*st)->Text(0), (*st)->Text(1),
             absl::FromUnixSeconds((*st)->Int(2))})) {
      return absl::OkStatus();
    }
  }
}

absl::Status SqliteStore::DeleteGroup(const std::string& name,
                                      const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    int64_t users = 0;
    {
      auto st =
          db.Prepare("SELECT COUNT(*) FROM subscribers WHERE group_name = ?");
      if (!st.ok()) return st.status();
      (*st)->Bind(1, name);
      if ((*st)->Step() != SQLITE_ROW) return db.Error(SQLITE_ERROR, "count");
      users = (*st)->Int(0);
    }
    if (users > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "group ", name, " still has ", users,
          " subscribers; move them first (subscribers set-group)"));
    }
    if (absl::Status s = ExecBound(db, "DELETE FROM groups WHERE name = ?",
                                   "delete group", name);
        !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db.raw()) != 1) {
      return absl::NotFoundError(absl::StrCat("no group named ", name));
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<uint64_t> SqliteStore::CountSubscribersInGroup(
    const std::string& group) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st =
      reader_->Prepare("SELECT COUNT(*) FROM subscribers WHERE group_name = ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, group);
  int rc = (*st)->Step();
  if (rc != SQLITE_ROW) return reader_->Error(rc, "count");
  return static_cast<uint64_t>((*st)->Int(0));
}

absl::Status SqliteStore::ListSubscribersPage(
    const SubscriberFilter& filter,
    const std::function<bool(const SubscriberRecord&)>& fn) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::string sql = absl::StrCat("SELECT ", kSubscriberColumns,
                                 " FROM subscribers WHERE imsi > ?");
  if (!filter.group.empty()) sql += " AND group_name = ?";
  if (filter.provisioned_only) sql += " AND device_id <> ''";
  sql += " ORDER BY imsi LIMIT ?";
  auto st = reader_->Prepare(sql);
  if (!st.ok()) return st.status();
  int i = 0;
  (*st)->Bind(++i, filter.after);
  if (!filter.group.empty()) (*st)->Bind(++i, filter.group);
  (*st)->Bind(++i, filter.limit == 0 ? int64_t{-1}
                                     : static_cast<int64_t>(filter.limit));
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return reader_->Error(rc, "list subscribers");
    if (!fn(ReadSubscriber(*st))) return absl::OkStatus();
  }
}

absl::StatusOr<SubscriberRecord> SqliteStore::GetSubscriberByDeviceId(
    const std::string& device_id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(
      absl::StrCat("SELECT ", kSubscriberColumns,
                   " FROM subscribers WHERE device_id = ? ORDER BY imsi"));
  if (!st.ok()) return st.status();
  (*st)->Bind(1, device_id);
  int rc = (*st)->Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("no device with id ", device_id));
  }
  if (rc != SQLITE_ROW) return reader_->Error(rc, "get device");
  return ReadSubscriber(*st);
}

absl::Status SqliteStore::SetSubscriberGroup(const std::string& imsi,
                                             const std::string& group,
                                             const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    if (group != kDefaultGroup) {
      auto st = db.Prepare("SELECT 1 FROM groups WHERE name = ?");
      if (!st.ok()) return st.status();
      (*st)->Bind(1, group);
      if ((*st)->Step() != SQLITE_ROW) {
        return absl::NotFoundError(absl::StrCat("no group named ", group));
      }
    }
    if (absl::Status s =
            ExecBound(db,
                      "UPDATE subscribers SET group_name = ?, updated_at = ? "
                      "WHERE imsi = ?",
                      "set group", group, Unix(event.at), imsi);
        !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db.raw()) != 1) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", imsi));
    }
    return InsertAudit(db, event);
  });
}

absl::Status SqliteStore::SetSubscriberStatus(
    const std::string& imsi, const std::vector<std::string>& from,
    const std::string& to, const std::string& reactivated_device_id,
    const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    auto status = StatusOf(db, imsi);
    if (!status.ok()) return status.status();
    bool allowed = false;
    for (const std::string& f : from) allowed = allowed || f == *status;
    if (!allowed) {
      return absl::FailedPreconditionError(
          absl::StrCat("subscriber ", imsi, " is ", *status));
    }
    const bool reactivate = *status == kStatusReplaced && to == kStatusActive;
    if (absl::Status s = ExecBound(
            db,
            "UPDATE subscribers SET status = ?, updated_at = ? WHERE imsi = ?",
            "set status", to, Unix(event.at), imsi);
        !s.ok()) {
      return s;
    }
    if (reactivate) {
      if (absl::Status s = ExecBound(
              db,
              "UPDATE subscribers SET replaced_by = '', device_id = ? "
              "WHERE imsi = ?",
              "reactivate", reactivated_device_id, imsi);
          !s.ok()) {
        return s;
      }
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<std::vector<CertificateRecord>> SqliteStore::RevokeCertificates(
    const RevocationRequest& request, const AuditEvent& event) {
  std::vector<CertificateRecord> revoked;
  (void)FlushAudit();  // device events queued earlier come first
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    revoked.clear();
    absl::StatusOr<std::vector<CertificateRecord>> r;
    if (!request.serial.empty()) {
      auto st = db.Prepare("SELECT 1 FROM certificates WHERE serial = ?");
      if (!st.ok()) return st.status();
      (*st)->Bind(1, request.serial);
      if ((*st)->Step() != SQLITE_ROW) {
        return absl::NotFoundError(
            absl::StrCat("no certificate with serial ", request.serial));
      }
      r = RevokeWhere(db, "serial = ?", request.serial, request.reason,
                      request.at);
    } else {
      if (auto st = StatusOf(db, request.imsi); !st.ok()) return st.status();
      r = RevokeWhere(db, "imsi = ?", request.imsi, request.reason, request.at);
    }
    if (!r.ok()) return r.status();
    revoked = std::move(*r);
    AuditEvent e = event;
    for (const CertificateRecord& c : revoked) {
      absl::StrAppend(&e.reason, e.reason.empty() ? "" : " ",
                      "serial=", c.serial);
    }
    if (revoked.empty()) {
      absl::StrAppend(&e.reason, e.reason.empty() ? "" : " ",
                      "no valid certificate");
    }
    return InsertAudit(db, e);
  });
  if (!s.ok()) return s;
  return revoked;
}

absl::StatusOr<std::vector<CertificateRecord>> SqliteStore::RevokedCertificates(
    absl::Time now) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto st = reader_->Prepare(
      absl::StrCat("SELECT ", kCertificateColumns,
                   " FROM certificates WHERE status = 'revoked' AND "
                   "not_after > ? ORDER BY serial"));
  if (!st.ok()) return st.status();
  (*st)->Bind(1, Unix(now));
  std::vector<CertificateRecord> out;
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return reader_->Error(rc, "revoked certificates");
    out.push_back(ReadCertificate(*st));
  }
  return out;
}

absl::StatusOr<uint64_t> SqliteStore::NextCrlNumber() {
  uint64_t number = 0;
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    if (absl::Status u =
            db.Exec("UPDATE crl_state SET crl_number = crl_number + 1 "
                    "WHERE id = 1");
        !u.ok()) {
      return u;
    }
    auto st = db.Prepare("SELECT crl_number FROM crl_state WHERE id = 1");
    if (!st.ok()) return st.status();
    if ((*st)->Step() != SQLITE_ROW) {
      return absl::InternalError("crl_state has no row");
    }
    number = static_cast<uint64_t>((*st)->Int(0));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return number;
}

absl::StatusOr<std::vector<CertificateRecord>> SqliteStore::ReplaceDevice(
    const std::string& old_imsi, const std::string& new_imsi, absl::Time at,
    const AuditEvent& event) {
  std::vector<CertificateRecord> revoked;
  (void)FlushAudit();  // device events queued earlier come first
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    revoked.clear();
    std::string old_status, old_device, old_group;
    {
      auto st = db.Prepare(
          "SELECT status, device_id, group_name FROM subscribers "
          "WHERE imsi = ?");
      if (!st.ok()) return st.status();
      (*st)->Bind(1, old_imsi);
      int rc = (*st)->Step();
      if (rc == SQLITE_DONE) {
        return absl::NotFoundError(
            absl::StrCat("no subscriber with IMSI ", old_imsi));
      }
      if (rc != SQLITE_ROW) return db.Error(rc, "replace");
      old_status = (*st)->Text(0);
      old_device = (*st)->Text(1);
      old_group = (*st)->Text(2);
    }
    if (old_status != kStatusActive && old_status != kStatusSuspended) {
      return absl::FailedPreconditionError(
          absl::StrCat("old SIM ", old_imsi, " is ", old_status));
    }
    if (old_device.empty()) old_device = old_imsi;  // never provisioned
    std::string new_status, new_device;
    {
      auto st = db.Prepare(
          "SELECT status, device_id FROM subscribers WHERE imsi = ?");
      if (!st.ok()) return st.status();
      (*st)->Bind(1, new_imsi);
      int rc = (*st)->Step();
      if (rc == SQLITE_DONE) {
        return absl::NotFoundError(absl::StrCat("no subscriber with IMSI ",
                                                new_imsi,
                                                " (import the new SIM first)"));
      }
      if (rc != SQLITE_ROW) return db.Error(rc, "replace");
      new_status = (*st)->Text(0);
      new_device = (*st)->Text(1);
    }
    if (new_status != kStatusActive) {
      return absl::FailedPreconditionError(
          absl::StrCat("new SIM ", new_imsi, " is ", new_status));
    }
    if (!new_device.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("new SIM ", new_imsi,
                       " is already provisioned as "
                       "device ",
                       new_device));
    }
    auto r = RevokeWhere(db, "imsi = ?", old_imsi, "superseded", at);
    if (!r.ok()) return r.status();
    revoked = std::move(*r);
    if (absl::Status u = ExecBound(
            db,
            "UPDATE subscribers SET status = 'replaced', device_id = '', "
            "replaced_by = ?, updated_at = ? WHERE imsi = ?",
            "replace", new_imsi, Unix(at), old_imsi);
        !u.ok()) {
      return u;
    }
    if (absl::Status u =
            ExecBound(db,
                      "UPDATE subscribers SET device_id = ?, group_name = ?, "
                      "updated_at = ? WHERE imsi = ?",
                      "replace", old_device, old_group, Unix(at), new_imsi);
        !u.ok()) {
      return u;
    }
    AuditEvent e = event;
    absl::StrAppend(&e.reason, e.reason.empty() ? "" : " ",
                    "device_id=", old_device, " new_imsi=", new_imsi);
    for (const CertificateRecord& c : revoked) {
      absl::StrAppend(&e.reason, " revoked=", c.serial);
    }
    return InsertAudit(db, e);
  });
  if (!s.ok()) return s;
  return revoked;
}

absl::Status SqliteStore::SetImei(const std::string& imsi,
                                  const std::string& imei,
                                  bool only_if_unbound) {
  return Write([&](SqliteConnection& db) -> absl::Status {
    std::string sql = "UPDATE subscribers SET imei = ? WHERE imsi = ?";
    if (only_if_unbound) sql += " AND (imei = '' OR imei = ?)";
    auto st = db.Prepare(sql);
    if (!st.ok()) return st.status();
    (*st)->Bind(1, imei);
    (*st)->Bind(2, imsi);
    if (only_if_unbound) (*st)->Bind(3, imei);
    int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return db.Error(rc, "set IMEI");
    if (sqlite3_changes(db.raw()) != 1) {
      return absl::FailedPreconditionError("another IMEI is bound");
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::ClearImei(const std::string& imsi,
                                    const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    if (absl::Status s =
            ExecBound(db, "UPDATE subscribers SET imei = '' WHERE imsi = ?",
                      "clear IMEI", imsi);
        !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db.raw()) != 1) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", imsi));
    }
    return InsertAudit(db, event);
  });
}

absl::Status SqliteStore::QueryAudit(
    const AuditQuery& query, const std::function<bool(const AuditEvent&)>& fn) {
  if (absl::Status s = FlushAudit(); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(read_mu_);
  std::string sql = absl::StrCat("SELECT ", kAuditColumns,
                                 " FROM audit WHERE id > ? AND at >= ?");
  if (!query.imsi.empty()) sql += " AND (actor = ? OR target = ?)";
  sql += " ORDER BY id LIMIT ?";
  auto st = reader_->Prepare(sql);
  if (!st.ok()) return st.status();
  int i = 0;
  (*st)->Bind(++i, query.after_id);
  (*st)->Bind(++i, query.since == absl::InfinitePast()
                       ? std::numeric_limits<int64_t>::min()
                       : Unix(query.since));
  if (!query.imsi.empty()) {
    (*st)->Bind(++i, query.imsi);
    (*st)->Bind(++i, query.imsi);
  }
  (*st)->Bind(
      ++i, query.limit == 0 ? int64_t{-1} : static_cast<int64_t>(query.limit));
  while (true) {
    int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return reader_->Error(rc, "audit");
    if (!fn(ReadAudit(*st))) return absl::OkStatus();
  }
}

}  // namespace simprov
