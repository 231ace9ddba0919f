// A USIM at the APDU level, for tests of the agent's SIM carriers (AT+CSIM,
// PC/SC): the far side is this object, answering command APDUs as a UICC
// would (ETSI TS 102 221, 3GPP TS 31.102).
//
// Files: MF (3F00) with EF_DIR (2F00, one USIM application record) and
// EF_ICCID (2FE2); the USIM ADF with EF_IMSI (6F07). Commands: SELECT (by
// FID, by AID, partial AID), READ RECORD, READ BINARY, AUTHENTICATE (3G
// context, only once the USIM ADF is selected; MAC check and the SQN window
// with IND through common/aka.h) and GET RESPONSE.
//
// In T=0 mode a command whose answer has data gets 61xx and the data waits
// for GET RESPONSE, and a case 4 command that carries Le is refused (6700),
// as the T=0 transport has no room for it; a READ with the wrong Le gets
// 6Cxx (also in T=1 mode, if Le is neither 00 nor exact). Thread-safe.
#ifndef SIMPROV_TEST_TESTING_VIRTUAL_USIM_H_
#define SIMPROV_TEST_TESTING_VIRTUAL_USIM_H_

#include <array>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/bytes.h"
#include "common/milenage.h"
#include "common/sqn.h"
#include "test/testing/broker_fixture.h"

namespace simprov::testing {

class VirtualUsim {
 public:
  struct Options {
    std::string iccid = "8988211000000000001";
    bool t0 = false;  // answer 61xx and wait for GET RESPONSE
    std::array<uint64_t, kIndSlots> seq_ms{};  // SEQ_MS per IND slot
  };

  // Aborts on a malformed K/OPc (tests make them).
  VirtualUsim(const TestSim& sim, Options options);
  explicit VirtualUsim(const TestSim& sim) : VirtualUsim(sim, Options()) {}

  // The USIM AID recorded in EF_DIR.
  static const Bytes& Aid();
  // The ATR: T=0 only in T=0 mode, T=1 otherwise.
  Bytes Atr() const;

  // Answers one command APDU with data || SW1 SW2.
  Bytes Process(const Bytes& apdu);
  // Power-on or reset: MF selected, no application, no pending answer.
  void Reset();
  // What a modem does at power-on: selects the USIM application.
  void SelectUsimApplication();

  const std::string& imsi() const { return imsi_; }
  void set_t0(bool t0);
  std::array<uint64_t, kIndSlots> seq_ms();
  // Every SEQ_MS slot set to `seq` (resynchronisation tests).
  void SetAllSeqMs(uint64_t seq);

  // Counters for assertions.
  int authenticate_count();  // AUTHENTICATE commands answered
  int success_count();       // ... with DB (success)
  int sync_failure_count();  // ... with DC (AUTS)
  int mac_failure_count();   // ... with 98 62

  // Encodings of the files (exposed for decoder tests).
  static Bytes EncodeImsi(const std::string& imsi);
  static Bytes EncodeIccid(const std::string& iccid);

 private:
  enum class Df { kMf, kAdf };
  enum class Ef { kNone, kDir, kIccid, kImsi };

  Bytes Answer(Bytes data, uint16_t sw);  // applies T=0 rules
  Bytes Select(const Bytes& apdu);
  Bytes ReadRecord(const Bytes& apdu);
  Bytes ReadBinary(const Bytes& apdu);
  Bytes Authenticate(const Bytes& apdu);
  Bytes GetResponse(const Bytes& apdu);
  Bytes Fcp(uint16_t fid) const;
  Bytes DirRecord() const;

  const std::string imsi_;
  const Milenage milenage_;
  const Options options_init_;

  mutable std::mutex mu_;
  bool t0_;
  UsimSqnWindow window_;
  Df df_ = Df::kMf;
  Ef ef_ = Ef::kNone;
  bool app_active_ = false;  // the USIM ADF was selected since reset
  Bytes pending_;            // T=0: data awaiting GET RESPONSE
  int auth_ = 0, success_ = 0, sync_ = 0, mac_ = 0;
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_VIRTUAL_USIM_H_
