#include "test/testing/virtual_usim.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "common/aka.h"

namespace simprov::testing {

namespace {

constexpr uint16_t kSw9000 = 0x9000;
constexpr uint8_t kDirRecordLength = 32;
constexpr uint8_t kDirRecords = 3;  // ISIM, USIM, erased

Milenage MakeMilenage(const TestSim& sim) {
  auto k = HexDecode(sim.k);
  auto opc = HexDecode(sim.opc);
  if (!k.ok() || !opc.ok()) {
    std::cerr << "VirtualUsim: K/OPc are not hex\n";
    std::abort();
  }
  auto m = Milenage::Create(*k, *opc);
  if (!m.ok()) {
    std::cerr << "VirtualUsim: " << m.status() << "\n";
    std::abort();
  }
  return std::move(*m);
}

Bytes Sw(uint16_t sw) {
  return {static_cast<uint8_t>(sw >> 8), static_cast<uint8_t>(sw & 0xFF)};
}

Bytes Sw(uint8_t sw1, uint8_t sw2) { return {sw1, sw2}; }

Bytes AppRecord(const Bytes& aid, const std::string& label) {
  Bytes inner = {0x4F, static_cast<uint8_t>(aid.size())};
  inner.insert(inner.end(), aid.begin(), aid.end());
  inner.push_back(0x50);
  inner.push_back(static_cast<uint8_t>(label.size()));
  inner.insert(inner.end(), label.begin(), label.end());
  Bytes rec = {0x61, static_cast<uint8_t>(inner.size())};
  rec.insert(rec.end(), inner.begin(), inner.end());
  rec.resize(kDirRecordLength, 0xFF);
  return rec;
}

const Bytes& IsimAid() {
  static const Bytes* const aid = new Bytes{0xA0, 0x00, 0x00, 0x00, 0x87, 0x10,
                                            0x04, 0xFF, 0x49, 0xFF, 0x05, 0x89};
  return *aid;
}

// Case 2 (data out only): the answer comes at once when Le is right (00
// means "all" in T=1); otherwise 6C with the right length.
Bytes ReadAnswer(const Bytes& content, const Bytes& apdu, bool t0) {
  if (apdu.size() != 5) return Sw(0x6700);
  const size_t le = apdu[4];
  if (le == content.size() || (le == 0 && !t0 && content.size() <= 256) ||
      (le == 0 && content.size() == 256)) {
    Bytes out = content;
    out.push_back(0x90);
    out.push_back(0x00);
    return out;
  }
  return Sw(0x6C, static_cast<uint8_t>(content.size()));
}

}  // namespace

VirtualUsim::VirtualUsim(const TestSim& sim, Options options)
    : imsi_(sim.imsi),
      milenage_(MakeMilenage(sim)),
      options_init_(std::move(options)),
      t0_(options_init_.t0),
      window_(options_init_.seq_ms) {}

const Bytes& VirtualUsim::Aid() {
  static const Bytes* const aid = new Bytes{0xA0, 0x00, 0x00, 0x00, 0x87, 0x10,
                                            0x02, 0xFF, 0x49, 0xFF, 0x05, 0x89};
  return *aid;
}

Bytes VirtualUsim::Atr() const {
  std::lock_guard<std::mutex> lock(mu_);
  // T=0 only: TS, T0 with two historical bytes. T=1: TD1 names T=1 and the
  // check byte TCK follows.
  if (t0_) return {0x3B, 0x02, 0x14, 0x50};
  return {0x3B, 0x80, 0x01, 0x81};
}

Bytes VirtualUsim::EncodeImsi(const std::string& imsi) {
  Bytes out(9, 0xFF);
  const bool odd = imsi.size() % 2 == 1;
  std::vector<uint8_t> nibbles = {static_cast<uint8_t>(odd ? 0x09 : 0x01)};
  for (char c : imsi) nibbles.push_back(static_cast<uint8_t>(c - '0'));
  if (nibbles.size() % 2 == 1) nibbles.push_back(0x0F);
  out[0] = static_cast<uint8_t>(nibbles.size() / 2);
  for (size_t i = 0; i < nibbles.size(); i += 2) {
    out[1 + i / 2] = static_cast<uint8_t>(nibbles[i + 1] << 4 | nibbles[i]);
  }
  return out;
}

Bytes VirtualUsim::EncodeIccid(const std::string& iccid) {
  Bytes out(10, 0xFF);
  for (size_t i = 0; i < iccid.size() && i < 20; ++i) {
    const uint8_t d = static_cast<uint8_t>(iccid[i] - '0');
    uint8_t& b = out[i / 2];
    b = i % 2 == 0 ? static_cast<uint8_t>((b & 0xF0) | d)
                   : static_cast<uint8_t>((b & 0x0F) | d << 4);
  }
  return out;
}

void VirtualUsim::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  df_ = Df::kMf;
  ef_ = Ef::kNone;
  app_active_ = false;
  pending_.clear();
}

void VirtualUsim::SelectUsimApplication() {
  Bytes apdu = {0x00, 0xA4, 0x04, 0x0C, static_cast<uint8_t>(Aid().size())};
  apdu.insert(apdu.end(), Aid().begin(), Aid().end());
  Process(apdu);
}

void VirtualUsim::set_t0(bool t0) {
  std::lock_guard<std::mutex> lock(mu_);
  t0_ = t0;
}

std::array<uint64_t, kIndSlots> VirtualUsim::seq_ms() {
  std::lock_guard<std::mutex> lock(mu_);
  return window_.seq_ms();
}

void VirtualUsim::SetAllSeqMs(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  std::array<uint64_t, kIndSlots> a;
  a.fill(seq);
  window_ = UsimSqnWindow(a);
}

int VirtualUsim::authenticate_count() {
  std::lock_guard<std::mutex> lock(mu_);
  return auth_;
}
int VirtualUsim::success_count() {
  std::lock_guard<std::mutex> lock(mu_);
  return success_;
}
int VirtualUsim::sync_failure_count() {
  std::lock_guard<std::mutex> lock(mu_);
  return sync_;
}
int VirtualUsim::mac_failure_count() {
  std::lock_guard<std::mutex> lock(mu_);
  return mac_;
}

Bytes VirtualUsim::Process(const Bytes& apdu) {
  std::lock_guard<std::mutex> lock(mu_);
  if (apdu.size() < 4) return Sw(0x6700);
  if ((apdu[0] & 0xFC) != 0x00) return Sw(0x6E00);  // UICC class only
  const uint8_t ins = apdu[1];
  if (ins == 0xC0) return GetResponse(apdu);
  pending_.clear();  // an answer not fetched at once is lost (T=0)
  // T=0 carries a case 4 command as header, Lc and data only (ISO 7816-3
  // 12.2.4): a trailing Le byte would be a transport error.
  if (t0_ && apdu.size() > 5 && apdu[4] != 0 && apdu.size() == 6u + apdu[4]) {
    return Sw(0x6700);
  }
  switch (ins) {
    case 0xA4:
      return Select(apdu);
    case 0xB2:
      return ReadRecord(apdu);
    case 0xB0:
      return ReadBinary(apdu);
    case 0x88:
      return Authenticate(apdu);
    default:
      return Sw(0x6D00);
  }
}

// A command of case 4 (data in and out): in T=0 the answer waits for GET
// RESPONSE.
Bytes VirtualUsim::Answer(Bytes data, uint16_t sw) {
  if (t0_ && !data.empty() && sw == kSw9000) {
    const size_t n = data.size();
    pending_ = std::move(data);
    return Sw(0x61, static_cast<uint8_t>(n >= 256 ? 0 : n));
  }
  data.insert(data.end(),
              {static_cast<uint8_t>(sw >> 8), static_cast<uint8_t>(sw & 0xFF)});
  return data;
}

Bytes VirtualUsim::Fcp(uint16_t fid) const {
  Bytes body;
  auto add = [&](uint8_t tag, Bytes v) {
    body.push_back(tag);
    body.push_back(static_cast<uint8_t>(v.size()));
    body.insert(body.end(), v.begin(), v.end());
  };
  const uint8_t hi = static_cast<uint8_t>(fid >> 8);
  const uint8_t lo = static_cast<uint8_t>(fid & 0xFF);
  switch (fid) {
    case 0x3F00:
    case 0x7FFF:
      add(0x82, {0x78, 0x21});
      if (fid == 0x7FFF) {
        add(0x84, Aid());
      } else {
        add(0x83, {hi, lo});
      }
      break;
    case 0x2F00:
      add(0x82, {0x42, 0x21, 0x00, kDirRecordLength, kDirRecords});
      add(0x83, {hi, lo});
      add(0x80, {0x00, kDirRecordLength * kDirRecords});
      break;
    default:  // transparent EFs
      add(0x82, {0x41, 0x21});
      add(0x83, {hi, lo});
      add(0x80, {0x00, static_cast<uint8_t>(fid == 0x6F07 ? 9 : 10)});
      break;
  }
  Bytes fcp = {0x62, static_cast<uint8_t>(body.size())};
  fcp.insert(fcp.end(), body.begin(), body.end());
  return fcp;
}

Bytes VirtualUsim::Select(const Bytes& apdu) {
  const uint8_t p1 = apdu[2], p2 = apdu[3];
  if (apdu.size() < 5 || apdu[4] == 0 || apdu.size() < 5u + apdu[4]) {
    return Sw(0x6700);
  }
  const Bytes data(apdu.begin() + 5, apdu.begin() + 5 + apdu[4]);
  if (p2 != 0x04 && p2 != 0x0C && p2 != 0x00) return Sw(0x6A86);
  uint16_t selected;
  if (p1 == 0x04) {  // by DF name: the whole AID or a prefix of it
    if (data.size() < 5 || data.size() > Aid().size() ||
        !std::equal(data.begin(), data.end(), Aid().begin())) {
      return Sw(0x6A82);
    }
    df_ = Df::kAdf;
    ef_ = Ef::kNone;
    app_active_ = true;
    selected = 0x7FFF;
  } else if (p1 == 0x00) {
    if (data.size() != 2) return Sw(0x6700);
    const uint16_t fid = static_cast<uint16_t>(data[0] << 8 | data[1]);
    if (fid == 0x3F00) {
      df_ = Df::kMf;
      ef_ = Ef::kNone;
    } else if (fid == 0x7FFF && app_active_) {
      df_ = Df::kAdf;
      ef_ = Ef::kNone;
    } else if (fid == 0x2F00 && df_ == Df::kMf) {
      ef_ = Ef::kDir;
    } else if (fid == 0x2FE2 && df_ == Df::kMf) {
      ef_ = Ef::kIccid;
    } else if (fid == 0x6F07 && df_ == Df::kAdf) {
      ef_ = Ef::kImsi;
    } else {
      return Sw(0x6A82);
    }
    selected = fid;
  } else {
    return Sw(0x6A86);
  }
  if (p2 == 0x0C) return Sw(kSw9000);
  return Answer(Fcp(selected), kSw9000);
}

Bytes VirtualUsim::DirRecord() const { return AppRecord(Aid(), "USIM"); }

Bytes VirtualUsim::ReadRecord(const Bytes& apdu) {
  if (ef_ == Ef::kNone) return Sw(0x6986);
  if (ef_ != Ef::kDir) return Sw(0x6981);
  if (apdu[3] != 0x04) return Sw(0x6A86);
  const uint8_t rec = apdu[2];
  if (rec < 1 || rec > kDirRecords) return Sw(0x6A83);
  Bytes content;
  if (rec == 1) {
    content = AppRecord(IsimAid(), "ISIM");
  } else if (rec == 2) {
    content = DirRecord();
  } else {
    content.assign(kDirRecordLength, 0xFF);
  }
  return ReadAnswer(content, apdu, t0_);
}

Bytes VirtualUsim::ReadBinary(const Bytes& apdu) {
  if (ef_ == Ef::kNone) return Sw(0x6986);
  if (ef_ == Ef::kDir) return Sw(0x6981);
  if (apdu[2] & 0x80) return Sw(0x6A86);  // short file id: not modelled
  const Bytes content =
      ef_ == Ef::kImsi ? EncodeImsi(imsi_) : EncodeIccid(options_init_.iccid);
  const size_t offset = static_cast<size_t>(apdu[2] << 8 | apdu[3]);
  if (offset >= content.size()) return Sw(0x6B00);
  return ReadAnswer(Bytes(content.begin() + offset, content.end()), apdu, t0_);
}

Bytes VirtualUsim::Authenticate(const Bytes& apdu) {
  if (!app_active_) return Sw(0x6985);
  if (apdu[2] != 0x00 || apdu[3] != 0x81) return Sw(0x6A86);
  if (apdu.size() < 5 + 0x22 || apdu[4] != 0x22 || apdu[5] != 0x10 ||
      apdu[22] != 0x10 || apdu.size() > 6 + 0x22) {
    return Sw(0x6700);
  }
  ++auth_;
  const Bytes rand(apdu.begin() + 6, apdu.begin() + 22);
  const Bytes autn(apdu.begin() + 23, apdu.begin() + 39);
  UsimResult r = UsimAuthenticate(milenage_, rand, autn, window_);
  switch (r.kind) {
    case UsimResult::Kind::kSuccess: {
      ++success_;
      Bytes out = {0xDB, static_cast<uint8_t>(r.res.size())};
      out.insert(out.end(), r.res.begin(), r.res.end());
      out.push_back(0x10);
      out.insert(out.end(), r.ck.begin(), r.ck.end());
      out.push_back(0x10);
      out.insert(out.end(), r.ik.begin(), r.ik.end());
      out.push_back(0x08);  // Kc = c3(CK, IK) (TS 33.102 6.8.1.2)
      for (int i = 0; i < 8; ++i) {
        out.push_back(r.ck[i] ^ r.ck[i + 8] ^ r.ik[i] ^ r.ik[i + 8]);
      }
      return Answer(std::move(out), kSw9000);
    }
    case UsimResult::Kind::kSyncFailure: {
      ++sync_;
      Bytes out = {0xDC, static_cast<uint8_t>(r.auts.size())};
      out.insert(out.end(), r.auts.begin(), r.auts.end());
      return Answer(std::move(out), kSw9000);
    }
    case UsimResult::Kind::kMacFailure:
      ++mac_;
      return Sw(0x9862);
  }
  return Sw(0x6F00);
}

Bytes VirtualUsim::GetResponse(const Bytes& apdu) {
  if (pending_.empty()) return Sw(0x6985);
  if (apdu.size() != 5) return Sw(0x6700);
  const size_t le = apdu[4] == 0 ? 256 : apdu[4];
  if (le > pending_.size()) {
    return Sw(0x6C, static_cast<uint8_t>(pending_.size()));
  }
  Bytes out(pending_.begin(), pending_.begin() + le);
  pending_.erase(pending_.begin(), pending_.begin() + le);
  if (pending_.empty()) {
    out.insert(out.end(), {0x90, 0x00});
  } else {
    out.insert(out.end(), {0x61, static_cast<uint8_t>(pending_.size())});
  }
  return out;
}

}  // namespace simprov::testing
