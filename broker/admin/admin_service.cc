#include "broker/admin/admin_service.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "broker/admin/admin_auth.h"
#include "broker/policy/policy.h"
#include "common/grpc_status.h"
#include "common/imsi.h"
#include "common/log.h"
#include "common/sealed_box.h"
#include "common/sqn.h"

namespace simprov {

namespace {

bool AllDigits(absl::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

absl::Status LineError(uint64_t line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

void FillSubscriber(const SubscriberRecord& r, v1::Subscriber* out) {
  out->set_imsi(r.imsi);
  out->set_group(r.group);
  out->set_status(r.status);
  out->set_device_id(r.device_id);
  out->set_iccid(r.iccid);
  out->set_msisdn(r.msisdn);
  out->set_amf(HexEncode(r.amf));
  out->set_sqn(r.last_sqn);
  out->set_created_unix(absl::ToUnixSeconds(r.created_at));
}

}  // namespace

absl::StatusOr<NewSubscriber> ValidateImportRow(const v1::ImportRow& row,
                                                const Bytes& kek,
                                                Random& random) {
  const uint64_t line = row.line();
  NewSubscriber s;
  if (!IsValidImsi(row.imsi())) {
    return LineError(line, "imsi must be 6 to 15 decimal digits");
  }
  s.imsi = row.imsi();
  auto k = HexDecode(row.ki());
  if (!k.ok() || k->size() != 16) {
    return LineError(line, "ki must be 32 hex digits (16 bytes)");
  }
  auto opc = HexDecode(row.opc());
  if (!opc.ok() || opc->size() != 16) {
    SecureWipe(*k);
    return LineError(line, "opc must be 32 hex digits (16 bytes)");
  }
  if (row.amf().empty()) {
    s.amf = {static_cast<uint8_t>(kDefaultAmf >> 8),
             static_cast<uint8_t>(kDefaultAmf & 0xff)};
  } else {
    auto amf = HexDecode(row.amf());
    if (!amf.ok() || amf->size() != 2) {
      return LineError(line, "amf must be 4 hex digits (2 bytes)");
    }
    s.amf = *amf;
  }
  if (!row.sqn().empty()) {
    uint64_t sqn = 0;
    if (!AllDigits(row.sqn()) || !absl::SimpleAtoi(row.sqn(), &sqn) ||
        sqn > kSqnMask) {
      return LineError(line, "sqn must be a decimal number below 2^48");
    }
    s.sqn.seq_he = SeqOf(sqn);
    s.sqn.next_ind = (IndOf(sqn) + 1) % kIndSlots;
  }
  if (!row.group().empty()) {
    if (!IsValidGroupName(row.group())) {
      return LineError(line,
                       "group must be 1-64 letters, digits, '-', '_' or '.'");
    }
    s.group = row.group();
  }
  if (!row.iccid().empty()) {
    std::string iccid = absl::AsciiStrToUpper(row.iccid());
    bool ok = iccid.size() >= 18 && iccid.size() <= 22;
    for (size_t i = 0; ok && i < iccid.size(); ++i) {
      ok = absl::ascii_isdigit(iccid[i]) ||
           (i + 1 == iccid.size() && iccid[i] == 'F');
    }
    if (!ok) return LineError(line, "iccid must be 18 to 22 digits");
    s.iccid = iccid;
  }
  if (!row.msisdn().empty()) {
    absl::string_view m = row.msisdn();
    if (m.front() == '+') m.remove_prefix(1);
    if (m.empty() || m.size() > 15 || !AllDigits(m)) {
      return LineError(line, "msisdn must be up to 15 digits");
    }
    s.msisdn = row.msisdn();
  }
  Bytes keys = *k;
  keys.insert(keys.end(), opc->begin(), opc->end());
  s.sealed_keys = SealBox(kek, keys, ToBytes(s.imsi), random);
  SecureWipe(keys);
  SecureWipe(*k);
  SecureWipe(*opc);
  return s;
}

grpc::Status AdminGrpcService::ImportSubscribers(
    grpc::ServerContext* ctx, grpc::ServerReader<v1::ImportBatch>* reader,
    v1::ImportResult* result) {
  auto actor = auth_.Authorize(ctx, "Admin.ImportSubscribers");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  auto import = store_.BeginImport();
  if (!import.ok()) return ToGrpcStatus(import.status());
  v1::ImportBatch batch;
  uint64_t rows = 0;
  bool ended = false;
  uint64_t announced = 0;
  uint64_t skipped = 0;
  bool first = true;
  bool skip_existing = false;
  std::set<std::string> known_groups;
  while (reader->Read(&batch)) {
    if (ended) {
      return ToGrpcStatus(
          absl::InvalidArgumentError("import: rows after the end marker"));
    }
    if (first) skip_existing = batch.skip_existing();
    first = false;
    for (const v1::ImportRow& row : batch.rows()) {
      auto s = ValidateImportRow(row, *kek_.SealingKey(), random_);
      if (!s.ok()) {
        LogWarning("import rejected: %s", s.status().message());
        return ToGrpcStatus(s.status());
      }
      if (skip_existing) {
        // Only committed subscribers count as existing: an IMSI twice in
        // this import still fails it below.
        auto existing = store_.GetSubscriber(s->imsi);
        if (existing.ok()) {
          ++skipped;
          ++rows;
          continue;
        }
        if (!absl::IsNotFound(existing.status())) {
          return ToGrpcStatus(existing.status());
        }
      }
      if (s->group != kDefaultGroup && !known_groups.contains(s->group)) {
        auto g = store_.GetGroup(s->group);
        if (!g.ok()) {
          absl::Status err =
              g.status().code() == absl::StatusCode::kNotFound
                  ? LineError(row.line(),
                              absl::StrCat("group ", s->group,
                                           " does not exist (create it with "
                                           "simprov groups apply first)"))
                  : g.status();
          LogWarning("import rejected: %s", err.message());
          return ToGrpcStatus(err);
        }
        known_groups.insert(s->group);
      }
      absl::Status added = (*import)->Add(*s);
      if (!added.ok()) {
        absl::Status err =
            added.code() == absl::StatusCode::kAlreadyExists
                ? LineError(row.line(),
                            absl::StrCat("duplicate IMSI ", row.imsi()))
                : added;
        LogWarning("import rejected: %s", err.message());
        return ToGrpcStatus(err);
      }
      ++rows;
    }
    if (batch.end()) {
      ended = true;
      announced = batch.total_rows();
    }
  }
  if (!ended || announced != rows) {
    // The client gave up or the stream was cut: roll everything back.
    return ToGrpcStatus(absl::AbortedError(
        "import incomplete (stream ended early); nothing was imported"));
  }
  auto committed = (*import)->Commit();
  if (!committed.ok()) return ToGrpcStatus(committed.status());
  (void)store_.AppendAudit({clock_.Now(), *actor, "import", "", "ok",
                            skip_existing
                                ? absl::StrCat(*committed, " subscribers, ",
                                               skipped, " existing skipped")
                                : absl::StrCat(*committed, " subscribers")});
  LogInfo("imported %d subscribers (%d existing skipped)", *committed, skipped);
  result->set_imported(*committed);
  result->set_skipped(skipped);
  return grpc::Status::OK;
}

grpc::Status AdminGrpcService::ListSubscribers(
    grpc::ServerContext* ctx, const v1::ListSubscribersRequest* req,
    grpc::ServerWriter<v1::Subscriber>* writer) {
  auto actor = auth_.Authorize(ctx, "Admin.ListSubscribers");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  SubscriberFilter filter;
  filter.group = req->group();
  filter.after = req->after();
  filter.limit = req->limit();
  absl::Status s =
      store_.ListSubscribersPage(filter, [&](const SubscriberRecord& r) {
        v1::Subscriber out;
        FillSubscriber(r, &out);
        return !ctx->IsCancelled() && writer->Write(out);
      });
  return ToGrpcStatus(s);
}

grpc::Status AdminGrpcService::GetSubscriber(
    grpc::ServerContext* ctx, const v1::GetSubscriberRequest* req,
    v1::Subscriber* resp) {
  auto actor = auth_.Authorize(ctx, "Admin.GetSubscriber");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  if (!IsValidImsi(req->imsi())) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("IMSI must be 6 to 15 decimal digits"));
  }
  auto r = store_.GetSubscriber(req->imsi());
  if (!r.ok()) return ToGrpcStatus(r.status());
  FillSubscriber(*r, resp);
  auto certs = store_.CertificatesOf(req->imsi());
  if (!certs.ok()) return ToGrpcStatus(certs.status());
  for (const CertificateRecord& c : *certs) {
    v1::Certificate* out = resp->add_certificates();
    out->set_serial(c.serial);
    out->set_not_before_unix(absl::ToUnixSeconds(c.not_before));
    out->set_not_after_unix(absl::ToUnixSeconds(c.not_after));
    out->set_status(c.status);
  }
  return grpc::Status::OK;
}

}  // namespace simprov
