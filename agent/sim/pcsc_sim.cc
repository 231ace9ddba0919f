#include "agent/sim/pcsc_sim.h"

#include <winscard.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "agent/sim/usim_apdu.h"
#include "common/log.h"

namespace simprov {

namespace {

constexpr int kMaxDirRecords = 32;

std::string PcscError(LONG rv) {
  return absl::StrCat(pcsc_stringify_error(rv), " (0x",
                      absl::Hex(static_cast<uint32_t>(rv)), ")");
}

absl::Status Failed(absl::string_view what, LONG rv) {
  return absl::FailedPreconditionError(
      absl::StrCat("PC/SC: ", what, ": ", PcscError(rv)));
}

// "A\0B\0\0" -> {"A", "B"}.
std::vector<std::string> SplitMultiString(const std::vector<char>& buf) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < buf.size() && buf[i] != '\0') {
    std::string s(&buf[i]);
    i += s.size() + 1;
    out.push_back(std::move(s));
  }
  return out;
}

std::string ReaderList(const std::vector<std::string>& readers) {
  return absl::StrCat("readers: ", absl::StrJoin(readers, ", "));
}

class PcscSim : public SimCard {
 public:
  ~PcscSim() override {
    if (connected_) SCardDisconnect(card_, SCARD_LEAVE_CARD);
    SCardReleaseContext(ctx_);
  }

  static absl::StatusOr<std::unique_ptr<PcscSim>> Open(
      absl::string_view wanted);

  absl::StatusOr<std::string> Imsi() override { return imsi_; }
  absl::StatusOr<SimAuthResult> Authenticate(const Bytes& rand,
                                             const Bytes& autn) override;
  DeviceIdentity Identity() override { return identity_; }

 private:
  explicit PcscSim(SCARDCONTEXT ctx) : ctx_(ctx) {}

  absl::Status Connect();
  absl::StatusOr<Bytes> TransmitRaw(const Bytes& apdu);
  absl::StatusOr<usim::Response> Send(const Bytes& apdu) {
    return usim::Transmit([this](const Bytes& a) { return TransmitRaw(a); },
                          apdu);
  }
  // Runs `body` inside a transaction; once more after reconnecting if
  // another program reset the card meanwhile.
  template <typename T, typename F>
  absl::StatusOr<T> InTransaction(F body);

  absl::StatusOr<Bytes> FindUsimAid();
  absl::Status SelectUsim();
  absl::Status ReadFiles();
  absl::StatusOr<Bytes> ReadTransparent(uint16_t fid);

  SCARDCONTEXT ctx_;
  SCARDHANDLE card_ = 0;
  bool connected_ = false;
  DWORD protocol_ = 0;
  bool reset_seen_ = false;
  std::string reader_;
  Bytes aid_;
  std::string imsi_;
  DeviceIdentity identity_;
};

absl::StatusOr<std::unique_ptr<PcscSim>> PcscSim::Open(
    absl::string_view wanted) {
  SCARDCONTEXT ctx;
  LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &ctx);
  if (rv != SCARD_S_SUCCESS) {
    if (rv == SCARD_E_NO_SERVICE) {
      return absl::FailedPreconditionError(
          "PC/SC: pcscd is not running (start it, e.g. systemctl start "
          "pcscd.socket)");
    }
    return Failed("cannot reach pcscd", rv);
  }
  auto sim = std::unique_ptr<PcscSim>(new PcscSim(ctx));

  DWORD len = 0;
  rv = SCardListReaders(ctx, nullptr, nullptr, &len);
  std::vector<std::string> readers;
  if (rv == SCARD_S_SUCCESS) {
    std::vector<char> buf(len + 1, '\0');
    rv = SCardListReaders(ctx, nullptr, buf.data(), &len);
    if (rv == SCARD_S_SUCCESS) readers = SplitMultiString(buf);
  }
  if (rv == SCARD_E_NO_READERS_AVAILABLE ||
      (rv == SCARD_S_SUCCESS && readers.empty())) {
    return absl::FailedPreconditionError(
        "PC/SC: no smart-card reader found (is it plugged in?)");
  }
  if (rv != SCARD_S_SUCCESS) return Failed("cannot list readers", rv);

  std::vector<std::string> candidates;
  if (wanted.empty()) {
    candidates = readers;
  } else {
    for (const std::string& r : readers) {
      if (r == wanted) candidates = {r};
    }
    if (candidates.empty()) {
      for (const std::string& r : readers) {
        if (absl::StrContains(r, wanted)) candidates.push_back(r);
      }
    }
    if (candidates.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PC/SC: no reader named '", wanted, "' (", ReaderList(readers), ")"));
    }
    if (candidates.size() > 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("PC/SC: '", wanted, "' names several readers (",
                       ReaderList(candidates), "); give the full name"));
    }
  }
  std::vector<SCARD_READERSTATE> states(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    states[i] = {};
    states[i].szReader = candidates[i].c_str();
    states[i].dwCurrentState = SCARD_STATE_UNAWARE;
  }
  rv = SCardGetStatusChange(ctx, 0, states.data(),
                            static_cast<DWORD>(states.size()));
  if (rv != SCARD_S_SUCCESS && rv != SCARD_E_TIMEOUT) {
    return Failed("cannot read the readers' state", rv);
  }
  for (size_t i = 0; i < states.size(); ++i) {
    const DWORD s = states[i].dwEventState;
    if ((s & SCARD_STATE_PRESENT) && !(s & SCARD_STATE_MUTE)) {
      sim->reader_ = candidates[i];
      break;
    }
  }
  if (sim->reader_.empty()) {
    if (!wanted.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("PC/SC: no card in reader '", candidates[0], "'"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "PC/SC: no card in any reader (", ReaderList(readers), ")"));
  }
  if (absl::Status s = sim->Connect(); !s.ok()) return s;
  auto read = sim->InTransaction<bool>([&]() -> absl::StatusOr<bool> {
    if (absl::Status s = sim->ReadFiles(); !s.ok()) return s;
    return true;
  });
  if (!read.ok()) return read.status();
  LogDebug("PC/SC: USIM in '%s', IMSI %s", sim->reader_, sim->imsi_);
  return sim;
}

absl::Status PcscSim::Connect() {
  if (connected_) {
    SCardDisconnect(card_, SCARD_LEAVE_CARD);
    connected_ = false;
  }
  LONG rv =
      SCardConnect(ctx_, reader_.c_str(), SCARD_SHARE_SHARED,
                   SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card_, &protocol_);
  if (rv == SCARD_E_SHARING_VIOLATION) {
    return absl::FailedPreconditionError(
        absl::StrCat("PC/SC: the card in '", reader_,
                     "' is held exclusively by another program"));
  }
  if (rv != SCARD_S_SUCCESS) {
    return Failed(absl::StrCat("cannot connect to the card in '", reader_, "'"),
                  rv);
  }
  connected_ = true;
  return absl::OkStatus();
}

absl::StatusOr<Bytes> PcscSim::TransmitRaw(const Bytes& apdu) {
  const bool t1 = protocol_ == SCARD_PROTOCOL_T1;
  // In T=0 a case 4 command goes without Le (ISO 7816-3 12.2.4): the card
  // answers 61xx and GET RESPONSE fetches the data.
  DWORD n = static_cast<DWORD>(apdu.size());
  if (!t1 && apdu.size() > 5 && apdu[4] != 0 && apdu.size() == 6u + apdu[4]) {
    --n;
  }
  Bytes out(MAX_BUFFER_SIZE_EXTENDED);
  DWORD len = static_cast<DWORD>(out.size());
  LONG rv = SCardTransmit(card_, t1 ? SCARD_PCI_T1 : SCARD_PCI_T0, apdu.data(),
                          n, nullptr, out.data(), &len);
  if (rv == SCARD_W_RESET_CARD) {
    reset_seen_ = true;
    return absl::AbortedError("PC/SC: the card was reset by another program");
  }
  if (rv == SCARD_W_REMOVED_CARD || rv == SCARD_E_NO_SMARTCARD) {
    return absl::FailedPreconditionError(
        absl::StrCat("PC/SC: the card was removed from '", reader_, "'"));
  }
  if (rv != SCARD_S_SUCCESS) {
    return Failed(absl::StrCat("transmit to the card in '", reader_, "'"), rv);
  }
  out.resize(len);
  return out;
}

template <typename T, typename F>
absl::StatusOr<T> PcscSim::InTransaction(F body) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    reset_seen_ = false;
    LONG rv = SCardBeginTransaction(card_);
    if (rv == SCARD_W_RESET_CARD && attempt == 0) {
      LONG r2 = SCardReconnect(card_, SCARD_SHARE_SHARED,
                               SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                               SCARD_LEAVE_CARD, &protocol_);
      if (r2 != SCARD_S_SUCCESS) return Failed("reconnect", r2);
      continue;
    }
    if (rv == SCARD_W_REMOVED_CARD || rv == SCARD_E_NO_SMARTCARD) {
      return absl::FailedPreconditionError(
          absl::StrCat("PC/SC: the card was removed from '", reader_, "'"));
    }
    if (rv != SCARD_S_SUCCESS) return Failed("begin transaction", rv);
    absl::StatusOr<T> result = body();
    SCardEndTransaction(card_, SCARD_LEAVE_CARD);
    if (!reset_seen_ || attempt == 1) return result;
    LONG r2 = SCardReconnect(card_, SCARD_SHARE_SHARED,
                             SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                             SCARD_LEAVE_CARD, &protocol_);
    if (r2 != SCARD_S_SUCCESS) return Failed("reconnect", r2);
  }
  return absl::FailedPreconditionError(
      absl::StrCat("PC/SC: the card in '", reader_, "' keeps being reset"));
}

absl::StatusOr<Bytes> PcscSim::FindUsimAid() {
  auto r = Send(usim::BuildSelectFid(usim::kFidMf));
  if (!r.ok()) return r.status();
  if (r->sw != usim::kSwOk) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PC/SC: the card in '", reader_, "' is not a UICC: SELECT MF gives ",
        usim::DescribeSw(r->sw)));
  }
  r = Send(usim::BuildSelectFid(usim::kFidEfDir));
  if (!r.ok()) return r.status();
  if (r->sw == usim::kSwOk) {
    const usim::FileInfo info = usim::ParseFcp(r->data);
    const int count =
        info.record_count > 0 ? info.record_count : kMaxDirRecords;
    const uint8_t le = static_cast<uint8_t>(info.record_length & 0xFF);
    for (int i = 1; i <= count; ++i) {
      auto rec = Send(usim::BuildReadRecord(static_cast<uint8_t>(i), le));
      if (!rec.ok()) return rec.status();
      if (rec->sw == 0x6A83) break;  // no more records
      if (rec->sw != usim::kSwOk) {
        return absl::FailedPreconditionError(
            absl::StrCat("PC/SC: reading EF_DIR record ", i, " gives ",
                         usim::DescribeSw(rec->sw)));
      }
      auto aid = usim::AidFromDirRecord(rec->data);
      if (!aid.ok()) continue;  // a malformed record; look at the others
      if (usim::IsUsimAid(*aid)) return *aid;
    }
  }
  // No EF_DIR, or no USIM in it: cards also accept the partial AID.
  auto p = Send(usim::BuildSelectAid(usim::UsimAidPrefix()));
  if (!p.ok()) return p.status();
  if (p->sw == usim::kSwOk) return usim::UsimAidPrefix();
  return absl::FailedPreconditionError(
      absl::StrCat("PC/SC: the card in '", reader_,
                   "' holds no USIM application (a 2G SIM, or not a SIM?)"));
}

absl::Status PcscSim::SelectUsim() {
  auto r = Send(usim::BuildSelectAid(aid_));
  if (!r.ok()) return r.status();
  if (r->sw != usim::kSwOk) {
    return absl::FailedPreconditionError(
        absl::StrCat("PC/SC: selecting the USIM application gives ",
                     usim::DescribeSw(r->sw)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Bytes> PcscSim::ReadTransparent(uint16_t fid) {
  auto r = Send(usim::BuildSelectFid(fid));
  if (!r.ok()) return r.status();
  if (r->sw != usim::kSwOk) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "PC/SC: selecting EF %04X gives %s", fid, usim::DescribeSw(r->sw)));
  }
  const usim::FileInfo info = usim::ParseFcp(r->data);
  const uint8_t le =
      info.size > 0 && info.size < 256 ? static_cast<uint8_t>(info.size) : 0;
  r = Send(usim::BuildReadBinary(le));
  if (!r.ok()) return r.status();
  if (r->sw != usim::kSwOk) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "PC/SC: reading EF %04X gives %s", fid, usim::DescribeSw(r->sw)));
  }
  return r->data;
}

absl::Status PcscSim::ReadFiles() {
  auto aid = FindUsimAid();
  if (!aid.ok()) return aid.status();
  aid_ = *aid;
  // EF_ICCID lives under the MF, which FindUsimAid left selected (unless
  // the partial-AID fallback ran); optional either way.
  if (auto mf = Send(usim::BuildSelectFid(usim::kFidMf));
      mf.ok() && mf->sw == usim::kSwOk) {
    if (auto ef = ReadTransparent(usim::kFidEfIccid); ef.ok()) {
      if (auto iccid = usim::DecodeIccid(*ef); iccid.ok()) {
        identity_.iccid = *iccid;
      }
    }
  }
  if (absl::Status s = SelectUsim(); !s.ok()) return s;
  auto ef = ReadTransparent(usim::kFidEfImsi);
  if (!ef.ok()) return ef.status();
  auto imsi = usim::DecodeImsi(*ef);
  if (!imsi.ok()) return imsi.status();
  imsi_ = *imsi;
  return absl::OkStatus();
}

absl::StatusOr<SimAuthResult> PcscSim::Authenticate(const Bytes& rand,
                                                    const Bytes& autn) {
  auto apdu = usim::BuildAuthenticate(rand, autn, /*with_le=*/true);
  if (!apdu.ok()) return apdu.status();
  return InTransaction<SimAuthResult>([&]() -> absl::StatusOr<SimAuthResult> {
    if (absl::Status s = SelectUsim(); !s.ok()) return s;
    auto r = Send(*apdu);
    if (!r.ok()) return r.status();
    return usim::ParseAuthenticateResponse(*r);
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<SimCard>> OpenPcscSim(absl::string_view reader) {
  auto sim = PcscSim::Open(reader);
  if (!sim.ok()) return sim.status();
  return std::unique_ptr<SimCard>(std::move(*sim));
}

}  // namespace simprov
