// An AT-command modem on a pseudo-terminal, for tests of the agent's
// `--sim at:DEVICE`: the agent opens device() (/dev/pts/N) as it would a
// modem's serial port; a thread answers on the master side and passes
// AT+CSIM APDUs to a VirtualUsim.
//
// Understands AT, ATE0/ATE1, AT+CMEE=n, AT+CIMI, AT+CGSN, one of
// AT+CCID / AT+QCCID / AT+ICCID (configurable) and AT+CSIM; anything else
// gets ERROR, as real modems answer commands they lack. Misbehaviour on
// demand: echo, unsolicited result codes between lines, garbage lines,
// answers written in small fragments, +CME ERROR for a command, and a point
// from which it stops answering altogether.
#ifndef SIMPROV_TEST_TESTING_FAKE_MODEM_H_
#define SIMPROV_TEST_TESTING_FAKE_MODEM_H_

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test/testing/virtual_usim.h"

namespace simprov::testing {

class FakeModem {
 public:
  struct Options {
    bool echo = true;        // V.250 default; ATE0 turns it off
    bool ate0_works = true;  // false: ATE0 answers ERROR, echo stays on
    // Sent before the first line of every answer and between its lines.
    std::vector<std::string> urcs = {};
    bool garbage = false;     // garbage lines between the lines of answers
    bool fragmented = false;  // answers written a few bytes at a time
    // The ICCID command this modem has: "+CCID", "+QCCID", "+ICCID" or ""
    // (none: the others answer ERROR).
    std::string iccid_command = "+CCID";
    std::string iccid = "8988211000000000001";
    std::string imei = "356938035643809";
    bool cgsn_works = true;
    // Commands starting with this prefix (upper case, e.g. "AT+CIMI") get
    // "+CME ERROR: <cme_error>".
    std::string cme_error_for = "";
    std::string cme_error = "10";
    // From the first command starting with this prefix on ("AT" matches
    // all), the modem reads but never answers again.
    std::string stop_answering_at = "";
  };

  // Opens the pty and starts answering. `usim` must outlive the modem; the
  // modem selects its USIM application, as a modem does at power-on.
  FakeModem(VirtualUsim* usim, Options options);
  explicit FakeModem(VirtualUsim* usim) : FakeModem(usim, Options()) {}
  ~FakeModem();
  FakeModem(const FakeModem&) = delete;
  FakeModem& operator=(const FakeModem&) = delete;

  // The slave side, e.g. "/dev/pts/7".
  const std::string& device() const { return device_; }
  // Command lines received so far, as sent.
  std::vector<std::string> commands();
  // Number of received commands starting with `prefix` (upper case).
  int CountCommands(const std::string& prefix);
  bool silent() const { return silent_; }

 private:
  void Run();
  void HandleLine(const std::string& line);
  std::vector<std::string> Answer(const std::string& cmd, std::string* final);
  std::string Csim(const std::string& args, std::string* final);
  void Send(const std::string& data);
  std::string Error(const std::string& cme) const;

  VirtualUsim* const usim_;
  const Options options_;
  int master_ = -1;
  int slave_ = -1;  // held open so the master never sees a hang-up
  std::string device_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> silent_{false};
  bool echo_;
  int cmee_ = 0;
  std::mutex mu_;
  std::vector<std::string> commands_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_FAKE_MODEM_H_
