// USIM commands at the APDU level (ETSI TS 102 221, 3GPP TS 31.102), shared
// by every carrier of APDUs: a modem's AT+CSIM and PC/SC readers.
//
// Covers building AUTHENTICATE (3G context) and the file-system commands
// needed to find the USIM application and read EF_IMSI / EF_ICCID, parsing
// their answers (DB / DC / 98 62, TBCD digits, EF_DIR records), and the T=0
// transport rules over an abstract transmit function: 61xx is followed by
// GET RESPONSE, 6Cxx by the same command with Le = xx.
//
// Guarantees: parsers never read past their input and reject malformed
// answers with a status that names what was wrong (never key material:
// RES/CK/IK are not echoed in errors).
#ifndef SIMPROV_AGENT_SIM_USIM_APDU_H_
#define SIMPROV_AGENT_SIM_USIM_APDU_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/sim/sim.h"
#include "common/bytes.h"

namespace simprov::usim {

// Status words.
inline constexpr uint16_t kSwOk = 0x9000;
inline constexpr uint16_t kSwAuthMacFailure = 0x9862;  // AUTHENTICATE: MAC

// File identifiers.
inline constexpr uint16_t kFidMf = 0x3F00;
inline constexpr uint16_t kFidEfDir = 0x2F00;
inline constexpr uint16_t kFidEfIccid = 0x2FE2;
inline constexpr uint16_t kFidEfImsi = 0x6F07;

// The USIM application's AID starts with RID A000000087 and application
// code 1002 (TS 101 220 annex E).
const Bytes& UsimAidPrefix();

// A response APDU split into its body and status word.
struct Response {
  Bytes data;
  uint16_t sw = 0;
  uint8_t sw1() const { return sw >> 8; }
  uint8_t sw2() const { return sw & 0xFF; }
};

// Splits raw response bytes (data || SW1 SW2). InvalidArgument when shorter
// than the two status bytes.
absl::StatusOr<Response> SplitResponse(const Bytes& raw);

// "9000", "6A82 (file not found)", ...: for error messages.
std::string DescribeSw(uint16_t sw);

// Sends one command APDU and returns the raw response (data || SW). The
// carrier (AT+CSIM, SCardTransmit) implements it.
using TransmitFn = std::function<absl::StatusOr<Bytes>(const Bytes& apdu)>;

// Sends `apdu` through `transmit` with the T=0 rules: on 61xx (and 9Fxx)
// GET RESPONSE (00 C0 00 00 xx) collects the answer, possibly in several
// parts; on 6Cxx the command is sent again once with Le = xx. Short APDUs
// only (at most 255 data bytes).
absl::StatusOr<Response> Transmit(const TransmitFn& transmit,
                                  const Bytes& apdu);

// Returns `apdu` (a short command APDU, any ISO case) with its Le set to
// `le`: replaced if it had one, appended otherwise. InvalidArgument if the
// APDU's structure is not one of the four short cases.
absl::StatusOr<Bytes> WithLe(const Bytes& apdu, uint8_t le);

// 00 88 00 81 22 10 RAND 10 AUTN [00]: AUTHENTICATE in the 3G security
// context (TS 31.102 7.1.2). rand and autn must be 16 bytes each
// (InvalidArgument otherwise).
absl::StatusOr<Bytes> BuildAuthenticate(const Bytes& rand, const Bytes& autn,
                                        bool with_le);

// Interprets the answer to AUTHENTICATE: 9000 with DB (RES, CK, IK and an
// optional Kc) is kSuccess, 9000 with DC (14-byte AUTS) kSyncFailure, 98 62
// kMacFailure. Other status words and malformed bodies are errors
// (FailedPrecondition for a SIM that refuses the command, e.g. PIN not
// verified or no USIM application selected; DataLoss for malformed data).
absl::StatusOr<SimAuthResult> ParseAuthenticateResponse(const Response& r);

// SELECT by file identifier (P1 = 00, P2 = 04: return the FCP; Le = 00).
Bytes BuildSelectFid(uint16_t fid);
// SELECT by DF name (P1 = 04, P2 = 04; Le = 00).
Bytes BuildSelectAid(const Bytes& aid);
// READ RECORD, absolute mode (P2 = 04). le = 0 asks for the whole record.
Bytes BuildReadRecord(uint8_t record, uint8_t le);
// READ BINARY from offset 0.
Bytes BuildReadBinary(uint8_t le);

// From an FCP template (62 ...) answered to SELECT: the record length and
// record count of a linear fixed EF (tag 82), or the file size (tag 80) of a
// transparent EF. Missing values are 0; a malformed template (a length
// running past the template or the buffer) yields all 0.
struct FileInfo {
  uint16_t record_length = 0;
  uint8_t record_count = 0;
  uint16_t size = 0;
};
FileInfo ParseFcp(const Bytes& fcp);

// An EF_DIR record: application template 61 L { 4F L AID, 50 L label, ...}
// padded with FF. Returns the AID (empty if the record holds none, e.g.
// an erased record); DataLoss if the TLV is malformed.
absl::StatusOr<Bytes> AidFromDirRecord(const Bytes& record);

// True when `aid` is a USIM application's AID.
bool IsUsimAid(const Bytes& aid);

// EF_IMSI (TS 31.102 4.2.2): byte 0 is the number of bytes that follow;
// byte 1 holds the first digit in its high nibble and the parity/type in
// its low nibble (type 001 = IMSI); then two digits per byte, low nibble
// first; F pads. Returns the 6 to 15 digits; DataLoss otherwise.
absl::StatusOr<std::string> DecodeImsi(const Bytes& ef_imsi);

// EF_ICCID (TS 102 221 13.2): BCD, low nibble first, F pads. Returns the
// digits; DataLoss if a non-digit appears before the padding.
absl::StatusOr<std::string> DecodeIccid(const Bytes& ef_iccid);

}  // namespace simprov::usim

#endif  // SIMPROV_AGENT_SIM_USIM_APDU_H_
