// The fleet lifecycle's part of the SQLite store: groups,
// subscriber status, revocation, replacement, IMEI binding, CRL numbers and
// audit queries. Every mutation writes its audit event in its own
// transaction.
#include <limits>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/store/sqlite/sqlite_store_internal.h"

namespace simprov {

using namespace sqlite_internal;  // NOLINT: the store's own helpers

namespace {

absl::StatusOr<std::string> StatusOf(SqliteConnection& db,
                                     const std::string& imsi) {
  std::string status;
  auto found = db.QueryRow("SELECT status FROM subscribers WHERE imsi = ?",
                           "subscriber status", {imsi},
                           [&](SqliteStatement& row) { status = row.Text(0); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(absl::StrCat("no subscriber with IMSI ", imsi));
  }
  return status;
}

// Whether `sql` (a SELECT bound to `key`) yields a row.
absl::StatusOr<bool> HasRow(SqliteConnection& db, const std::string& sql,
                            const std::string& key) {
  return db.QueryRow(sql, "look-up", {key}, [](SqliteStatement&) {});
}

GroupRow ReadGroup(SqliteStatement& row) {
  return {row.Text(0), row.Text(1), absl::FromUnixSeconds(row.Int(2))};
}

// Revokes every valid certificate matching `where` (bound to `key`), and
// with them every token issued to their subscribers up to `at` (tokens are
// bound to a certificate; the device asks again with a valid one).
absl::StatusOr<std::vector<CertificateRecord>> RevokeWhere(
    SqliteConnection& db, const std::string& where, const std::string& key,
    const std::string& reason, absl::Time at) {
  std::vector<CertificateRecord> revoked;
  if (absl::Status s =
          db.Query(absl::StrCat("SELECT ", kCertificateColumns,
                                " FROM certificates WHERE ", where,
                                " AND status = 'valid' ORDER BY serial"),
                   "revoke", {key},
                   [&](SqliteStatement& row) {
                     revoked.push_back(ReadCertificate(row));
                     return true;
                   });
      !s.ok()) {
    return s;
  }
  for (CertificateRecord& c : revoked) {
    c.status = "revoked";
    c.revocation_reason = reason;
    c.revoked_at = at;
    if (absl::Status s = db.ExecBound(
            "UPDATE certificates SET status = 'revoked', "
            "revocation_reason = ?, revoked_at = ? WHERE serial = ?",
            "revoke", {reason, Unix(at), c.serial});
        !s.ok()) {
      return s;
    }
    if (absl::Status s = db.ExecBound(
            "INSERT INTO token_device_revocations (imsi, revoked_at) "
            "VALUES (?, ?) ON CONFLICT (imsi) DO UPDATE SET "
            "revoked_at = max(revoked_at, excluded.revoked_at)",
            "revoke tokens", {c.imsi, Unix(at)});
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
      if (absl::Status s = db.ExecBound("DELETE FROM groups WHERE name = ?",
                                        "apply group", {g.name});
          !s.ok()) {
        return s;
      }
      if (absl::Status s = db.ExecBound(
              "INSERT INTO groups (name, policy, updated_at) VALUES (?, ?, ?)",
              "apply group", {g.name, g.policy_json, Unix(g.updated_at)});
          !s.ok()) {
        return s;
      }
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<GroupRow> SqliteStore::GetGroup(const std::string& name) {
  std::lock_guard<std::mutex> lock(read_mu_);
  GroupRow g;
  auto found = reader_->QueryRow(
      "SELECT name, policy, updated_at FROM groups WHERE name = ?", "get group",
      {name}, [&](SqliteStatement& row) { g = ReadGroup(row); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(absl::StrCat("no group named ", name));
  }
  return g;
}

absl::Status SqliteStore::ListGroups(
    const std::string& after, size_t limit,
    const std::function<bool(const GroupRow&)>& fn) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return reader_->Query(
      "SELECT name, policy, updated_at FROM groups WHERE name > ? "
      "ORDER BY name LIMIT ?",
      "list groups", {after, SqlLimit(limit)},
      [&](SqliteStatement& row) { return fn(ReadGroup(row)); });
}

absl::Status SqliteStore::DeleteGroup(const std::string& name,
                                      const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    int64_t users = 0;
    auto counted = db.QueryRow(
        "SELECT COUNT(*) FROM subscribers WHERE group_name = ?", "count",
        {name}, [&](SqliteStatement& row) { users = row.Int(0); });
    if (!counted.ok()) return counted.status();
    if (users > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "group ", name, " still has ", users,
          " subscribers; move them first (subscribers set-group)"));
    }
    if (absl::Status s = db.ExecBound("DELETE FROM groups WHERE name = ?",
                                      "delete group", {name});
        !s.ok()) {
      return s;
    }
    if (db.Changes() != 1) {
      return absl::NotFoundError(absl::StrCat("no group named ", name));
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<uint64_t> SqliteStore::CountSubscribersInGroup(
    const std::string& group) {
  std::lock_guard<std::mutex> lock(read_mu_);
  uint64_t count = 0;
  auto counted = reader_->QueryRow(
      "SELECT COUNT(*) FROM subscribers WHERE group_name = ?", "count", {group},
      [&](SqliteStatement& row) { count = static_cast<uint64_t>(row.Int(0)); });
  if (!counted.ok()) return counted.status();
  return count;
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
  absl::InlinedVector<SqlArg, 3> args = {filter.after};
  if (!filter.group.empty()) args.push_back(filter.group);
  args.push_back(SqlLimit(filter.limit));
  return reader_->Query(
      sql, "list subscribers", args,
      [&](SqliteStatement& row) { return fn(ReadSubscriber(row)); });
}

absl::StatusOr<SubscriberRecord> SqliteStore::GetSubscriberByDeviceId(
    const std::string& device_id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  SubscriberRecord r;
  auto found = reader_->QueryRow(
      absl::StrCat("SELECT ", kSubscriberColumns,
                   " FROM subscribers WHERE device_id = ? ORDER BY imsi"),
      "get device", {device_id},
      [&](SqliteStatement& row) { r = ReadSubscriber(row); });
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(absl::StrCat("no device with id ", device_id));
  }
  return r;
}

absl::Status SqliteStore::SetSubscriberGroup(const std::string& imsi,
                                             const std::string& group,
                                             const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Write([&](SqliteConnection& db) -> absl::Status {
    if (group != kDefaultGroup) {
      auto exists = HasRow(db, "SELECT 1 FROM groups WHERE name = ?", group);
      if (!exists.ok()) return exists.status();
      if (!*exists) {
        return absl::NotFoundError(absl::StrCat("no group named ", group));
      }
    }
    if (absl::Status s = db.ExecBound(
            "UPDATE subscribers SET group_name = ?, updated_at = ? "
            "WHERE imsi = ?",
            "set group", {group, Unix(event.at), imsi});
        !s.ok()) {
      return s;
    }
    if (db.Changes() != 1) {
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
    if (absl::Status s = db.ExecBound(
            "UPDATE subscribers SET status = ?, updated_at = ? WHERE imsi = ?",
            "set status", {to, Unix(event.at), imsi});
        !s.ok()) {
      return s;
    }
    if (reactivate) {
      if (absl::Status s = db.ExecBound(
              "UPDATE subscribers SET replaced_by = '', device_id = ? "
              "WHERE imsi = ?",
              "reactivate", {reactivated_device_id, imsi});
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
      auto exists = HasRow(db, "SELECT 1 FROM certificates WHERE serial = ?",
                           request.serial);
      if (!exists.ok()) return exists.status();
      if (!*exists) {
        return absl::NotFoundError(
            absl::StrCat("no certificate with serial ", request.serial));
      }
      // The certificate and every certificate renewed from it: a copy of
      // its key renewed into a lineage of its own goes with it.
      std::vector<std::string> lineage;
      if (absl::Status q =
              db.Query("WITH RECURSIVE lineage (serial) AS (SELECT ? UNION "
                       "SELECT c.serial FROM certificates c JOIN lineage l ON "
                       "c.renewed_from = l.serial) SELECT serial FROM lineage",
                       "revoke lineage", {request.serial},
                       [&](SqliteStatement& row) {
                         lineage.push_back(row.Text(0));
                         return true;
                       });
          !q.ok()) {
        return q;
      }
      std::vector<CertificateRecord> all;
      for (const std::string& serial : lineage) {
        auto one =
            RevokeWhere(db, "serial = ?", serial, request.reason, request.at);
        if (!one.ok()) return one.status();
        for (CertificateRecord& c : *one) all.push_back(std::move(c));
      }
      r = std::move(all);
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

absl::StatusOr<std::vector<CertificateRecord>> SqliteStore::RenewalsOf(
    const std::string& serial) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::vector<CertificateRecord> out;
  absl::Status s =
      reader_->Query(absl::StrCat("SELECT ", kCertificateColumns,
                                  " FROM certificates WHERE renewed_from = ? "
                                  "ORDER BY issued_at, serial"),
                     "renewals", {serial}, [&](SqliteStatement& row) {
                       out.push_back(ReadCertificate(row));
                       return true;
                     });
  if (!s.ok()) return s;
  return out;
}

absl::Status SqliteStore::ListSuperseded(
    const std::function<bool(const CertificateRecord&)>& fn) {
  // Collected first: `fn` may use the store (and this reader's lock).
  std::vector<CertificateRecord> out;
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    absl::Status s = reader_->Query(
        absl::StrCat("SELECT ", kCertificateColumns,
                     " FROM certificates WHERE superseded_at > 0 AND "
                     "status = 'valid' ORDER BY superseded_at, serial"),
        "superseded", {}, [&](SqliteStatement& row) {
          out.push_back(ReadCertificate(row));
          return true;
        });
    if (!s.ok()) return s;
  }
  for (const CertificateRecord& c : out) {
    if (!fn(c)) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CertificateRecord>> SqliteStore::RevokeSuperseded(
    const std::vector<std::string>& serials, absl::Time at,
    const AuditEvent& event) {
  std::vector<CertificateRecord> revoked;
  (void)FlushAudit();  // device events queued earlier come first
  absl::Status s = Write([&](SqliteConnection& db) -> absl::Status {
    revoked.clear();
    for (const std::string& serial : serials) {
      // Not RevokeWhere: the device's tokens stay (those of its current
      // certificate are good; a superseded one got none since).
      CertificateRecord c;
      auto found =
          db.QueryRow(absl::StrCat("SELECT ", kCertificateColumns,
                                   " FROM certificates WHERE serial = ? AND "
                                   "status = 'valid' AND superseded_at > 0"),
                      "revoke superseded", {serial},
                      [&](SqliteStatement& row) { c = ReadCertificate(row); });
      if (!found.ok()) return found.status();
      if (!*found) continue;
      if (absl::Status u =
              db.ExecBound("UPDATE certificates SET status = 'revoked', "
                           "revocation_reason = 'superseded', revoked_at = ? "
                           "WHERE serial = ?",
                           "revoke superseded", {Unix(at), serial});
          !u.ok()) {
        return u;
      }
      c.status = "revoked";
      c.revocation_reason = "superseded";
      c.revoked_at = at;
      AuditEvent e = event;
      e.target = c.imsi;
      absl::StrAppend(&e.reason, e.reason.empty() ? "" : " ",
                      "serial=", c.serial);
      if (absl::Status st = InsertAudit(db, e); !st.ok()) return st;
      revoked.push_back(std::move(c));
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return revoked;
}

absl::StatusOr<std::vector<CertificateRecord>> SqliteStore::RevokedCertificates(
    absl::Time now) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::vector<CertificateRecord> out;
  absl::Status s = reader_->Query(
      absl::StrCat("SELECT ", kCertificateColumns,
                   " FROM certificates WHERE status = 'revoked' AND "
                   "not_after > ? ORDER BY serial"),
      "revoked certificates", {Unix(now)}, [&](SqliteStatement& row) {
        out.push_back(ReadCertificate(row));
        return true;
      });
  if (!s.ok()) return s;
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
    auto found = db.QueryRow("SELECT crl_number FROM crl_state WHERE id = 1",
                             "CRL number", {}, [&](SqliteStatement& row) {
                               number = static_cast<uint64_t>(row.Int(0));
                             });
    if (!found.ok()) return found.status();
    if (!*found) return absl::InternalError("crl_state has no row");
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
    auto found = db.QueryRow(
        "SELECT status, device_id, group_name FROM subscribers "
        "WHERE imsi = ?",
        "replace", {old_imsi}, [&](SqliteStatement& row) {
          old_status = row.Text(0);
          old_device = row.Text(1);
          old_group = row.Text(2);
        });
    if (!found.ok()) return found.status();
    if (!*found) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", old_imsi));
    }
    if (old_status != kStatusActive && old_status != kStatusSuspended) {
      return absl::FailedPreconditionError(
          absl::StrCat("old SIM ", old_imsi, " is ", old_status));
    }
    if (old_device.empty()) old_device = old_imsi;  // never provisioned
    std::string new_status, new_device;
    found =
        db.QueryRow("SELECT status, device_id FROM subscribers WHERE imsi = ?",
                    "replace", {new_imsi}, [&](SqliteStatement& row) {
                      new_status = row.Text(0);
                      new_device = row.Text(1);
                    });
    if (!found.ok()) return found.status();
    if (!*found) {
      return absl::NotFoundError(absl::StrCat(
          "no subscriber with IMSI ", new_imsi, " (import the new SIM first)"));
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
    if (absl::Status u = db.ExecBound(
            "UPDATE subscribers SET status = 'replaced', device_id = '', "
            "replaced_by = ?, updated_at = ? WHERE imsi = ?",
            "replace", {new_imsi, Unix(at), old_imsi});
        !u.ok()) {
      return u;
    }
    if (absl::Status u = db.ExecBound(
            "UPDATE subscribers SET device_id = ?, group_name = ?, "
            "updated_at = ? WHERE imsi = ?",
            "replace", {old_device, old_group, Unix(at), new_imsi});
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
    absl::Status s =
        only_if_unbound
            ? db.ExecBound(
                  "UPDATE subscribers SET imei = ? WHERE imsi = ? "
                  "AND (imei = '' OR imei = ?)",
                  "set IMEI", {imei, imsi, imei})
            : db.ExecBound("UPDATE subscribers SET imei = ? WHERE imsi = ?",
                           "set IMEI", {imei, imsi});
    if (!s.ok()) return s;
    if (db.Changes() != 1) {
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
            db.ExecBound("UPDATE subscribers SET imei = '' WHERE imsi = ?",
                         "clear IMEI", {imsi});
        !s.ok()) {
      return s;
    }
    if (db.Changes() != 1) {
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
  absl::InlinedVector<SqlArg, 5> args = {
      query.after_id, query.since == absl::InfinitePast()
                          ? std::numeric_limits<int64_t>::min()
                          : Unix(query.since)};
  if (!query.imsi.empty()) {
    args.push_back(query.imsi);
    args.push_back(query.imsi);
  }
  args.push_back(SqlLimit(query.limit));
  return reader_->Query(sql, "audit", args, [&](SqliteStatement& row) {
    return fn(ReadAudit(row));
  });
}

}  // namespace simprov
