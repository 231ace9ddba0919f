// PC/SC tests without hardware: pcscd with the vpcd driver (Debian package
// vsmartcard-vpcd) offers readers "Virtual PCD 00 00" and "Virtual PCD 00
// 01" and waits for virtual cards on TCP ports 35963 and 35964. VpcdCard is
// that card, backed by a VirtualUsim; PcscDaemon makes sure pcscd runs.
//
// The vpcd protocol: each message is a 2-byte big-endian length and a
// payload. A 1-byte payload from vpcd is a control message (00 power off,
// 01 power on, 02 reset: no answer; 04 ATR request: answered with the ATR);
// any longer payload is a command APDU, answered with the response APDU.
#ifndef SIMPROV_TEST_TESTING_VPCD_CARD_H_
#define SIMPROV_TEST_TESTING_VPCD_CARD_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "test/testing/process.h"
#include "test/testing/virtual_usim.h"

namespace simprov::testing {

inline constexpr int kVpcdPort = 35963;

// pcscd, for the duration of a test suite.
class PcscDaemon {
 public:
  // Reuses a running pcscd, or starts `pcscd --foreground --auto-exit`
  // (stopped again on destruction); then waits until vpcd's reader is
  // listed. Null with *error set when that fails.
  static std::unique_ptr<PcscDaemon> Ensure(std::string* error);
  ~PcscDaemon();

  // The name of the vpcd reader on kVpcdPort.
  const std::string& reader() const { return reader_; }
  bool started_here() const { return process_ != nullptr; }
  // Waits until the reader reports a card (or no card).
  bool WaitForCard(bool present, absl::Duration timeout) const;

 private:
  PcscDaemon() = default;
  std::unique_ptr<BackgroundProcess> process_;
  std::string log_dir_;
  std::string reader_;
};

// Lists the PC/SC readers; empty when pcscd does not answer.
std::vector<std::string> ListPcscReaders();

class VpcdCard {
 public:
  // Connects to vpcd on 127.0.0.1:port (retrying until `timeout`, since
  // the driver may still be loading) and serves `usim`, which must outlive
  // the card. Null if vpcd never accepts.
  static std::unique_ptr<VpcdCard> Insert(
      VirtualUsim* usim, int port = kVpcdPort,
      absl::Duration timeout = absl::Seconds(15));
  // Disconnects: the card is removed from the reader.
  ~VpcdCard();
  VpcdCard(const VpcdCard&) = delete;
  VpcdCard& operator=(const VpcdCard&) = delete;

  int apdus() const { return apdus_; }
  int power_ons() const { return power_ons_; }
  // True once vpcd closed the connection: the reader dropped the card (vpcd
  // ejects it when a read of its socket fails, e.g. on EINTR under load).
  bool dropped_by_reader() const { return dropped_; }

 private:
  VpcdCard(VirtualUsim* usim, int fd);
  void Run();

  VirtualUsim* const usim_;
  const int fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> apdus_{0};
  std::atomic<int> power_ons_{0};
  std::atomic<bool> dropped_{false};
  std::thread thread_;
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_VPCD_CARD_H_
