// PostgresStore: the tokens area: introspection apps, revocations and the
// token subject (read afresh on every call: another broker may have
// revoked or suspended since).
#include "absl/strings/str_cat.h"
#include "broker/store/postgres/postgres_store.h"
#include "broker/store/postgres/postgres_store_internal.h"

namespace simprov {

using pg_internal::Unix;

absl::Status PostgresStore::CreateTokenApp(const std::string& name,
                                           const Bytes& key_hash,
                                           absl::Time at) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    auto r = db.Query(
        "INSERT INTO token_apps (name, key_hash, created_at) VALUES "
        "($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        {name, key_hash, pg::Int(Unix(at))});
    if (!r.ok()) return r.status();
    if (r->affected() != 1) {
      return absl::AlreadyExistsError(
          absl::StrCat("application ", name, " already exists"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Bytes> PostgresStore::TokenAppKeyHash(const std::string& name) {
  auto r = Read("SELECT key_hash FROM token_apps WHERE name = $1", {name});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no application ", name));
  }
  return r->Blob(0, 0);
}

absl::Status PostgresStore::RevokeTokenId(const std::string& jti,
                                          absl::Time at) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    return db.Exec(
        "INSERT INTO token_revocations (jti, revoked_at) VALUES ($1, $2) "
        "ON CONFLICT (jti) DO NOTHING",
        {jti, pg::Int(Unix(at))});
  });
}

absl::Status PostgresStore::RevokeDeviceTokens(const std::string& imsi,
                                               absl::Time at) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    auto found = db.Query("SELECT 1 FROM subscribers WHERE imsi = $1", {imsi});
    if (!found.ok()) return found.status();
    if (found->rows() == 0) {
      return absl::NotFoundError(
          absl::StrCat("no subscriber with IMSI ", imsi));
    }
    return db.Exec(
        "INSERT INTO token_device_revocations (imsi, revoked_at) VALUES "
        "($1, $2) ON CONFLICT (imsi) DO UPDATE SET revoked_at = "
        "excluded.revoked_at",
        {imsi, pg::Int(Unix(at))});
  });
}

absl::StatusOr<bool> PostgresStore::TokenRevoked(const std::string& jti,
                                                 const std::string& imsi,
                                                 absl::Time iat) {
  auto r = Read(
      "SELECT 1 FROM token_revocations WHERE jti = $1 UNION ALL "
      "SELECT 1 FROM token_device_revocations WHERE imsi = $2 AND "
      "revoked_at >= $3",
      {jti, imsi, pg::Int(Unix(iat))});
  if (!r.ok()) return r.status();
  return r->rows() > 0;
}

absl::Status PostgresStore::PruneTokenRevocations(absl::Time before) {
  return Tx([&](pg::Connection& db) -> absl::Status {
    return db.Exec("DELETE FROM token_revocations WHERE revoked_at < $1",
                   {pg::Int(Unix(before))});
  });
}

namespace {

constexpr char kTokenSubjectColumns[] =
    "c.serial, c.status, s.imsi, s.device_id, c.device_id, s.group_name, "
    "s.iccid, s.status, s.imei, c.superseded_at";

Store::TokenSubject TokenSubjectFrom(const pg::Result& r) {
  Store::TokenSubject t;
  t.serial = r.Text(0, 0);
  t.cert_status = r.Text(0, 1);
  t.imsi = r.Text(0, 2);
  t.device_id = r.Text(0, 3);
  if (t.device_id.empty()) t.device_id = r.Text(0, 4);
  t.group = r.Text(0, 5);
  t.iccid = r.Text(0, 6);
  t.status = r.Text(0, 7);
  t.imei = r.Text(0, 8);
  t.superseded = r.Int(0, 9) != 0;
  return t;
}

}  // namespace

absl::StatusOr<Store::TokenSubject> PostgresStore::GetTokenSubject(
    const std::string& serial) {
  auto r = Read(absl::StrCat("SELECT ", kTokenSubjectColumns,
                             " FROM certificates c JOIN subscribers s ON "
                             "s.imsi = c.imsi WHERE c.serial = $1"),
                {serial});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no certificate ", serial));
  }
  return TokenSubjectFrom(*r);
}

absl::StatusOr<Store::TokenSubject> PostgresStore::GetTokenSubjectByCertHash(
    const Bytes& cert_sha256) {
  auto r = Read(absl::StrCat("SELECT ", kTokenSubjectColumns,
                             " FROM certificate_sha256 h JOIN certificates c "
                             "ON c.serial = h.serial JOIN subscribers s ON "
                             "s.imsi = c.imsi WHERE h.sha256 = $1 ORDER BY "
                             "c.issued_at DESC, c.serial LIMIT 1"),
                {cert_sha256});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError("no certificate with that SHA-256 hash");
  }
  return TokenSubjectFrom(*r);
}

}  // namespace simprov
