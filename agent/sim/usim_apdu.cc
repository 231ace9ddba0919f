#include "agent/sim/usim_apdu.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/imsi.h"

namespace simprov::usim {

namespace {

constexpr uint8_t kInsGetResponse = 0xC0;
constexpr uint8_t kTagAuthSuccess = 0xDB;
constexpr uint8_t kTagAuthSync = 0xDC;
// GET RESPONSE rounds and bytes collected for one command: far more than any
// USIM answer, small enough that a misbehaving carrier cannot loop forever.
constexpr int kMaxGetResponses = 32;
constexpr size_t kMaxResponseBytes = 8192;

absl::Status Malformed(absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("malformed answer from the SIM: ", what));
}

// Reads a BER-TLV length at data[*pos] (short form or 81 XX / 82 XX XX)
// whose length bytes and value both lie before `end`, the end of the
// enclosing template (at most data.size()). A length running past `end` is
// malformed, even when the bytes exist further on in `data`.
bool ReadLength(const Bytes& data, size_t end, size_t* pos, size_t* len) {
  end = std::min(end, data.size());
  if (*pos >= end) return false;
  uint8_t b = data[(*pos)++];
  size_t v = b;
  if (b >= 0x80) {
    const size_t n = b & 0x7F;
    if (n < 1 || n > 2 || n > end - *pos) return false;
    v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | data[(*pos)++];
  }
  if (v > end - *pos) return false;
  *len = v;
  return true;
}

// One length-value field of AUTHENTICATE's answer.
bool ReadLv(const Bytes& data, size_t* pos, Bytes* out) {
  if (*pos >= data.size()) return false;
  size_t len = data[(*pos)++];
  if (len > data.size() - *pos) return false;
  out->assign(data.begin() + *pos, data.begin() + *pos + len);
  *pos += len;
  return true;
}

}  // namespace

const Bytes& UsimAidPrefix() {
  static const Bytes* const prefix =
      new Bytes{0xA0, 0x00, 0x00, 0x00, 0x87, 0x10, 0x02};
  return *prefix;
}

absl::StatusOr<Response> SplitResponse(const Bytes& raw) {
  if (raw.size() < 2) {
    return absl::DataLossError(
        absl::StrCat("malformed answer from the SIM: ", raw.size(),
                     " byte(s), shorter than a status word"));
  }
  Response r;
  r.data.assign(raw.begin(), raw.end() - 2);
  r.sw = static_cast<uint16_t>(raw[raw.size() - 2] << 8 | raw.back());
  return r;
}

std::string DescribeSw(uint16_t sw) {
  const char* what = nullptr;
  switch (sw) {
    case 0x9000:
      return "9000";
    case 0x6283:
      what = "selected file invalidated";
      break;
    case 0x6581:
      what = "memory problem";
      break;
    case 0x6700:
      what = "wrong length";
      break;
    case 0x6981:
      what = "command incompatible with file structure";
      break;
    case 0x6982:
      what = "security status not satisfied";
      break;
    case 0x6983:
      what = "authentication method blocked";
      break;
    case 0x6985:
      what = "conditions of use not satisfied";
      break;
    case 0x6986:
      what = "command not allowed, no EF selected";
      break;
    case 0x6A81:
      what = "function not supported";
      break;
    case 0x6A82:
      what = "file or application not found";
      break;
    case 0x6A83:
      what = "record not found";
      break;
    case 0x6A86:
      what = "incorrect P1/P2";
      break;
    case 0x6B00:
      what = "wrong parameters";
      break;
    case 0x6D00:
      what = "instruction not supported";
      break;
    case 0x6E00:
      what = "class not supported";
      break;
    case 0x6F00:
      what = "technical problem";
      break;
    case 0x9862:
      what = "authentication error, incorrect MAC";
      break;
    case 0x9864:
      what = "authentication error, security context not supported";
      break;
    case 0x9865:
      what = "key freshness failure";
      break;
    default:
      break;
  }
  if (what == nullptr) {
    switch (sw >> 8) {
      case 0x61:
        what = "more data available";
        break;
      case 0x6C:
        what = "wrong Le";
        break;
      case 0x63:
        what = "verification failed or warning";
        break;
      default:
        break;
    }
  }
  std::string hex = absl::StrFormat("%04X", sw);
  return what == nullptr ? hex : absl::StrCat(hex, " (", what, ")");
}

absl::StatusOr<Bytes> WithLe(const Bytes& apdu, uint8_t le) {
  const size_t n = apdu.size();
  Bytes out = apdu;
  if (n == 4) {  // case 1
    out.push_back(le);
    return out;
  }
  if (n == 5) {  // case 2
    out[4] = le;
    return out;
  }
  if (n > 5 && apdu[4] != 0) {
    const size_t lc = apdu[4];
    if (n == 5 + lc) {  // case 3
      out.push_back(le);
      return out;
    }
    if (n == 6 + lc) {  // case 4
      out.back() = le;
      return out;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a short command APDU (", n, " bytes)"));
}

absl::StatusOr<Response> Transmit(const TransmitFn& transmit,
                                  const Bytes& apdu) {
  if (apdu.size() < 4) {
    return absl::InvalidArgumentError("command APDU shorter than 4 bytes");
  }
  auto raw = transmit(apdu);
  if (!raw.ok()) return raw.status();
  auto r = SplitResponse(*raw);
  if (!r.ok()) return r.status();
  if (r->sw1() == 0x6C) {  // wrong Le: the card names the right one; once
    auto again = WithLe(apdu, r->sw2());
    if (!again.ok()) return again.status();
    raw = transmit(*again);
    if (!raw.ok()) return raw.status();
    r = SplitResponse(*raw);
    if (!r.ok()) return r.status();
    if (r->sw1() == 0x6C) {
      return Malformed("6Cxx again after re-sending with the Le it named");
    }
  }
  Response out;
  out.data = std::move(r->data);
  out.sw = r->sw;
  int rounds = 0;
  while (out.sw1() == 0x61 || out.sw1() == 0x9F) {
    if (++rounds > kMaxGetResponses || out.data.size() > kMaxResponseBytes) {
      return Malformed("too many GET RESPONSE rounds");
    }
    Bytes get = {apdu[0], kInsGetResponse, 0x00, 0x00, out.sw2()};
    raw = transmit(get);
    if (!raw.ok()) return raw.status();
    auto part = SplitResponse(*raw);
    if (!part.ok()) return part.status();
    if (part->sw1() == 0x6C) {  // the card wants another Le for GET RESPONSE
      get[4] = part->sw2();
      raw = transmit(get);
      if (!raw.ok()) return raw.status();
      part = SplitResponse(*raw);
      if (!part.ok()) return part.status();
    }
    out.data.insert(out.data.end(), part->data.begin(), part->data.end());
    out.sw = part->sw;
  }
  return out;
}

absl::StatusOr<Bytes> BuildAuthenticate(const Bytes& rand, const Bytes& autn,
                                        bool with_le) {
  if (rand.size() != 16 || autn.size() != 16) {
    return absl::InvalidArgumentError("RAND and AUTN must be 16 bytes");
  }
  Bytes apdu = {0x00, 0x88, 0x00, 0x81, 0x22, 0x10};
  apdu.insert(apdu.end(), rand.begin(), rand.end());
  apdu.push_back(0x10);
  apdu.insert(apdu.end(), autn.begin(), autn.end());
  if (with_le) apdu.push_back(0x00);
  return apdu;
}

absl::StatusOr<SimAuthResult> ParseAuthenticateResponse(const Response& r) {
  SimAuthResult out;
  if (r.sw == kSwAuthMacFailure) {
    out.kind = SimAuthResult::Kind::kMacFailure;
    return out;
  }
  if (r.sw != kSwOk) {
    std::string hint;
    if (r.sw == 0x6982) {
      hint = ": the SIM's PIN must be verified first (or disabled)";
    } else if (r.sw == 0x6985 || r.sw == 0x6D00 || r.sw == 0x6E00) {
      hint = ": no USIM application selected, or not a USIM";
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "the SIM refused AUTHENTICATE: status ", DescribeSw(r.sw), hint));
  }
  const Bytes& d = r.data;
  if (d.empty()) return Malformed("AUTHENTICATE answered 9000 without data");
  if (d[0] == kTagAuthSuccess) {
    size_t pos = 1;
    Bytes kc;
    if (!ReadLv(d, &pos, &out.res) || !ReadLv(d, &pos, &out.ck) ||
        !ReadLv(d, &pos, &out.ik)) {
      return Malformed("AUTHENTICATE success (DB) is truncated");
    }
    if (pos < d.size() && (!ReadLv(d, &pos, &kc) || kc.size() != 8)) {
      SecureWipe(kc);
      return Malformed("AUTHENTICATE success (DB): bad Kc field");
    }
    SecureWipe(kc);
    if (pos != d.size()) {
      return Malformed("AUTHENTICATE success (DB) has trailing bytes");
    }
    if (out.res.size() < 4 || out.res.size() > 16) {
      return Malformed(
          absl::StrCat("RES of ", out.res.size(), " bytes (expected 4 to 16)"));
    }
    if (out.ck.size() != 16 || out.ik.size() != 16) {
      return Malformed(absl::StrCat("CK/IK of ", out.ck.size(), "/",
                                    out.ik.size(), " bytes (expected 16)"));
    }
    out.kind = SimAuthResult::Kind::kSuccess;
    return out;
  }
  if (d[0] == kTagAuthSync) {
    if (d.size() < 2 || d[1] != 14 || d.size() != 16) {
      return Malformed("AUTHENTICATE sync failure (DC) without a 14-byte AUTS");
    }
    out.kind = SimAuthResult::Kind::kSyncFailure;
    out.auts.assign(d.begin() + 2, d.end());
    return out;
  }
  return Malformed(absl::StrFormat(
      "AUTHENTICATE answered tag %02X (expected DB or DC)", d[0]));
}

Bytes BuildSelectFid(uint16_t fid) {
  return {0x00,
          0xA4,
          0x00,
          0x04,
          0x02,
          static_cast<uint8_t>(fid >> 8),
          static_cast<uint8_t>(fid & 0xFF),
          0x00};
}

Bytes BuildSelectAid(const Bytes& aid) {
  Bytes apdu = {0x00, 0xA4, 0x04, 0x04, static_cast<uint8_t>(aid.size())};
  apdu.insert(apdu.end(), aid.begin(), aid.end());
  apdu.push_back(0x00);
  return apdu;
}

Bytes BuildReadRecord(uint8_t record, uint8_t le) {
  return {0x00, 0xB2, record, 0x04, le};
}

Bytes BuildReadBinary(uint8_t le) { return {0x00, 0xB0, 0x00, 0x00, le}; }

FileInfo ParseFcp(const Bytes& fcp) {
  FileInfo info;
  size_t pos = 0;
  if (fcp.empty() || fcp[pos++] != 0x62) return info;
  size_t total;
  if (!ReadLength(fcp, fcp.size(), &pos, &total)) return info;
  const size_t end = pos + total;
  while (pos + 2 <= end) {
    const uint8_t tag = fcp[pos++];
    size_t len;
    if (!ReadLength(fcp, end, &pos, &len)) return FileInfo();
    const uint8_t* v = fcp.data() + pos;
    if (tag == 0x82 && len >= 5) {
      info.record_length = static_cast<uint16_t>(v[2] << 8 | v[3]);
      info.record_count = v[4];
    } else if (tag == 0x80 && len >= 2) {
      info.size = static_cast<uint16_t>(v[len - 2] << 8 | v[len - 1]);
    }
    pos += len;
  }
  return info;
}

absl::StatusOr<Bytes> AidFromDirRecord(const Bytes& record) {
  if (record.empty() || record[0] == 0xFF) return Bytes();  // erased
  size_t pos = 0;
  if (record[pos++] != 0x61) {
    return Malformed("EF_DIR record is not an application template (61)");
  }
  size_t total;
  if (!ReadLength(record, record.size(), &pos, &total)) {
    return Malformed("EF_DIR record length exceeds the record");
  }
  const size_t end = pos + total;
  while (pos < end) {
    const uint8_t tag = record[pos++];
    size_t len;
    if (!ReadLength(record, end, &pos, &len)) {
      return Malformed("EF_DIR record holds a truncated TLV");
    }
    if (tag == 0x4F) {
      if (len < 5 || len > 16) {
        return Malformed(absl::StrCat("EF_DIR AID of ", len, " bytes"));
      }
      return Bytes(record.begin() + pos, record.begin() + pos + len);
    }
    pos += len;
  }
  return Bytes();
}

bool IsUsimAid(const Bytes& aid) {
  const Bytes& p = UsimAidPrefix();
  return aid.size() >= p.size() && std::equal(p.begin(), p.end(), aid.begin());
}

absl::StatusOr<std::string> DecodeImsi(const Bytes& ef) {
  if (ef.size() < 2) return Malformed("EF_IMSI shorter than 2 bytes");
  const size_t len = ef[0];
  if (len == 0 || len == 0xFF) return Malformed("EF_IMSI is empty");
  if (len > 8 || len > ef.size() - 1) {
    return Malformed(absl::StrCat("EF_IMSI length byte ", len,
                                  " exceeds the file (", ef.size(), " bytes)"));
  }
  if ((ef[1] & 0x07) != 0x01) {
    return Malformed(absl::StrCat("EF_IMSI identity type ", ef[1] & 0x07,
                                  " is not an IMSI (1)"));
  }
  std::vector<uint8_t> nibbles = {static_cast<uint8_t>(ef[1] >> 4)};
  for (size_t i = 2; i <= len; ++i) {
    nibbles.push_back(ef[i] & 0x0F);
    nibbles.push_back(ef[i] >> 4);
  }
  std::string imsi;
  bool padding = false;
  for (uint8_t n : nibbles) {
    if (n == 0x0F) {
      padding = true;
    } else if (n > 9) {
      return Malformed("EF_IMSI holds a non-digit");
    } else if (padding) {
      return Malformed("EF_IMSI holds a digit after its padding");
    } else {
      imsi.push_back(static_cast<char>('0' + n));
    }
  }
  if (!IsValidImsi(imsi)) {
    return Malformed(
        absl::StrCat("EF_IMSI holds ", imsi.size(), " digits (6 to 15)"));
  }
  return imsi;
}

absl::StatusOr<std::string> DecodeIccid(const Bytes& ef) {
  std::string iccid;
  bool padding = false;
  for (uint8_t b : ef) {
    for (uint8_t n :
         {static_cast<uint8_t>(b & 0x0F), static_cast<uint8_t>(b >> 4)}) {
      if (n == 0x0F) {
        padding = true;
      } else if (n > 9 || padding) {
        return Malformed("EF_ICCID holds a non-digit");
      } else {
        iccid.push_back(static_cast<char>('0' + n));
      }
    }
  }
  if (iccid.empty()) return Malformed("EF_ICCID is empty");
  return iccid;
}

}  // namespace simprov::usim
