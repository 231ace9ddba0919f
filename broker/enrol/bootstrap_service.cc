#include "broker/enrol/bootstrap_service.h"

#include <grpc/grpc_security_constants.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/aka.h"
#include "common/csr.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/imsi.h"
#include "common/log.h"
#include "common/milenage.h"
#include "common/sealed_box.h"
#include "common/transcript.h"
#include "common/x509.h"

namespace simprov {

namespace {

constexpr size_t kSessionIdSize = 16;
constexpr size_t kMaxResSize = 16;
constexpr size_t kMaxInfoSize = 32;

absl::StatusOr<Milenage> MilenageFor(const KekRing& kek,
                                     const std::string& imsi,
                                     const Bytes& sealed) {
  auto keys = kek.Open(sealed, ToBytes(imsi));
  if (!keys.ok()) {
    return absl::InternalError(
        absl::StrCat("sealed keys of IMSI ", imsi, " do not open"));
  }
  if (keys->size() != 32) {
    SecureWipe(*keys);
    return absl::InternalError("sealed keys have the wrong size");
  }
  Bytes k(keys->begin(), keys->begin() + 16);
  Bytes opc(keys->begin() + 16, keys->end());
  SecureWipe(*keys);
  auto m = Milenage::Create(k, opc);
  SecureWipe(k);
  SecureWipe(opc);
  return m;
}

// The AMF a decoy for an unknown IMSI carries: the one `subscribers import`
// gives a subscriber whose row names none (broker/admin).
const Bytes& DefaultAmf() {
  static const Bytes* const amf = new Bytes{0x80, 0x00};
  return *amf;
}

// Keys for a decoy's vector: random, used once, never stored.
Milenage ThrowawayMilenage(Random& random) {
  Bytes k = random.Generate(16);
  Bytes opc = random.Generate(16);
  auto m = Milenage::Create(k, opc);
  SecureWipe(k);
  SecureWipe(opc);
  if (!m.ok()) std::abort();  // 16-byte keys always make one
  return std::move(*m);
}

bool PrintableInfo(const std::string& s) {
  if (s.size() > kMaxInfoSize) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

std::string Bootstrapper::DeviceIdUri(const std::string& device_id) {
  return absl::StrCat("urn:simprov:device:", device_id);
}

Bootstrapper::Bootstrapper(BootstrapOptions options, Store& store,
                           CertificateAuthority& ca, Bytes kek, Clock& clock,
                           Random& random)
    : Bootstrapper(std::move(options), store, ca, *new KekRing(std::move(kek)),
                   clock, random) {
  owned_kek_.reset(&kek_);
}

Bootstrapper::Bootstrapper(BootstrapOptions options, Store& store,
                           CertificateAuthority& ca, KekRing& kek, Clock& clock,
                           Random& random)
    : options_(std::move(options)),
      store_(store),
      ca_(ca),
      kek_(kek),
      clock_(clock),
      random_(random),
      shared_(options_.shared_state || store.IsShared()),
      limiter_(options_.rate_burst, options_.rate_refill),
      shared_limiter_(store, options_.rate_burst, options_.rate_refill),
      nonces_(random) {
  if (shared_) {
    sessions_ = std::make_unique<StoreSessionTable>(
        store, kek, random, options_.max_sessions_per_imsi,
        options_.max_sessions);
  } else {
    sessions_ = std::make_unique<InMemorySessionTable>(
        options_.max_sessions_per_imsi, options_.max_sessions);
  }
}

void Bootstrapper::Sweep() {
  absl::Time now = clock_.Now();
  if (absl::Status s = sessions_->ExpireBefore(now - options_.session_ttl);
      !s.ok()) {
    LogError("expiring challenge sessions: %s", s.message());
  }
  if (!shared_) {
    limiter_.ForgetIdle(now);
  } else if (absl::Status s = shared_limiter_.ForgetIdle(now); !s.ok()) {
    LogError("forgetting idle rate limits: %s", s.message());
  }
}

absl::StatusOr<v1::ChallengeResponse> Bootstrapper::Challenge(
    const v1::ChallengeRequest& req) {
  const std::string& imsi = req.imsi();
  if (!IsValidImsi(imsi)) {
    return absl::InvalidArgumentError("IMSI must be 6 to 15 decimal digits");
  }
  absl::StatusOr<bool> allowed =
      shared_ ? shared_limiter_.Allow(imsi, clock_.Now())
              : absl::StatusOr<bool>(limiter_.Allow(imsi, clock_.Now()));
  if (!allowed.ok()) return absl::UnavailableError(allowed.status().message());
  if (!*allowed) {
    LogWarning("challenge: IMSI %s rate-limited", imsi);
    return absl::ResourceExhaustedError(
        "too many challenges for this IMSI; retry later");
  }
  if (!req.auts().empty() || !req.resync_rand().empty()) {
    if (req.auts().size() != 14 || req.resync_rand().size() != 16) {
      return absl::InvalidArgumentError(
          "resynchronisation needs a 16-byte RAND and a 14-byte AUTS");
    }
    absl::Status s =
        Resynchronise(imsi, ToBytes(req.resync_rand()), ToBytes(req.auts()));
    if (!s.ok()) return s;
  }
  return NewChallenge(imsi);
}

absl::Status Bootstrapper::Resynchronise(const std::string& imsi,
                                         const Bytes& rand, const Bytes& auts) {
  if (options_.metrics) options_.metrics->ChallengeFailure("sync");
  auto taken = sessions_->TakeByRand(imsi, rand);
  if (!taken.ok()) return taken.status();
  std::optional<Session>& s = *taken;
  const absl::Status refused = absl::UnauthenticatedError(
      "resynchronisation refused: no outstanding challenge with that RAND, "
      "or AUTS does not verify");
  if (!s || clock_.Now() - s->created > options_.session_ttl) {
    LogWarning("resync: IMSI %s: no outstanding challenge with that RAND",
               imsi);
    return refused;
  }
  // A decoy's RAND takes the same steps as a real one's (the look-up, a
  // MAC-S check under throwaway keys), so neither the answer nor its timing
  // tells whether the IMSI is known or active.
  auto sub = store_.GetSubscriber(imsi);
  if (!sub.ok() && sub.status().code() != absl::StatusCode::kNotFound) {
    return absl::UnavailableError(sub.status().message());
  }
  const bool real = !s->decoy && sub.ok();
  absl::StatusOr<Milenage> m =
      real ? MilenageFor(kek_, imsi, sub->sealed_keys)
           : absl::StatusOr<Milenage>(ThrowawayMilenage(random_));
  if (!m.ok()) return m.status();
  auto sqn_ms = RecoverSqnMs(*m, rand, auts);
  if (!real || !sqn_ms.ok()) {
    const std::string reason =
        !real ? (s->decoy ? s->decoy_reason : std::string("unknown IMSI"))
              : std::string("MAC-S does not verify");
    LogWarning("resync: IMSI %s refused: %s", imsi, reason);
    if (options_.metrics) options_.metrics->ChallengeFailure("sync_refused");
    if (sub.ok()) {
      (void)store_.AppendAudit(
          {clock_.Now(), imsi, "resync", imsi, "refused", reason});
    }
    return refused;
  }
  if (absl::Status st = store_.ResyncSqn(imsi, *sqn_ms); !st.ok()) {
    return absl::UnavailableError(st.message());
  }
  LogInfo("resync: IMSI %s resynchronised", imsi);
  return absl::OkStatus();
}

absl::StatusOr<v1::ChallengeResponse> Bootstrapper::NewChallenge(
    const std::string& imsi) {
  Session session;
  session.id = random_.Generate(kSessionIdSize);
  session.imsi = imsi;
  session.rand = random_.Generate(16);
  session.created = clock_.Now();

  auto material = store_.AdvanceSqn(imsi);
  if (!material.ok() &&
      material.status().code() != absl::StatusCode::kNotFound) {
    return absl::UnavailableError(material.status().message());
  }
  if (!material.ok() || material->status != kStatusActive) {
    // Decoy: a vector from throwaway keys. Its AUTN has a real one's layout,
    // (SQN xor AK) || AMF || MAC-A with the AMF in clear: the subscriber's,
    // or for an unknown IMSI the default a real one would most likely have.
    // It costs what a real vector does, and the store did the same durable
    // write (AdvanceSqn). The Enrol that follows fails at the RES check,
    // like any wrong RES.
    session.decoy = true;
    session.decoy_reason =
        material.ok() ? absl::StrCat("subscriber is ", material->status)
                      : "unknown IMSI";
    const Bytes& amf =
        material.ok() && material->amf.size() == Milenage::kAmfLen
            ? material->amf
            : DefaultAmf();
    const Bytes sqn = random_.Generate(6);
    AuthVector v = GenerateVector(ThrowawayMilenage(random_), session.rand,
                                  BytesToUint48(sqn.data()), amf);
    session.autn = std::move(v.autn);
    session.xres = std::move(v.xres);
    session.ck = std::move(v.ck);
    session.ik = std::move(v.ik);
    LogInfo("challenge: IMSI %s gets a decoy (%s)", imsi, session.decoy_reason);
    if (options_.metrics) {
      options_.metrics->ChallengeFailure(material.ok() ? "inactive"
                                                       : "unknown_imsi");
    }
    // A known SIM that is not active: the audit says why. (Unknown IMSIs
    // are only logged: anyone can send them.)
    if (material.ok()) {
      (void)store_.AppendAudit(
          {clock_.Now(), imsi, "bootstrap", imsi, "refused",
           absl::StrCat(session.decoy_reason, " (decoy challenge)")});
    }
  } else {
    auto m = MilenageFor(kek_, imsi, material->sealed_keys);
    if (!m.ok()) {
      LogError("challenge: %s", m.status().message());
      return absl::InternalError("subscriber keys unavailable");
    }
    AuthVector v =
        GenerateVector(*m, session.rand, material->sqn, material->amf);
    session.autn = v.autn;
    session.xres = std::move(v.xres);
    session.ck = std::move(v.ck);
    session.ik = std::move(v.ik);
    session.device_id = material->device_id;
    session.group = material->group;
  }
  v1::ChallengeResponse resp;
  resp.set_session_id(ToString(session.id));
  resp.set_rand(ToString(session.rand));
  resp.set_autn(ToString(session.autn));
  resp.set_expires_in_ms(absl::ToInt64Milliseconds(options_.session_ttl));
  if (absl::Status s = sessions_->Insert(std::move(session)); !s.ok()) {
    return absl::UnavailableError(s.message());
  }
  return resp;
}

absl::Status Bootstrapper::Refuse(absl::string_view action,
                                  const std::string& imsi, absl::Status status,
                                  absl::string_view reason) {
  LogWarning("%s: IMSI %s refused: %s", action, imsi, reason);
  if (options_.metrics) options_.metrics->Refused(action, reason);
  (void)store_.AppendAudit({clock_.Now(), imsi, std::string(action), imsi,
                            "refused", std::string(reason)});
  return status;
}

absl::Status Bootstrapper::CheckImei(const SubscriberRecord& sub,
                                     const GroupPolicy& policy,
                                     const std::string& imei) {
  if (!policy.imei_lock) {
    if (imei.empty() || imei == sub.imei) return absl::OkStatus();
    // Remembered (for #{imei} at renewal and `devices show`), not bound.
    if (absl::Status s = store_.SetImei(sub.imsi, imei, false); !s.ok()) {
      return absl::UnavailableError("store unavailable; retry");
    }
    return absl::OkStatus();
  }
  const absl::Status locked = absl::PermissionDeniedError(
      "refused by the IMEI lock of the subscriber's group: this SIM is bound "
      "to another device (an operator can clear the lock)");
  if (imei.empty()) {
    return Refuse("bootstrap", sub.imsi,
                  absl::PermissionDeniedError(
                      "the subscriber's group has an IMEI lock and the "
                      "device sent no IMEI"),
                  "IMEI lock: no IMEI sent");
  }
  if (!sub.imei.empty() && sub.imei != imei) {
    return Refuse(
        "bootstrap", sub.imsi, locked,
        absl::StrCat("IMEI lock: IMEI ", imei, " is not the bound ", sub.imei));
  }
  if (sub.imei.empty()) {
    absl::Status s = store_.SetImei(sub.imsi, imei, /*only_if_unbound=*/true);
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      return Refuse(
          "bootstrap", sub.imsi, locked,
          absl::StrCat("IMEI lock: IMEI ", imei, " lost the race to bind"));
    }
    if (!s.ok()) return absl::UnavailableError("store unavailable; retry");
    (void)store_.AppendAudit({clock_.Now(), sub.imsi, "imei-bind", sub.imsi,
                              "ok", absl::StrCat("imei=", imei)});
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::EnrolResponse> Bootstrapper::Enrol(
    const v1::EnrolRequest& req) {
  return Finish(req, /*time_only=*/false);
}

absl::StatusOr<v1::EnrolResponse> Bootstrapper::Time(
    const v1::EnrolRequest& req) {
  return Finish(req, /*time_only=*/true);
}

absl::StatusOr<v1::EnrolResponse> Bootstrapper::Finish(
    const v1::EnrolRequest& req, bool time_only) {
  // Structure first: nothing here needs the session.
  if (req.version() != kProtocolVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported protocol version ", req.version()));
  }
  if (req.session_id().size() != kSessionIdSize) {
    return absl::InvalidArgumentError("session id must be 16 bytes");
  }
  if (!IsValidImsi(req.imsi())) {
    return absl::InvalidArgumentError("IMSI must be 6 to 15 decimal digits");
  }
  if (req.res().size() > kMaxResSize || req.nonce().size() != kNonceSize ||
      req.mac().size() != kMacSize) {
    return absl::InvalidArgumentError(
        "malformed request: RES at most 16 bytes, nonce and MAC 32 bytes");
  }
  if (time_only) {
    if (!req.csr().empty() || req.has_device_info()) {
      return absl::InvalidArgumentError(
          "a time request carries no CSR and no device info");
    }
  } else if (req.csr().empty() || req.csr().size() > kMaxCsrSize) {
    return absl::InvalidArgumentError("CSR missing or larger than 16 KiB");
  }
  if (!PrintableInfo(req.device_info().imei()) ||
      !PrintableInfo(req.device_info().iccid())) {
    return absl::InvalidArgumentError(
        "device info: IMEI and ICCID must be at most 32 letters or digits");
  }
  if (req.broker_identity().empty() || req.broker_identity().size() > 255) {
    return absl::InvalidArgumentError("broker identity missing");
  }
  const std::string& imsi = req.imsi();
  const char* const action = time_only ? "time" : "bootstrap";
  // Which names the broker answers to is no secret, and the answer must not
  // depend on the session: checked before it, it is the same for every IMSI.
  if (!options_.names.contains(req.broker_identity())) {
    return Refuse(
        action, imsi,
        absl::InvalidArgumentError(absl::StrCat(
            "broker identity '", req.broker_identity(),
            "' is not a name of this broker (use its listen host or a "
            "--public-name)")),
        "unknown broker identity");
  }

  // From here until the MAC verifies, a decoy session takes the same steps
  // and gets the same answers as a real one: nothing depends on whether the
  // IMSI is known or active.
  const absl::Status auth_failed =
      absl::UnauthenticatedError("authentication failed");
  // Uses the session up, whatever follows.
  auto taken = sessions_->Take(ToBytes(req.session_id()));
  if (!taken.ok()) return taken.status();
  std::optional<Session>& s = *taken;
  if (!s) {
    return Refuse(action, imsi,
                  absl::UnauthenticatedError("unknown or already used session"),
                  "unknown or already used session");
  }
  if (s->imsi != imsi) {
    return Refuse(action, imsi, auth_failed, "session belongs to another IMSI");
  }
  const absl::Time now = clock_.Now();
  if (now - s->created > options_.session_ttl) {
    return Refuse(action, imsi, absl::UnauthenticatedError("session expired"),
                  "session expired");
  }
  // Both comparisons are constant-time; the lengths are not secret. A
  // decoy's XRES comes from throwaway keys; it is refused even if matched.
  const Bytes res = ToBytes(req.res());
  const bool res_matches = ResMatches(*s, res);
  if (!res_matches || s->decoy) {
    return Refuse(action, imsi, auth_failed,
                  s->decoy ? s->decoy_reason : "RES does not match");
  }
  SessionKeys keys =
      DeriveSessionKeys(s->ck, s->ik, s->rand, imsi, req.broker_identity());
  EnrolTranscript t;
  t.version = req.version();
  t.broker_identity = req.broker_identity();
  t.session_id = s->id;
  t.imsi = imsi;
  t.rand = s->rand;
  t.autn = s->autn;
  t.res = res;
  t.nonce = ToBytes(req.nonce());
  t.csr_der = ToBytes(req.csr());
  t.imei = req.device_info().imei();
  t.iccid = req.device_info().iccid();
  const Bytes encoded =
      EncodeTranscript(t, time_only ? kTimeLabel : kEnrolLabel);
  if (!ConstantTimeEqual(TranscriptMac(keys, encoded), ToBytes(req.mac()))) {
    return Refuse(action, imsi, auth_failed, "request MAC does not verify");
  }
  if (time_only) {
    v1::Answer answer;
    answer.set_request_hash(ToString(Sha256(encoded)));
    answer.set_server_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
    std::string plain;
    answer.SerializeToString(&plain);
    v1::EnrolResponse resp;
    resp.set_sealed_answer(
        ToString(SealAnswer(keys, Sha256(encoded), ToBytes(plain), random_)));
    LogInfo("time: IMSI %s authenticated", imsi);
    if (options_.metrics) options_.metrics->Succeeded("time");
    return resp;
  }

  auto sub = store_.GetSubscriber(imsi);
  if (!sub.ok()) return absl::UnavailableError(sub.status().message());
  // A fresh device is named after its IMSI. (A replaced SIM that is
  // reactivated got a device id of its own at `subscribers resume`.)
  const std::string new_device_id = s->device_id.empty() ? imsi : s->device_id;
  auto issued = Issue(*sub, new_device_id, t.imei, t.csr_der, "bootstrap",
                      t.imei.empty() ? "" : absl::StrCat(" imei=", t.imei));
  if (!issued.ok()) return issued.status();
  const CertificateRecord& record = *issued;
  const std::string& device_id = record.device_id;

  v1::Answer answer;
  answer.set_request_hash(ToString(Sha256(encoded)));
  answer.add_chain(ToString(record.der));
  for (const Bytes& der : ca_.ChainDer()) answer.add_chain(ToString(der));
  for (const Bytes& der : ca_.TrustAnchorsDer()) {
    answer.add_trust_anchors(ToString(der));
  }
  answer.set_server_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
  answer.set_device_id(device_id);
  if (options_.issuance != nullptr) {
    answer.set_registry_info_json(options_.issuance->RegistryInfo(record));
  }
  std::string plain;
  answer.SerializeToString(&plain);
  v1::EnrolResponse resp;
  resp.set_sealed_answer(
      ToString(SealAnswer(keys, Sha256(encoded), ToBytes(plain), random_)));
  LogInfo("enrol: IMSI %s issued serial %s (device %s)", imsi, record.serial,
          device_id);
  if (options_.metrics) options_.metrics->Succeeded("bootstrap");
  return resp;
}

absl::StatusOr<CertificateRecord> Bootstrapper::Issue(
    const SubscriberRecord& sub, const std::string& device_id,
    const std::string& imei, const Bytes& csr_der, absl::string_view action,
    absl::string_view detail, const std::string& renewed_from) {
  const std::string& imsi = sub.imsi;
  auto csr = ParseAndVerifyCsr(csr_der);
  if (!csr.ok()) {
    return Refuse(action, imsi, csr.status(),
                  absl::StrCat("bad CSR: ", csr.status().message()));
  }
  std::shared_ptr<const GroupPolicy> policy;
  if (options_.policies != nullptr) {
    auto p = options_.policies->Get(sub.group);
    if (!p.ok()) {
      LogError("IMSI %s: group %s: %s", imsi, sub.group, p.status().message());
      return absl::UnavailableError("group policy unavailable");
    }
    policy = *p;
  } else {
    policy = std::make_shared<const GroupPolicy>(ImplicitPolicy(sub.group));
  }
  if (!policy->AllowsKeyType(csr->key_type)) {
    return Refuse(action, imsi,
                  absl::InvalidArgumentError(
                      absl::StrCat("key type ", csr->key_type,
                                   " is not allowed for group ", sub.group)),
                  absl::StrCat("key type ", csr->key_type, " not allowed"));
  }
  if (action == "bootstrap") {
    if (absl::Status s = CheckImei(sub, *policy, imei); !s.ok()) return s;
  }
  TemplateValues values;
  values.device_id = device_id;
  values.imsi = imsi;
  values.imei = imei.empty() ? sub.imei : imei;
  values.iccid = sub.iccid;
  values.msisdn = sub.msisdn;
  values.group = sub.group;
  DeviceCertRequest cert_req;
  cert_req.public_key = csr->public_key.get();
  cert_req.common_name = imsi;
  cert_req.device_id_uri = DeviceIdUri(device_id);
  cert_req.ttl = policy->cert_ttl.value_or(options_.cert_ttl);
  absl::Status expanded = absl::OkStatus();
  auto subject = ExpandSubject(*policy, values);
  if (subject.ok()) {
    cert_req.subject = std::move(*subject);
  } else {
    expanded = subject.status();
  }
  for (const std::string& t : policy->san_dns_templates) {
    auto v = ExpandTemplate(t, values);
    if (!v.ok()) expanded.Update(v.status());
    if (v.ok()) cert_req.dns_names.push_back(std::move(*v));
  }
  for (const std::string& t : policy->san_uri_templates) {
    auto v = ExpandTemplate(t, values);
    if (!v.ok()) expanded.Update(v.status());
    if (v.ok()) cert_req.uris.push_back(std::move(*v));
  }
  if (!expanded.ok()) {
    return Refuse(action, imsi,
                  absl::FailedPreconditionError(absl::StrCat(
                      "group ", sub.group, " policy: ", expanded.message())),
                  absl::StrCat("policy: ", expanded.message()));
  }
  if (options_.crl != nullptr) cert_req.crl_url = options_.crl->Url();
  // Registries: the issue hook may refuse before signing.
  IssuanceContext hook_ctx;
  std::string hook_details;
  if (options_.issuance != nullptr) {
    hook_ctx.action = std::string(action);
    hook_ctx.subscriber = &sub;
    hook_ctx.policy = policy.get();
    hook_ctx.values = values;
    hook_ctx.public_key = csr->public_key.get();
    auto decision = options_.issuance->BeforeSigning(hook_ctx);
    if (!decision.ok()) {
      return Refuse(action, imsi, decision.status(),
                    absl::StrCat("issue hook: ", decision.status().message()));
    }
    hook_details = *decision;
  }
  auto cert = ca_.IssueDevice(cert_req);
  if (!cert.ok()) {
    LogError("IMSI %s: signing failed: %s", imsi, cert.status().message());
    if (cert.status().code() == absl::StatusCode::kInvalidArgument) {
      return Refuse(
          action, imsi,
          absl::FailedPreconditionError(absl::StrCat(
              "group ", sub.group, " policy gives an unusable certificate: ",
              cert.status().message())),
          absl::StrCat("policy: ", cert.status().message()));
    }
    if (cert.status().code() == absl::StatusCode::kUnavailable) {
      // The CA key's HSM does not answer: the device retries later.
      return absl::UnavailableError("certificate signing unavailable");
    }
    return absl::InternalError("certificate signing failed");
  }
  const absl::Time now = clock_.Now();
  const CertInfo& info = cert->info;
  CertificateRecord record;
  record.serial = info.serial_hex;
  record.imsi = imsi;
  record.device_id = device_id;
  record.not_before = info.not_before;
  record.not_after = info.not_after;
  record.der = std::move(cert->der);
  record.issued_at = now;
  record.renewed_from = renewed_from;
  std::vector<RegistrationIntent> intents;
  if (options_.issuance != nullptr) {
    auto planned = options_.issuance->Intents(hook_ctx, record, hook_details);
    if (!planned.ok()) {
      return Refuse(action, imsi,
                    absl::FailedPreconditionError(absl::StrCat(
                        "group ", sub.group,
                        " registries: ", planned.status().message())),
                    absl::StrCat("registries: ", planned.status().message()));
    }
    intents = std::move(*planned);
  }
  absl::Status recorded = store_.RecordIssuanceWithIntents(
      record,
      {now, imsi, std::string(action), imsi, "ok",
       absl::StrCat("serial=", info.serial_hex, " device_id=", device_id,
                    " group=", sub.group, " key=", csr->key_type, detail)},
      intents);
  if (!recorded.ok()) {
    if (recorded.code() == absl::StatusCode::kAborted) {
      // Another renewal of the same certificate was recorded first.
      return RefuseSuperseded(imsi, renewed_from);
    }
    if (recorded.code() == absl::StatusCode::kFailedPrecondition) {
      return Refuse(action, imsi,
                    absl::PermissionDeniedError("subscriber is not active"),
                    recorded.message());
    }
    LogError("IMSI %s: store: %s", imsi, recorded.message());
    return absl::UnavailableError("store unavailable; retry");
  }
  if (options_.issuance != nullptr) {
    absl::Status after = options_.issuance->AfterRecorded(hook_ctx, record);
    if (!after.ok()) {
      return Refuse(action, imsi, after, after.message());
    }
  }
  return record;
}

grpc::Status BootstrapGrpcService::Challenge(grpc::ServerContext*,
                                             const v1::ChallengeRequest* req,
                                             v1::ChallengeResponse* resp) {
  auto r = b_.Challenge(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status BootstrapGrpcService::Renew(grpc::ServerContext* ctx,
                                         const v1::RenewRequest* req,
                                         v1::RenewResponse* resp) {
  std::string pem;
  auto auth = ctx->auth_context();
  if (auth) {
    auto values = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (!values.empty()) pem = std::string(values[0].data(), values[0].size());
  }
  auto r = b_.Renew(pem, *req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status BootstrapGrpcService::RenewNonce(grpc::ServerContext*,
                                              const v1::RenewNonceRequest*,
                                              v1::RenewNonceResponse* resp) {
  *resp = b_.RenewNonce();
  return grpc::Status::OK;
}

grpc::Status BootstrapGrpcService::Time(grpc::ServerContext*,
                                        const v1::EnrolRequest* req,
                                        v1::EnrolResponse* resp) {
  auto r = b_.Time(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status BootstrapGrpcService::Enrol(grpc::ServerContext*,
                                         const v1::EnrolRequest* req,
                                         v1::EnrolResponse* resp) {
  auto r = b_.Enrol(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

}  // namespace simprov
