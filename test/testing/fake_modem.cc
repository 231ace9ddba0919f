#include "test/testing/fake_modem.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace simprov::testing {

namespace {

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "FakeModem: " << what << ": " << strerror(errno) << "\n";
  std::abort();
}

const char* const kGarbage[] = {
    "\x01\x7f\xfe\xff",
    "~~~ NO SUCH LINE ~~~",
    "\x1b[0m+++",
    "ATOK",
};

}  // namespace

FakeModem::FakeModem(VirtualUsim* usim, Options options)
    : usim_(usim), options_(std::move(options)), echo_(options_.echo) {
  master_ = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master_ < 0) Die("posix_openpt");
  if (grantpt(master_) != 0) Die("grantpt");
  if (unlockpt(master_) != 0) Die("unlockpt");
  char name[128];
  if (ptsname_r(master_, name, sizeof name) != 0) Die("ptsname_r");
  device_ = name;
  slave_ = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave_ < 0) Die("open " + device_);
  termios t;
  if (tcgetattr(slave_, &t) != 0) Die("tcgetattr");
  cfmakeraw(&t);  // until the agent sets its own mode: no echo by the tty
  if (tcsetattr(slave_, TCSANOW, &t) != 0) Die("tcsetattr");
  usim_->Reset();
  usim_->SelectUsimApplication();
  thread_ = std::thread([this] { Run(); });
}

FakeModem::~FakeModem() {
  stop_ = true;
  thread_.join();
  close(slave_);
  close(master_);
}

std::vector<std::string> FakeModem::commands() {
  std::lock_guard<std::mutex> lock(mu_);
  return commands_;
}

int FakeModem::CountCommands(const std::string& prefix) {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const std::string& c : commands_) {
    if (absl::StartsWith(absl::AsciiStrToUpper(c), prefix)) ++n;
  }
  return n;
}

void FakeModem::Run() {
  std::string line;
  while (!stop_) {
    pollfd p = {master_, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    char buf[512];
    ssize_t n = read(master_, buf, sizeof buf);
    if (n <= 0) {
      absl::SleepFor(absl::Milliseconds(5));
      continue;
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\r') {
        HandleLine(line);
        line.clear();
      } else if (buf[i] != '\n') {
        line.push_back(buf[i]);
      }
    }
  }
}

void FakeModem::Send(const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    size_t chunk = options_.fragmented ? std::min<size_t>(3, data.size() - off)
                                       : data.size() - off;
    ssize_t n = write(master_, data.data() + off, chunk);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    off += static_cast<size_t>(n);
    if (options_.fragmented) absl::SleepFor(absl::Microseconds(300));
  }
}

std::string FakeModem::Error(const std::string& cme) const {
  if (cmee_ == 0 || cme.empty()) return "ERROR";
  return absl::StrCat("+CME ERROR: ", cme);
}

void FakeModem::HandleLine(const std::string& raw) {
  const std::string cmd(absl::StripAsciiWhitespace(raw));
  if (cmd.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    commands_.push_back(cmd);
  }
  const std::string upper = absl::AsciiStrToUpper(cmd);
  if (!options_.stop_answering_at.empty() &&
      absl::StartsWith(upper, options_.stop_answering_at)) {
    silent_ = true;
  }
  if (silent_) return;
  if (echo_) Send(raw + "\r");
  std::string final;
  std::vector<std::string> lines = Answer(cmd, &final);
  std::string out;
  auto extra = [&] {
    for (const std::string& u : options_.urcs)
      absl::StrAppend(&out, "\r\n", u, "\r\n");
    if (options_.garbage) {
      for (const char* g : kGarbage) absl::StrAppend(&out, g, "\r\n");
    }
  };
  extra();
  for (const std::string& l : lines) {
    absl::StrAppend(&out, "\r\n", l, "\r\n");
    extra();
  }
  absl::StrAppend(&out, "\r\n", final, "\r\n");
  Send(out);
}

std::vector<std::string> FakeModem::Answer(const std::string& cmd,
                                           std::string* final) {
  const std::string upper = absl::AsciiStrToUpper(cmd);
  *final = "OK";
  if (!options_.cme_error_for.empty() &&
      absl::StartsWith(upper, options_.cme_error_for)) {
    *final = absl::StrCat("+CME ERROR: ", options_.cme_error);
    return {};
  }
  if (upper == "AT") return {};
  if (upper == "ATE0" || upper == "ATE1") {
    if (!options_.ate0_works) {
      *final = "ERROR";
      return {};
    }
    echo_ = upper == "ATE1";
    return {};
  }
  if (absl::StartsWith(upper, "AT+CMEE=")) {
    int v;
    if (!absl::SimpleAtoi(upper.substr(8), &v) || v < 0 || v > 2) {
      *final = "ERROR";
      return {};
    }
    cmee_ = v;
    return {};
  }
  if (upper == "AT+CIMI") {
    return {usim_->imsi()};
  }
  if (upper == "AT+CGSN") {
    if (!options_.cgsn_works) {
      *final = Error("4");
      return {};
    }
    return {options_.imei};
  }
  if (upper == "AT+CCID" || upper == "AT+QCCID" || upper == "AT+ICCID") {
    const std::string name = upper.substr(2);
    if (name != options_.iccid_command) {
      *final = "ERROR";
      return {};
    }
    if (name == "+CCID")
      return {absl::StrCat("+CCID: \"", options_.iccid, "\"")};
    return {absl::StrCat(name, ": ", options_.iccid)};
  }
  if (absl::StartsWith(upper, "AT+CSIM=")) {
    std::string line = Csim(cmd.substr(8), final);
    if (line.empty()) return {};
    return {line};
  }
  *final = "ERROR";
  return {};
}

// <length>,"<hex>" -> +CSIM: <length>,"<hex>".
std::string FakeModem::Csim(const std::string& args, std::string* final) {
  std::vector<std::string> parts =
      absl::StrSplit(args, absl::MaxSplits(',', 1));
  int len;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &len)) {
    *final = Error("50");  // incorrect parameters
    return "";
  }
  std::string hex(absl::StripAsciiWhitespace(parts[1]));
  if (hex.size() >= 2 && hex.front() == '"' && hex.back() == '"') {
    hex = hex.substr(1, hex.size() - 2);
  }
  auto apdu = HexDecode(hex);
  if (static_cast<size_t>(len) != hex.size() || !apdu.ok()) {
    *final = Error("50");
    return "";
  }
  Bytes resp = usim_->Process(*apdu);
  std::string out = absl::AsciiStrToUpper(HexEncode(resp));
  return absl::StrCat("+CSIM: ", out.size(), ",\"", out, "\"");
}

}  // namespace simprov::testing
