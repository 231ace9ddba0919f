// The fleet lifecycle's part of the PostgreSQL store: groups, subscriber
// status, revocation, replacement, IMEI binding, CRL numbers and audit
// queries. Every mutation writes its audit event in its own transaction,
// and locks the rows it decides on (SELECT ... FOR UPDATE), so brokers
// deciding at once see each other's outcome.
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/postgres/postgres_store_internal.h"

namespace simprov {

using namespace pg_internal;  // NOLINT: the store's own helpers

namespace {

absl::StatusOr<std::string> StatusOf(pg::Connection& db,
                                     const std::string& imsi) {
  auto r = db.Query("SELECT status FROM subscribers WHERE imsi = $1 FOR UPDATE",
                    {imsi});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no subscriber with IMSI ", imsi));
  }
  return r->Text(0, 0);
}

GroupRow ReadGroup(const pg::Result& r, int i) {
  return {r.Text(i, 0), r.Text(i, 1), absl::FromUnixSeconds(r.Int(i, 2))};
}

// Revokes every valid certificate matching `where` (bound to $1), and with
// them every token issued to their subscribers up to `at`.
absl::StatusOr<std::vector<CertificateRecord>> RevokeWhere(
    pg::Connection& db, const std::string& where, const std::string& key,
    const std::string& reason, absl::Time at) {
  auto r = db.Query(absl::StrCat("SELECT ", kCertificateColumns,
                                 " FROM certificates WHERE ", where,
                                 " AND status = 'valid' ORDER BY serial "
                                 "FOR UPDATE"),
                    {key});
  if (!r.ok()) return r.status();
  std::vector<CertificateRecord> revoked = Certificates(*r);
  for (CertificateRecord& c : revoked) {
    c.status = "revoked";
    c.revocation_reason = reason;
    c.revoked_at = at;
    if (absl::Status s =
            db.Exec("UPDATE certificates SET status = 'revoked', "
                    "revocation_reason = $1, revoked_at = $2 WHERE serial = $3",
                    {reason, pg::Int(Unix(at)), c.serial});
        !s.ok()) {
      return s;
    }
    if (absl::Status s = db.Exec(
            "INSERT INTO token_device_revocations (imsi, revoked_at) "
            "VALUES ($1, $2) ON CONFLICT (imsi) DO UPDATE SET revoked_at = "
            "GREATEST(token_device_revocations.revoked_at, "
            "excluded.revoked_at)",
            {c.imsi, pg::Int(Unix(at))});
        !s.ok()) {
      return s;
    }
  }
  return revoked;
}

}  // namespace

absl::Status PostgresStore::PutGroups(const std::vector<GroupRow>& groups,
                                      const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Tx([&](pg::Connection& db) -> absl::Status {
    for (const GroupRow& g : groups) {
      if (absl::Status s =
              db.Exec("INSERT INTO groups (name, policy, updated_at) VALUES "
                      "($1, $2, $3) ON CONFLICT (name) DO UPDATE SET policy = "
                      "excluded.policy, updated_at = excluded.updated_at",
                      {g.name, g.policy_json, pg::Int(Unix(g.updated_at))});
          !s.ok()) {
        return s;
      }
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<GroupRow> PostgresStore::GetGroup(const std::string& name) {
  auto r = Read("SELECT name, policy, updated_at FROM groups WHERE name = $1",
                {name});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no group named ", name));
  }
  return ReadGroup(*r, 0);
}

absl::Status PostgresStore::ListGroups(
    const std::string& after, size_t limit,
    const std::function<bool(const GroupRow&)>& fn) {
  auto r = Read(
      "SELECT name, policy, updated_at FROM groups WHERE name > $1 "
      "ORDER BY name LIMIT $2",
      {after, Limit(limit)});
  if (!r.ok()) return r.status();
  for (int i = 0; i < r->rows(); ++i) {
    if (!fn(ReadGroup(*r, i))) break;
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::DeleteGroup(const std::string& name,
                                        const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Tx([&](pg::Connection& db) -> absl::Status {
    // Locks the group first: a concurrent set-group into it waits.
    auto locked =
        db.Query("SELECT 1 FROM groups WHERE name = $1 FOR UPDATE", {name});
    if (!locked.ok()) return locked.status();
    auto counted = db.Query(
        "SELECT COUNT(*) FROM subscribers WHERE group_name = $1", {name});
    if (!counted.ok()) return counted.status();
    const int64_t users = counted->Int(0, 0);
    if (users > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "group ", name, " still has ", users,
          " subscribers; move them first (subscribers set-group)"));
    }
    auto deleted = db.Query("DELETE FROM groups WHERE name = $1", {name});
    if (!deleted.ok()) return deleted.status();
    if (deleted->affected() != 1) {
      return absl::NotFoundError(absl::StrCat("no group named ", name));
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<uint64_t> PostgresStore::CountSubscribersInGroup(
    const std::string& group) {
  auto r =
      Read("SELECT COUNT(*) FROM subscribers WHERE group_name = $1", {group});
  if (!r.ok()) return r.status();
  return static_cast<uint64_t>(r->Int(0, 0));
}

absl::Status PostgresStore::ListSubscribersPage(
    const SubscriberFilter& filter,
    const std::function<bool(const SubscriberRecord&)>& fn) {
  std::string sql = absl::StrCat("SELECT ", kSubscriberColumns,
                                 " FROM subscribers WHERE imsi > $1");
  if (!filter.group.empty()) sql += " AND group_name = $3";
  if (filter.provisioned_only) sql += " AND device_id <> ''";
  sql += " ORDER BY imsi LIMIT $2";
  std::string after = filter.after;
  size_t left = filter.limit;  // 0: no limit
  while (true) {
    const size_t page = left == 0 ? kPageRows : std::min(left, kPageRows);
    std::vector<pg::Arg> args = {after, pg::Int(page)};
    if (!filter.group.empty()) args.push_back(filter.group);
    auto r = Read(sql, args);
    if (!r.ok()) return r.status();
    for (int i = 0; i < r->rows(); ++i) {
      SubscriberRecord s = ReadSubscriber(*r, i);
      after = s.imsi;
      if (!fn(s)) return absl::OkStatus();
    }
    if (static_cast<size_t>(r->rows()) < page) return absl::OkStatus();
    if (left != 0) {
      left -= page;
      if (left == 0) return absl::OkStatus();
    }
  }
}

absl::StatusOr<SubscriberRecord> PostgresStore::GetSubscriberByDeviceId(
    const std::string& device_id) {
  auto r = Read(absl::StrCat("SELECT ", kSubscriberColumns,
                             " FROM subscribers WHERE device_id = $1 "
                             "ORDER BY imsi LIMIT 1"),
                {device_id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no device with id ", device_id));
  }
  return ReadSubscriber(*r, 0);
}

absl::Status PostgresStore::SetSubscriberGroup(const std::string& imsi,
                                               const std::string& group,
                                               const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Tx([&](pg::Connection& db) -> absl::Status {
    if (group != kDefaultGroup) {
      // FOR SHARE: the group cannot be deleted until this commits.
      auto exists =
          db.Query("SELECT 1 FROM groups WHERE name = $1 FOR SHARE", {group});
      if (!exists.ok()) return exists.status();
      if (exists->rows() == 0) {
        return absl::NotFoundError(absl::StrCat("no group named ", group));
      }
    }
    auto r = db.Query(
        "UPDATE subscribers SET group_name = $1, updated_at = $2 "
        "WHERE imsi = $3",
        {group, pg::Int(Unix(event.at)), imsi});
    if (!r.ok()) return r.status();
    if (r->affected() != 1) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", imsi));
    }
    return InsertAudit(db, event);
  });
}

absl::Status PostgresStore::SetSubscriberStatus(
    const std::string& imsi, const std::vector<std::string>& from,
    const std::string& to, const std::string& reactivated_device_id,
    const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Tx([&](pg::Connection& db) -> absl::Status {
    auto status = StatusOf(db, imsi);
    if (!status.ok()) return status.status();
    bool allowed = false;
    for (const std::string& f : from) allowed = allowed || f == *status;
    if (!allowed) {
      return absl::FailedPreconditionError(
          absl::StrCat("subscriber ", imsi, " is ", *status));
    }
    const bool reactivate = *status == kStatusReplaced && to == kStatusActive;
    if (absl::Status s =
            db.Exec("UPDATE subscribers SET status = $1, updated_at = $2 "
                    "WHERE imsi = $3",
                    {to, pg::Int(Unix(event.at)), imsi});
        !s.ok()) {
      return s;
    }
    if (reactivate) {
      if (absl::Status s =
              db.Exec("UPDATE subscribers SET replaced_by = '', device_id = $1 "
                      "WHERE imsi = $2",
                      {reactivated_device_id, imsi});
          !s.ok()) {
        return s;
      }
    }
    return InsertAudit(db, event);
  });
}

absl::StatusOr<std::vector<CertificateRecord>>
PostgresStore::RevokeCertificates(const RevocationRequest& request,
                                  const AuditEvent& event) {
  std::vector<CertificateRecord> revoked;
  (void)FlushAudit();  // device events queued earlier come first
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    revoked.clear();
    if (!request.serial.empty()) {
      auto exists = db.Query("SELECT 1 FROM certificates WHERE serial = $1",
                             {request.serial});
      if (!exists.ok()) return exists.status();
      if (exists->rows() == 0) {
        return absl::NotFoundError(
            absl::StrCat("no certificate with serial ", request.serial));
      }
      // The certificate and every certificate renewed from it.
      auto lineage = db.Query(
          "WITH RECURSIVE lineage (serial) AS (SELECT $1::text COLLATE \"C\" "
          "UNION SELECT c.serial FROM certificates c JOIN lineage l ON "
          "c.renewed_from = l.serial) SELECT serial FROM lineage",
          {request.serial});
      if (!lineage.ok()) return lineage.status();
      for (int i = 0; i < lineage->rows(); ++i) {
        auto one = RevokeWhere(db, "serial = $1", lineage->Text(i, 0),
                               request.reason, request.at);
        if (!one.ok()) return one.status();
        for (CertificateRecord& c : *one) revoked.push_back(std::move(c));
      }
    } else {
      if (auto st = StatusOf(db, request.imsi); !st.ok()) return st.status();
      auto r = RevokeWhere(db, "imsi = $1", request.imsi, request.reason,
                           request.at);
      if (!r.ok()) return r.status();
      revoked = std::move(*r);
    }
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

absl::StatusOr<std::vector<CertificateRecord>> PostgresStore::RenewalsOf(
    const std::string& serial) {
  auto r = Read(absl::StrCat("SELECT ", kCertificateColumns,
                             " FROM certificates WHERE renewed_from = $1 "
                             "ORDER BY issued_at, serial"),
                {serial});
  if (!r.ok()) return r.status();
  return Certificates(*r);
}

absl::Status PostgresStore::ListSuperseded(
    const std::function<bool(const CertificateRecord&)>& fn) {
  auto r = Read(absl::StrCat("SELECT ", kCertificateColumns,
                             " FROM certificates WHERE superseded_at > 0 AND "
                             "status = 'valid' ORDER BY superseded_at, serial"),
                {});
  if (!r.ok()) return r.status();
  for (int i = 0; i < r->rows(); ++i) {
    if (!fn(ReadCertificate(*r, i))) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CertificateRecord>> PostgresStore::RevokeSuperseded(
    const std::vector<std::string>& serials, absl::Time at,
    const AuditEvent& event) {
  std::vector<CertificateRecord> revoked;
  (void)FlushAudit();  // device events queued earlier come first
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    revoked.clear();
    for (const std::string& serial : serials) {
      // Not RevokeWhere: the device's tokens stay.
      auto r = db.Query(absl::StrCat("SELECT ", kCertificateColumns,
                                     " FROM certificates WHERE serial = $1 "
                                     "AND status = 'valid' AND "
                                     "superseded_at > 0 FOR UPDATE"),
                        {serial});
      if (!r.ok()) return r.status();
      if (r->rows() == 0) continue;
      CertificateRecord c = ReadCertificate(*r, 0);
      if (absl::Status u =
              db.Exec("UPDATE certificates SET status = 'revoked', "
                      "revocation_reason = 'superseded', revoked_at = $1 "
                      "WHERE serial = $2",
                      {pg::Int(Unix(at)), serial});
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

absl::StatusOr<std::vector<CertificateRecord>>
PostgresStore::RevokedCertificates(absl::Time now) {
  auto r = Read(absl::StrCat("SELECT ", kCertificateColumns,
                             " FROM certificates WHERE status = 'revoked' AND "
                             "not_after > $1 ORDER BY serial"),
                {pg::Int(Unix(now))});
  if (!r.ok()) return r.status();
  return Certificates(*r);
}

absl::StatusOr<uint64_t> PostgresStore::NextCrlNumber() {
  uint64_t number = 0;
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query(
        "UPDATE crl_state SET crl_number = crl_number + 1 WHERE id = 1 "
        "RETURNING crl_number",
        {});
    if (!r.ok()) return r.status();
    if (r->rows() != 1) return absl::InternalError("crl_state has no row");
    number = static_cast<uint64_t>(r->Int(0, 0));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return number;
}

absl::StatusOr<std::vector<CertificateRecord>> PostgresStore::ReplaceDevice(
    const std::string& old_imsi, const std::string& new_imsi, absl::Time at,
    const AuditEvent& event) {
  std::vector<CertificateRecord> revoked;
  (void)FlushAudit();  // device events queued earlier come first
  absl::Status s = Tx([&](pg::Connection& db) -> absl::Status {
    revoked.clear();
    // Both rows locked, in IMSI order (two replacements crossing each
    // other cannot deadlock).
    auto rows = db.Query(
        "SELECT imsi, status, device_id, group_name FROM subscribers "
        "WHERE imsi = $1 OR imsi = $2 ORDER BY imsi FOR UPDATE",
        {old_imsi, new_imsi});
    if (!rows.ok()) return rows.status();
    int old_row = -1, new_row = -1;
    for (int i = 0; i < rows->rows(); ++i) {
      if (rows->Text(i, 0) == old_imsi) old_row = i;
      if (rows->Text(i, 0) == new_imsi) new_row = i;
    }
    if (old_row < 0) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", old_imsi));
    }
    const std::string old_status = rows->Text(old_row, 1);
    std::string old_device = rows->Text(old_row, 2);
    const std::string old_group = rows->Text(old_row, 3);
    if (old_status != kStatusActive && old_status != kStatusSuspended) {
      return absl::FailedPreconditionError(
          absl::StrCat("old SIM ", old_imsi, " is ", old_status));
    }
    if (old_device.empty()) old_device = old_imsi;  // never provisioned
    if (new_row < 0) {
      return absl::NotFoundError(absl::StrCat(
          "no subscriber with IMSI ", new_imsi, " (import the new SIM first)"));
    }
    const std::string new_status = rows->Text(new_row, 1);
    const std::string new_device = rows->Text(new_row, 2);
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
    auto r = RevokeWhere(db, "imsi = $1", old_imsi, "superseded", at);
    if (!r.ok()) return r.status();
    revoked = std::move(*r);
    if (absl::Status u = db.Exec(
            "UPDATE subscribers SET status = 'replaced', device_id = '', "
            "replaced_by = $1, updated_at = $2 WHERE imsi = $3",
            {new_imsi, pg::Int(Unix(at)), old_imsi});
        !u.ok()) {
      return u;
    }
    if (absl::Status u =
            db.Exec("UPDATE subscribers SET device_id = $1, group_name = $2, "
                    "updated_at = $3 WHERE imsi = $4",
                    {old_device, old_group, pg::Int(Unix(at)), new_imsi});
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

absl::Status PostgresStore::SetImei(const std::string& imsi,
                                    const std::string& imei,
                                    bool only_if_unbound) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    auto r = only_if_unbound
                 ? db.Query(
                       "UPDATE subscribers SET imei = $1 WHERE imsi = $2 "
                       "AND (imei = '' OR imei = $3)",
                       {imei, imsi, imei})
                 : db.Query("UPDATE subscribers SET imei = $1 WHERE imsi = $2",
                            {imei, imsi});
    if (!r.ok()) return r.status();
    if (r->affected() != 1) {
      return absl::FailedPreconditionError("another IMEI is bound");
    }
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::ClearImei(const std::string& imsi,
                                      const AuditEvent& event) {
  (void)FlushAudit();  // device events queued earlier come first
  return Tx([&](pg::Connection& db) -> absl::Status {
    auto r =
        db.Query("UPDATE subscribers SET imei = '' WHERE imsi = $1", {imsi});
    if (!r.ok()) return r.status();
    if (r->affected() != 1) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", imsi));
    }
    return InsertAudit(db, event);
  });
}

absl::Status PostgresStore::QueryAudit(
    const AuditQuery& query, const std::function<bool(const AuditEvent&)>& fn) {
  if (absl::Status s = FlushAudit(); !s.ok()) return s;
  std::string sql = absl::StrCat("SELECT ", kAuditColumns,
                                 " FROM audit WHERE id > $1 AND at >= $2");
  if (!query.imsi.empty()) sql += " AND (actor = $4 OR target = $4)";
  sql += " ORDER BY id LIMIT $3";
  const int64_t since = query.since == absl::InfinitePast()
                            ? std::numeric_limits<int64_t>::min()
                            : Unix(query.since);
  int64_t after = query.after_id;
  size_t left = query.limit;  // 0: no limit
  while (true) {
    const size_t page = left == 0 ? kPageRows : std::min(left, kPageRows);
    std::vector<pg::Arg> args = {pg::Int(after), pg::Int(since), pg::Int(page)};
    if (!query.imsi.empty()) args.push_back(query.imsi);
    auto r = Read(sql, args);
    if (!r.ok()) return r.status();
    for (int i = 0; i < r->rows(); ++i) {
      AuditEvent e = ReadAudit(*r, i);
      after = e.id;
      if (!fn(e)) return absl::OkStatus();
    }
    if (static_cast<size_t>(r->rows()) < page) return absl::OkStatus();
    if (left != 0) {
      left -= page;
      if (left == 0) return absl::OkStatus();
    }
  }
}

}  // namespace simprov
