// Unit tests of the fleet lifecycle's building blocks: templates, group
// policy parsing, the CRL (signature, entries, number, refresh timer), the
// fleet store methods and the append-only audit.
#include "broker/policy/policy.h"

#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/ca/ca.h"
#include "broker/ca/crl_publisher.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/clock.h"
#include "common/sealed_box.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

TemplateValues Values() {
  TemplateValues v;
  v.device_id = "dev-1";
  v.imsi = "001010000000001";
  v.imei = "490154203237518";
  v.iccid = "8949000000000000001";
  v.msisdn = "+4912345";
  v.group = "cams";
  return v;
}

TEST(TemplateTest, ExpandsEveryPlaceholder) {
  auto s = ExpandTemplate(
      "#{device_id}/#{imsi}/#{imei}/#{iccid}/#{msisdn}/#{group}", Values());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s,
            "dev-1/001010000000001/490154203237518/8949000000000000001/"
            "+4912345/cams");
  EXPECT_EQ(*ExpandTemplate("plain", Values()), "plain");
  EXPECT_EQ(*ExpandTemplate("", Values()), "");
  EXPECT_EQ(*ExpandTemplate("a#b{c}#{imsi}", Values()),
            "a#b{c}001010000000001");
}

TEST(TemplateTest, UnknownPlaceholderIsNamed) {
  auto s = ExpandTemplate("cam-#{serial}", Values());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      absl::StrContains(s.status().message(), "unknown placeholder #{serial}"))
      << s.status();
  EXPECT_FALSE(CheckTemplate("#{IMSI}").ok());  // names are case-sensitive
  EXPECT_FALSE(CheckTemplate("cam-#{imsi").ok());
  EXPECT_TRUE(CheckTemplate("cam-#{imsi}").ok());
}

TEST(TemplateTest, MissingValueIsFailedPreconditionNamingIt) {
  TemplateValues v = Values();
  v.imei.clear();
  auto s = ExpandTemplate("x-#{imei}", v);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "#{imei}"));
}

TEST(PolicyTest, ParsesEveryKey) {
  auto p = ParseGroupPolicy(R"({"name": "cams",
      "subject": "CN=cam-#{imsi}, O=Acme,OU=#{group}", "cert_ttl": "30d",
      "san": {"dns": ["#{device_id}.example.com"], "uri": ["urn:x:#{imsi}"]},
      "key_types": ["p256", "rsa"],
      "token": {"audiences": ["a", "b"], "max_ttl": "15m",
                "identifiers": ["imsi", "imei"],
                "scopes": ["read", "meter:write"]},
      "registries": [{"target": "mqtt", "thing": "cam-#{device_id}",
                      "topics": ["d/#{device_id}/#", "g/#{group}"]}],
      "registration": "sync", "imei_lock": true})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "cams");
  ASSERT_EQ(p->subject.size(), 3u);
  EXPECT_EQ(p->subject[0].type, "CN");
  EXPECT_EQ(p->subject[0].value_template, "cam-#{imsi}");
  EXPECT_EQ(p->subject[1].type, "O");
  EXPECT_EQ(p->subject[2].type, "OU");
  EXPECT_EQ(p->cert_ttl, absl::Hours(24 * 30));
  EXPECT_EQ(p->san_dns_templates,
            std::vector<std::string>{"#{device_id}.example.com"});
  EXPECT_EQ(p->san_uri_templates, std::vector<std::string>{"urn:x:#{imsi}"});
  EXPECT_TRUE(p->AllowsKeyType("P-256"));
  EXPECT_TRUE(p->AllowsKeyType("RSA-2048"));
  EXPECT_FALSE(p->AllowsKeyType("P-384"));
  EXPECT_FALSE(p->AllowsKeyType("Ed25519"));
  EXPECT_EQ(p->token.audiences, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p->token.max_ttl, absl::Minutes(15));
  ASSERT_TRUE(p->token.identifiers.has_value());
  EXPECT_EQ(*p->token.identifiers, (std::vector<std::string>{"imsi", "imei"}));
  EXPECT_EQ(p->token.scopes, (std::vector<std::string>{"read", "meter:write"}));
  ASSERT_EQ(p->registries.size(), 1u);
  EXPECT_EQ(p->registries[0].target, "mqtt");
  EXPECT_EQ(p->registries[0].thing_template, "cam-#{device_id}");
  EXPECT_EQ(p->registries[0].topic_templates.size(), 2u);
  EXPECT_TRUE(p->sync_registration);
  EXPECT_TRUE(p->imei_lock);
  auto subject = ExpandSubject(*p, Values());
  ASSERT_TRUE(subject.ok());
  EXPECT_EQ((*subject)[0].second, "cam-001010000000001");
  EXPECT_EQ((*subject)[2].second, "cams");
  // Thing and topics of a replaced SIM's successor: same device id, same
  // names.
  TemplateValues successor = Values();
  successor.imsi = "001010000000002";
  EXPECT_EQ(*ExpandTemplate(p->registries[0].thing_template, successor),
            *ExpandTemplate(p->registries[0].thing_template, Values()));
}

TEST(PolicyTest, DefaultsAreTheImplicitPolicy) {
  auto p = ParseGroupPolicy(R"({"name": "minimal"})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject.size(), 1u);
  EXPECT_EQ(p->subject[0].value_template, "#{imsi}");
  EXPECT_FALSE(p->cert_ttl.has_value());
  EXPECT_TRUE(p->AllowsKeyType("Ed25519"));
  EXPECT_FALSE(p->imei_lock);
  EXPECT_FALSE(p->sync_registration);
  EXPECT_TRUE(p->token.scopes.empty());  // no scope may be asked for
  EXPECT_EQ(ImplicitPolicy("default").subject[0].value_template, "#{imsi}");
  EXPECT_TRUE(ImplicitPolicy("default").token.scopes.empty());
}

TEST(PolicyTest, SupersedeGraceIsADurationOfOneSecondToOneDay) {
  EXPECT_EQ(ParseGroupPolicy(R"({"name": "g"})")->supersede_grace,
            absl::Minutes(10));
  EXPECT_EQ(ImplicitPolicy("default").supersede_grace, absl::Minutes(10));
  auto p = ParseGroupPolicy(R"({"name": "g", "supersede_grace": "2s"})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->supersede_grace, absl::Seconds(2));
  EXPECT_EQ(ParseGroupPolicy(R"({"name": "g", "supersede_grace": "1d"})")
                ->supersede_grace,
            absl::Hours(24));
  for (const char* bad : {R"({"name": "g", "supersede_grace": "0s"})",
                          R"({"name": "g", "supersede_grace": "25h"})",
                          R"({"name": "g", "supersede_grace": 600})",
                          R"({"name": "g", "supersede_grace": "soon"})"}) {
    auto r = ParseGroupPolicy(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(r.status().message(),
                                  "group g: key \"supersede_grace\""))
        << bad << " -> " << r.status();
  }
}

TEST(PolicyTest, ErrorsNameTheKey) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"subject": "CN=x"})", "key \"name\": required"},
      {R"({"name": "a b"})", "key \"name\""},
      {R"({"name": "g", "colour": 1})", "unknown key \"colour\""},
      {R"({"name": "g", "subject": "CN=#{nope}"})", "#{nope}"},
      {R"({"name": "g", "subject": "XYZ=1"})", "unknown attribute type"},
      {R"({"name": "g", "subject": "CN"})", "not TYPE=VALUE"},
      {R"({"name": "g", "cert_ttl": "7200"})", "key \"cert_ttl\""},
      {R"({"name": "g", "cert_ttl": 7200})", "key \"cert_ttl\""},
      {R"({"name": "g", "san": {"ip": []}})", "unknown key \"ip\""},
      {R"({"name": "g", "san": {"uri": ["noscheme"]}})", "no scheme"},
      {R"({"name": "g", "key_types": ["dsa"]})", "unknown key type \"dsa\""},
      {R"({"name": "g", "key_types": []})", "key \"key_types\""},
      {R"({"name": "g", "token": {"aud": []}})", "unknown key \"aud\""},
      {R"({"name": "g", "token": {"identifiers": ["msisdn"]}})",
       "unknown identifier \"msisdn\""},
      {R"({"name": "g", "token": {"scopes": "read"}})",
       "key \"token.scopes\": must be a list of strings"},
      {R"({"name": "g", "token": {"scopes": [1]}})",
       "key \"token.scopes\": must be a list of strings"},
      {R"({"name": "g", "token": {"scopes": ["read write"]}})",
       "key \"token.scopes\": \"read write\" is not a scope"},
      {R"({"name": "g", "token": {"scopes": [""]}})",
       "key \"token.scopes\": \"\" is not a scope"},
      {R"({"name": "g", "token": {"scopes": ["a\"b"]}})",
       "key \"token.scopes\""},
      {R"({"name": "g", "registries": [{"thing": "x"}]})", "registries.target"},
      {R"({"name": "g", "registries": [{"target": "m", "topics": ["#{x}"]}]})",
       "#{x}"},
      {R"({"name": "g", "registration": "later"})", "key \"registration\""},
      {R"({"name": "g", "imei_lock": "yes"})", "key \"imei_lock\""},
  };
  for (const Case& c : cases) {
    auto p = ParseGroupPolicy(c.json);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_TRUE(absl::StrContains(p.status().message(), c.message))
        << c.json << " -> " << p.status();
  }
}

TEST(PolicyTest, GroupsFileIsValidatedAsAWhole) {
  auto g = ParseGroupsFile(
      R"({"groups": [{"name": "a"}, {"name": "b", "cert_ttl": "1h"}]})");
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->size(), 2u);
  EXPECT_EQ((*g)[1].first.cert_ttl, absl::Hours(1));
  EXPECT_EQ((*g)[1].second, R"({"cert_ttl":"1h","name":"b"})");
  EXPECT_FALSE(ParseGroupsFile(R"({"groups": []})").ok());
  EXPECT_FALSE(ParseGroupsFile(R"([{"name": "a"}])").ok());
  EXPECT_FALSE(ParseGroupsFile("not json").ok());
  auto dup = ParseGroupsFile(R"({"groups": [{"name": "a"}, {"name": "a"}]})");
  EXPECT_TRUE(absl::StrContains(dup.status().message(), "appears twice"));
  auto bad = ParseGroupsFile(
      R"({"groups": [{"name": "a"}, {"name": "b", "subject": "CN=#{x}"}]})");
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "group b"))
      << bad.status();
  EXPECT_FALSE(ParseGroupsFile(R"({"groups": [], "extra": 1})").ok());
}

TEST(CrlReasonTest, Rfc5280Names) {
  EXPECT_EQ(*CrlReasonCode("unspecified"), 0);
  EXPECT_EQ(*CrlReasonCode("keyCompromise"), 1);
  EXPECT_EQ(*CrlReasonCode("superseded"), 4);
  EXPECT_EQ(*CrlReasonCode("cessationOfOperation"), 5);
  EXPECT_EQ(*CrlReasonCode("aACompromise"), 10);
  EXPECT_FALSE(CrlReasonCode("keycompromise").ok());
  EXPECT_FALSE(CrlReasonCode("certificateHold").ok());
}

class CrlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    auto ca = CertificateAuthority::CreateDevelopment(dir_, clock_, random_);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
  }
  void TearDown() override { testing::RemoveTree(dir_); }

  static X509_CRL* Parse(const Bytes& der) {
    const unsigned char* p = der.data();
    return d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size()));
  }

  const absl::Time kStart = absl::FromUnixSeconds(1790000000);
  FakeClock clock_{kStart};
  DeterministicRandom random_{6};
  std::string dir_;
  std::unique_ptr<CertificateAuthority> ca_;
};

TEST_F(CrlTest, SignedV2CrlWithNumberAkiEntriesAndReasons) {
  auto der =
      ca_->IssueCrl({{"4a01", kStart - absl::Hours(1), 1}, {"4a02", kStart, 0}},
                    7, kStart, kStart + absl::Hours(24));
  ASSERT_TRUE(der.ok()) << der.status();
  X509_CRL* crl = Parse(*der);
  ASSERT_NE(crl, nullptr);
  EXPECT_EQ(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
  EXPECT_EQ(X509_CRL_verify(crl, X509_get0_pubkey(ca_->issuing_cert())), 1);
  // Not by the root key.
  EXPECT_NE(X509_CRL_verify(crl, X509_get0_pubkey(ca_->root_cert())), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_CRL_get_issuer(crl),
                          X509_get_subject_name(ca_->issuing_cert())),
            0);
  // X509_cmp_time: -1 for "at or before", 1 for "after".
  time_t t = absl::ToTimeT(kStart + absl::Hours(24));
  EXPECT_EQ(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &t), -1);
  --t;
  EXPECT_EQ(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &t), 1);
  t = absl::ToTimeT(kStart);
  EXPECT_EQ(X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &t), -1);
  auto* number = static_cast<ASN1_INTEGER*>(
      X509_CRL_get_ext_d2i(crl, NID_crl_number, nullptr, nullptr));
  ASSERT_NE(number, nullptr);
  EXPECT_EQ(ASN1_INTEGER_get(number), 7);
  ASN1_INTEGER_free(number);
  auto* akid = static_cast<AUTHORITY_KEYID*>(X509_CRL_get_ext_d2i(
      crl, NID_authority_key_identifier, nullptr, nullptr));
  ASSERT_NE(akid, nullptr);
  EXPECT_EQ(ASN1_STRING_cmp(akid->keyid,
                            X509_get0_subject_key_id(ca_->issuing_cert())),
            0);
  AUTHORITY_KEYID_free(akid);
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  ASSERT_EQ(sk_X509_REVOKED_num(revoked), 2);
  X509_REVOKED* first = sk_X509_REVOKED_value(revoked, 0);
  EXPECT_EQ(ASN1_INTEGER_get(X509_REVOKED_get0_serialNumber(first)), 0x4a01);
  auto* reason = static_cast<ASN1_ENUMERATED*>(
      X509_REVOKED_get_ext_d2i(first, NID_crl_reason, nullptr, nullptr));
  ASSERT_NE(reason, nullptr);
  EXPECT_EQ(ASN1_ENUMERATED_get(reason), 1);
  ASN1_ENUMERATED_free(reason);
  // "unspecified" carries no reason code extension (RFC 5280 5.3.1).
  EXPECT_EQ(X509_REVOKED_get_ext_count(sk_X509_REVOKED_value(revoked, 1)), 0);
  X509_CRL_free(crl);

  EXPECT_FALSE(ca_->IssueCrl({}, 1, kStart, kStart).ok());
  EXPECT_FALSE(
      ca_->IssueCrl({{"xyz", kStart, 0}}, 1, kStart, kStart + absl::Hours(1))
          .ok());
}

TEST_F(CrlTest, PublisherListsRevokedUnexpiredAndRefreshesBeforeNextUpdate) {
  auto store = SqliteStore::Open(dir_ + "/store.db", clock_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto import = (*store)->BeginImport();
  ASSERT_TRUE(import.ok());
  NewSubscriber sub;
  sub.imsi = "001010000000001";
  sub.sealed_keys = {1};
  sub.amf = {0x80, 0};
  ASSERT_TRUE((*import)->Add(sub).ok());
  ASSERT_TRUE((*import)->Commit().ok());
  auto cert = [&](const std::string& serial, absl::Duration ttl) {
    CertificateRecord c;
    c.serial = serial;
    c.imsi = sub.imsi;
    c.device_id = sub.imsi;
    c.not_before = kStart;
    c.not_after = kStart + ttl;
    c.der = {1};
    c.issued_at = kStart;
    return c;
  };
  AuditEvent e{kStart, sub.imsi, "bootstrap", sub.imsi, "ok", ""};
  ASSERT_TRUE((*store)->RecordIssuance(cert("4b01", absl::Hours(48)), e).ok());
  ASSERT_TRUE((*store)->RecordIssuance(cert("4b02", absl::Hours(2)), e).ok());
  RevocationRequest r;
  r.imsi = sub.imsi;
  r.reason = "keyCompromise";
  r.at = kStart;
  auto revoked = (*store)->RevokeCertificates(
      r, {kStart, "local", "revoke", sub.imsi, "ok", ""});
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->size(), 2u);
  // Revoking again changes nothing.
  EXPECT_TRUE((*store)
                  ->RevokeCertificates(
                      r, {kStart, "local", "revoke", sub.imsi, "ok", ""})
                  ->empty());

  CrlPublisher crl(**store, *ca_, clock_, dir_ + "/ca.crl", absl::Hours(24));
  EXPECT_TRUE(crl.Der().empty());
  ASSERT_TRUE(crl.MaybeRefresh().ok());
  X509_CRL* first = Parse(crl.Der());
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(first)), 2);
  X509_CRL_free(first);
  EXPECT_EQ(testing::ReadFileOrEmpty(dir_ + "/ca.crl"), ToString(crl.Der()));

  // Not yet half-way: the same CRL.
  const Bytes before = crl.Der();
  clock_.Advance(absl::Hours(11));
  ASSERT_TRUE(crl.MaybeRefresh().ok());
  EXPECT_EQ(crl.Der(), before);
  // Half-way: a new CRL (new number); the expired certificate is dropped.
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(crl.MaybeRefresh().ok());
  EXPECT_NE(crl.Der(), before);
  X509_CRL* second = Parse(crl.Der());
  ASSERT_NE(second, nullptr);
  auto* number = static_cast<ASN1_INTEGER*>(
      X509_CRL_get_ext_d2i(second, NID_crl_number, nullptr, nullptr));
  EXPECT_EQ(ASN1_INTEGER_get(number), 2);
  ASN1_INTEGER_free(number);
  ASSERT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(second)), 1);
  EXPECT_EQ(ASN1_INTEGER_get(X509_REVOKED_get0_serialNumber(
                sk_X509_REVOKED_value(X509_CRL_get_REVOKED(second), 0))),
            0x4b01);
  X509_CRL_free(second);
}

TEST_F(CrlTest, AuditIsAppendOnlyAndBatchedEventsAreReadable) {
  const std::string path = dir_ + "/store.db";
  {
    auto store = SqliteStore::Open(path, clock_);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE((*store)
                      ->AppendAudit({kStart, "001010000000001", "bootstrap",
                                     "001010000000001", "refused",
                                     "RES does not match"})
                      .ok());
    }
    // A read flushes the queue first.
    EXPECT_EQ((*store)->AuditOf("001010000000001")->size(), 100u);
    ASSERT_TRUE((*store)
                    ->AppendAudit(
                        {kStart, "x", "bootstrap", "001010000000002", "ok", ""})
                    .ok());
  }  // closing writes what is queued
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_NE(
      sqlite3_exec(db, "UPDATE audit SET reason = 'x'", nullptr, nullptr, &err),
      SQLITE_OK);
  EXPECT_TRUE(absl::StrContains(err, "append-only")) << err;
  sqlite3_free(err);
  EXPECT_NE(sqlite3_exec(db, "DELETE FROM audit", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(
      sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM audit", -1, &st, nullptr),
      SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 101);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

}  // namespace
}  // namespace simprov

namespace simprov {
namespace {

// A store written by schema version 1 (the core's audit table) opens with
// its audit rows migrated into the new shape.
TEST(FleetMigrationTest, VersionOneAuditRowsAreMigrated) {
  const std::string dir = testing::MakeTempDir();
  const std::string path = dir + "/store.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  // Schema step 1 as released (broker/store/sqlite/sqlite_store_schema.cc),
  // with two rows.
  const char* v1 = R"sql(
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,
  applied_at INTEGER NOT NULL);
INSERT INTO schema_migrations VALUES (1, 1700000000);
CREATE TABLE subscribers (
  imsi TEXT PRIMARY KEY, sealed_keys BLOB NOT NULL, amf BLOB NOT NULL,
  sqn_seq INTEGER NOT NULL, sqn_ind INTEGER NOT NULL,
  last_sqn INTEGER NOT NULL DEFAULT 0, group_name TEXT NOT NULL,
  iccid TEXT NOT NULL DEFAULT '', msisdn TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'active', device_id TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX subscribers_group ON subscribers (group_name, imsi);
CREATE TABLE certificates (
  serial TEXT PRIMARY KEY, imsi TEXT NOT NULL REFERENCES subscribers (imsi),
  device_id TEXT NOT NULL, not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL, der BLOB NOT NULL,
  status TEXT NOT NULL DEFAULT 'valid', issued_at INTEGER NOT NULL);
CREATE INDEX certificates_imsi ON certificates (imsi, issued_at);
CREATE TABLE audit (id INTEGER PRIMARY KEY, at INTEGER NOT NULL,
  event TEXT NOT NULL, imsi TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT '');
CREATE INDEX audit_imsi ON audit (imsi, id);
INSERT INTO audit (at, event, imsi, detail) VALUES
  (1700000001, 'bootstrap.issued', '001010000000001', 'serial=0a'),
  (1700000002, 'bootstrap.refused', '001010000000001', 'RES does not match'),
  (1700000003, 'subscribers.imported', '', '5 subscribers');
)sql";
  ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->SchemaVersion(), SqliteStore::LatestSchemaVersion());
  std::vector<AuditEvent> all;
  ASSERT_TRUE((*store)
                  ->QueryAudit({},
                               [&](const AuditEvent& e) {
                                 all.push_back(e);
                                 return true;
                               })
                  .ok());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].actor, "001010000000001");
  EXPECT_EQ(all[0].action, "bootstrap");
  EXPECT_EQ(all[0].target, "001010000000001");
  EXPECT_EQ(all[0].result, "ok");
  EXPECT_EQ(all[0].reason, "serial=0a");
  EXPECT_EQ(all[0].at, absl::FromUnixSeconds(1700000001));
  EXPECT_EQ(all[1].result, "refused");
  EXPECT_EQ(all[1].reason, "RES does not match");
  EXPECT_EQ(all[2].actor, "local");
  EXPECT_EQ(all[2].action, "import");
  testing::RemoveTree(dir);
}

// The one rule for registry topics: group templates when applied, the
// issue hook's literal answers.
TEST(RegistryTopics, WildcardsOnlyBelowALevelNamingTheDevice) {
  for (const char* ok :
       {"devices/#{device_id}/#", "devices/#{device_id}", "a/#{imsi}/+/x",
        "cam-#{iccid}/#", "g/#{group}/#{imei}/#", "plain/topic"}) {
    EXPECT_TRUE(CheckTopicTemplate(ok, false).ok()) << ok;
  }
  for (const char* bad :
       {"#", "+", "devices/#", "devices/+/#{device_id}", "cams/#{group}/#",
        "devices/#{device_id}#", "a/b+/#{imsi}", "#{imsi}/#/x", "",
        "#{device_id}/x#"}) {
    absl::Status s = CheckTopicTemplate(bad, false);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find(absl::StrCat("topic \"", bad, "\"")),
              std::string::npos)
        << s;
  }
  // The group may allow wildcards anywhere; the syntax still holds.
  EXPECT_TRUE(CheckTopicTemplate("devices/#", true).ok());
  EXPECT_TRUE(CheckTopicTemplate("+/x", true).ok());
  EXPECT_FALSE(CheckTopicTemplate("#/x", true).ok());
  EXPECT_FALSE(CheckTopicTemplate("a+/x", true).ok());

  // Expanded topics: a level naming the device holds one of its values.
  TemplateValues v;
  v.device_id = "dev-7";
  v.imsi = "001010000000007";
  const auto own = DeviceNamingValues(v);
  EXPECT_EQ(own, (std::vector<std::string>{"dev-7", "001010000000007"}));
  EXPECT_TRUE(CheckTopicFilter("devices/dev-7/#", own, false).ok());
  EXPECT_TRUE(CheckTopicFilter("t/cam-001010000000007/+", own, false).ok());
  EXPECT_FALSE(CheckTopicFilter("#", own, false).ok());
  EXPECT_FALSE(CheckTopicFilter("devices/#", own, false).ok());
  EXPECT_FALSE(CheckTopicFilter("devices/+/dev-7", own, false).ok());
  EXPECT_FALSE(CheckTopicFilter("devices/dev-8/#", own, false).ok());
  EXPECT_FALSE(CheckTopicFilter(std::string("a\0b", 3), own, true).ok());
  EXPECT_FALSE(CheckTopicFilter(std::string(513, 'a'), own, true).ok());
  EXPECT_TRUE(CheckTopicFilter("devices/#", own, true).ok());
}

TEST(RegistryTopics, GroupsApplyHoldsBindingsToTheRule) {
  auto bad = ParseGroupsFile(R"({"groups": [{"name": "g", "registries":
      [{"target": "m", "topics": ["devices/#"]}]}]})");
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(
                "group g: key \"registries.topics\": topic \"devices/#\""),
            std::string::npos)
      << bad.status();
  auto any = ParseGroupsFile(R"({"groups": [{"name": "g", "registries":
      [{"target": "m", "topics": ["devices/#"], "wildcards": "any"}]}]})");
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_TRUE((*any)[0].first.registries[0].any_wildcards);
  EXPECT_FALSE(ParseGroupsFile(R"({"groups": [{"name": "g", "registries":
      [{"target": "m", "wildcards": "all"}]}]})")
                   .ok());
  EXPECT_FALSE(ParseGroupsFile(R"({"groups": [{"name": "g", "registries":
      [{"target": "m", "thing": "a/#{device_id}"}]}]})")
                   .ok());
  // A group stored before the rule still loads (it keeps issuing).
  EXPECT_TRUE(ParseGroupPolicy(R"({"name": "g", "registries":
      [{"target": "m", "topics": ["devices/#"]}]})")
                  .ok());
  EXPECT_TRUE(CheckThingName("cam-001:x_y.z").ok());
  EXPECT_FALSE(CheckThingName("a/b").ok());
  EXPECT_FALSE(CheckThingName("").ok());
  EXPECT_FALSE(CheckThingName(std::string(129, 'a')).ok());
}

}  // namespace
}  // namespace simprov
