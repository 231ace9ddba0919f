// Bootstrapper's renewal: over mutual TLS with the current certificate, or
// with an in-band proof of possession (a hardware key that TLS cannot use),
// and the answers to a superseded certificate.
#include "absl/strings/str_cat.h"
#include "broker/enrol/bootstrap_service.h"
#include "common/csr.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/imsi.h"
#include "common/log.h"
#include "common/x509.h"

namespace simprov {

v1::RenewNonceResponse Bootstrapper::RenewNonce() {
  v1::RenewNonceResponse resp;
  resp.set_nonce(ToString(nonces_.Issue(clock_.Now())));
  return resp;
}

absl::StatusOr<v1::RenewResponse> Bootstrapper::Renew(
    const std::string& client_cert_pem, const v1::RenewRequest& req) {
  if (!HasInBandProof(req)) return RenewWithCertificate(client_cert_pem, req);
  // One way per request: a TLS client certificate and an in-band proof
  // together are refused rather than one of them silently ignored.
  if (!client_cert_pem.empty()) {
    return absl::InvalidArgumentError(
        "a renewal over mutual TLS carries no in-band proof");
  }
  auto pem = VerifyInBandRenewal(req, nonces_, options_.names, clock_.Now());
  if (!pem.ok()) {
    LogWarning("renew: in-band proof refused: %s", pem.status().message());
    return pem.status();
  }
  return RenewWithCertificate(*pem, req);
}

absl::StatusOr<v1::RenewResponse> Bootstrapper::RenewWithCertificate(
    const std::string& client_cert_pem, const v1::RenewRequest& req) {
  if (client_cert_pem.empty()) {
    return absl::UnauthenticatedError(
        "no client certificate: renewal needs the current device certificate "
        "over mutual TLS");
  }
  if (req.csr().empty() || req.csr().size() > kMaxCsrSize) {
    return absl::InvalidArgumentError("CSR missing or larger than 16 KiB");
  }
  auto leaf = CertFromPem(client_cert_pem);
  if (!leaf.ok()) {
    return absl::UnauthenticatedError("client certificate does not parse");
  }
  const absl::Time now = clock_.Now();
  absl::Status chain = ca_.VerifyIssued(leaf->get(), now, "sslclient");
  CertInfo info = DescribeCert(leaf->get());
  if (!chain.ok()) {
    LogWarning("renew: serial %s refused: %s", info.serial_hex,
               chain.message());
    return absl::UnauthenticatedError(
        now >= info.not_after
            ? "certificate has expired: bootstrap again with the SIM"
            : absl::StrCat("client certificate not issued by this broker: ",
                           chain.message()));
  }
  auto record = store_.GetCertificate(info.serial_hex);
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError("certificate unknown to this broker");
    }
    return absl::UnavailableError(record.status().message());
  }
  const std::string imsi = record->imsi;
  if (record->status != "valid") {
    return Refuse("renew", imsi,
                  absl::PermissionDeniedError(absl::StrCat(
                      "certificate ", info.serial_hex, " was ", record->status,
                      record->revocation_reason.empty()
                          ? ""
                          : absl::StrCat(" (", record->revocation_reason, ")"),
                      ": bootstrap again with the SIM")),
                  absl::StrCat("renewal with ", record->status, " certificate ",
                               info.serial_hex));
  }
  auto sub = store_.GetSubscriber(imsi);
  if (!sub.ok()) return absl::UnavailableError(sub.status().message());
  if (sub->status != kStatusActive) {
    return Refuse("renew", imsi,
                  absl::PermissionDeniedError(
                      absl::StrCat("subscriber is ", sub->status)),
                  absl::StrCat("renewal refused: subscriber is ", sub->status));
  }
  absl::StatusOr<CertificateRecord> issued;
  if (record->superseded_at != absl::UnixEpoch()) {
    issued = RenewSuperseded(*record, ToBytes(req.csr()));
  } else {
    const std::string device_id =
        sub->device_id.empty() ? record->device_id : sub->device_id;
    issued =
        Issue(*sub, device_id, "", ToBytes(req.csr()), "renew",
              absl::StrCat(" previous=", info.serial_hex), info.serial_hex);
  }
  if (!issued.ok()) return issued.status();
  v1::RenewResponse resp;
  resp.add_chain(ToString(issued->der));
  for (const Bytes& der : ca_.ChainDer()) resp.add_chain(ToString(der));
  for (const Bytes& der : ca_.TrustAnchorsDer()) {
    resp.add_trust_anchors(ToString(der));
  }
  resp.set_server_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
  resp.set_device_id(issued->device_id);
  if (options_.issuance != nullptr) {
    resp.set_registry_info_json(options_.issuance->RegistryInfo(*issued));
  }
  LogInfo("renew: IMSI %s serial %s renewed as %s", imsi, info.serial_hex,
          issued->serial);
  if (options_.metrics) options_.metrics->Succeeded("renew");
  return resp;
}

absl::Status Bootstrapper::RefuseSuperseded(const std::string& imsi,
                                            const std::string& serial) {
  LogWarning(
      "renew: IMSI %s presented superseded certificate %s: suspected clone "
      "of the device's key",
      imsi, serial);
  if (options_.metrics) options_.metrics->RenewalRefused("superseded");
  return Refuse("renew", imsi, absl::PermissionDeniedError("superseded"),
                "superseded");
}

absl::StatusOr<CertificateRecord> Bootstrapper::RenewSuperseded(
    const CertificateRecord& presented, const Bytes& csr_der) {
  const std::string& imsi = presented.imsi;
  auto csr = ParseAndVerifyCsr(csr_der);
  if (!csr.ok()) {
    return Refuse("renew", imsi, csr.status(),
                  absl::StrCat("bad CSR: ", csr.status().message()));
  }
  auto renewals = store_.RenewalsOf(presented.serial);
  if (!renewals.ok()) return absl::UnavailableError("store unavailable; retry");
  const absl::Time now = clock_.Now();
  for (const CertificateRecord& c : *renewals) {
    // Still the device's current certificate, issued moments ago for the
    // very key this request asks for: the same renewal, its answer lost.
    if (c.status != "valid" || c.superseded_at != absl::UnixEpoch() ||
        now - c.issued_at > kRenewalRetryWindow || now < c.issued_at) {
      continue;
    }
    auto cert = CertFromDer(c.der);
    if (!cert.ok()) continue;
    if (!SamePublicKey(csr->public_key.get(), X509_get0_pubkey(cert->get()))) {
      continue;
    }
    LogInfo("renew: IMSI %s: renewal of %s asked again; answering %s again",
            imsi, presented.serial, c.serial);
    (void)store_.AppendAudit(
        {now, imsi, "renew", imsi, "ok",
         absl::StrCat("serial=", c.serial, " previous=", presented.serial,
                      " repeated (same key within ",
                      absl::FormatDuration(kRenewalRetryWindow), ")")});
    return c;
  }
  return RefuseSuperseded(imsi, presented.serial);
}

}  // namespace simprov
