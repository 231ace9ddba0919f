#include "agent/sim/at_sim.h"

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/sim/usim_apdu.h"
#include "common/duration.h"
#include "common/imsi.h"
#include "common/log.h"

namespace simprov {

namespace {

constexpr size_t kMaxLineBytes = 4096;   // longer: garbage, dropped
constexpr size_t kMaxAnswerLines = 256;  // per command
constexpr absl::Duration kSyncAttempt = absl::Seconds(1);

speed_t BaudConstant(int baud) {
  switch (baud) {
    case 9600:
      return B9600;
    case 19200:
      return B19200;
    case 38400:
      return B38400;
    case 57600:
      return B57600;
    case 115200:
      return B115200;
    case 230400:
      return B230400;
    case 460800:
      return B460800;
    case 921600:
      return B921600;
    case 1000000:
      return B1000000;
    case 2000000:
      return B2000000;
    case 3000000:
      return B3000000;
    case 4000000:
      return B4000000;
    default:
      return 0;
  }
}

// For error messages: printable ASCII only, bounded.
std::string Printable(absl::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) {
    out.push_back(c >= 0x20 && c < 0x7F ? c : '?');
  }
  if (s.size() > 80) out += "...";
  return out;
}

// Strips spaces and control bytes (NUL, 0xFF noise) at both ends.
std::string CleanLine(absl::string_view s) {
  auto junk = [](char c) {
    unsigned char u = static_cast<unsigned char>(c);
    return u <= 0x20 || u >= 0x7F;
  };
  while (!s.empty() && junk(s.front())) s.remove_prefix(1);
  while (!s.empty() && junk(s.back())) s.remove_suffix(1);
  return std::string(s);
}

bool IsFinal(const std::string& line) {
  return line == "OK" || line == "ERROR" ||
         absl::StartsWith(line, "+CME ERROR") ||
         absl::StartsWith(line, "+CMS ERROR") || line == "COMMAND NOT SUPPORT";
}

// "+CMD: value" or "value", without quotes and spaces; returns the value.
std::string ValueOf(const std::string& line, absl::string_view prefix) {
  absl::string_view v = line;
  if (absl::StartsWithIgnoreCase(v, prefix)) {
    v.remove_prefix(prefix.size());
    if (absl::StartsWith(v, ":")) v.remove_prefix(1);
  }
  v = absl::StripAsciiWhitespace(v);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    v = v.substr(1, v.size() - 2);
  }
  return std::string(v);
}

bool ContainsIgnoreCase(absl::string_view haystack, absl::string_view needle) {
  return absl::StrContains(absl::AsciiStrToLower(haystack),
                           absl::AsciiStrToLower(needle));
}

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

// CME error numbers worth a hint (3GPP TS 27.007 9.2.1).
std::string CmeHint(const std::string& final) {
  absl::string_view code = final;
  if (!absl::ConsumePrefix(&code, "+CME ERROR:")) return "";
  code = absl::StripAsciiWhitespace(code);
  if (code == "10" || ContainsIgnoreCase(code, "not inserted")) {
    return " (no SIM in the modem)";
  }
  if (code == "11" || ContainsIgnoreCase(code, "PIN required")) {
    return " (the SIM needs its PIN: unlock it first)";
  }
  if (code == "12" || ContainsIgnoreCase(code, "PUK")) {
    return " (the SIM is PUK-locked)";
  }
  if (code == "13" || ContainsIgnoreCase(code, "failure")) {
    return " (SIM failure)";
  }
  return "";
}

bool SimBusy(const std::string& final) {
  absl::string_view code = final;
  if (!absl::ConsumePrefix(&code, "+CME ERROR:")) return false;
  code = absl::StripAsciiWhitespace(code);
  return code == "14" || ContainsIgnoreCase(code, "busy");
}

struct AtReply {
  std::string final;               // OK, ERROR, +CME ERROR: ...
  std::vector<std::string> lines;  // everything else: answers, URCs, noise
  bool ok() const { return final == "OK"; }
};

// A modem's command port.
class AtPort {
 public:
  AtPort(int fd, std::string device, absl::Duration timeout)
      : fd_(fd), device_(std::move(device)), timeout_(timeout) {}
  ~AtPort() { close(fd_); }

  const std::string& device() const { return device_; }
  absl::Duration timeout() const { return timeout_; }

  // Marks the port dead: every later command fails at once with `s`.
  absl::Status Kill(absl::Status s) {
    dead_ = s;
    return s;
  }

  // Sends `cmd` and collects lines up to the final result code. On a
  // deadline the port is dead (unless `may_retry`: the AT sync loop).
  absl::StatusOr<AtReply> Command(const std::string& cmd,
                                  absl::Duration timeout,
                                  bool may_retry = false,
                                  bool* timed_out = nullptr) {
    if (!dead_.ok()) return dead_;
    Drain();
    const std::string name = CommandName(cmd);
    const absl::Time deadline = absl::Now() + timeout;
    if (absl::Status s = WriteAll(cmd + "\r", deadline); !s.ok()) {
      return Kill(s);
    }
    AtReply reply;
    while (true) {
      size_t eol;
      while ((eol = buffer_.find_first_of("\r\n")) != std::string::npos) {
        std::string line = CleanLine(absl::string_view(buffer_).substr(0, eol));
        buffer_.erase(0, eol + 1);
        if (line.empty()) continue;
        if (absl::EqualsIgnoreCase(line, cmd)) continue;  // echo
        if (IsFinal(line)) {
          reply.final = line;
          LogDebug("modem %s: %s -> %s", device_, name, Printable(line));
          return reply;
        }
        if (reply.lines.size() >= kMaxAnswerLines) {
          return Kill(absl::AbortedError(
              absl::StrCat("modem on ", device_, " answered ", name,
                           " with more than ", kMaxAnswerLines, " lines")));
        }
        reply.lines.push_back(std::move(line));
      }
      if (buffer_.size() > kMaxLineBytes) buffer_.clear();  // endless noise
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        absl::Status s = absl::AbortedError(
            absl::StrCat("modem on ", device_, " did not answer ", name,
                         " within ", absl::FormatDuration(timeout),
                         may_retry ? "" : ": it stopped responding"));
        if (timed_out != nullptr) *timed_out = true;
        return may_retry ? s : Kill(s);
      }
      if (absl::Status s = ReadSome(left); !s.ok()) return Kill(s);
    }
  }

 private:
  // "AT+CSIM=...": the command without its arguments (they may be long or
  // carry challenge data).
  static std::string CommandName(const std::string& cmd) {
    return cmd.substr(0, cmd.find('='));
  }

  // Discards whatever arrived between commands (URCs, late noise).
  void Drain() {
    buffer_.clear();
    char buf[512];
    while (read(fd_, buf, sizeof buf) > 0) {
    }
  }

  absl::Status WriteAll(const std::string& data, absl::Time deadline) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = write(fd_, data.data() + off, data.size() - off);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return absl::AbortedError(absl::StrCat(
            "modem on ", device_, ": write failed: ", strerror(errno)));
      }
      const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (ms <= 0) {
        return absl::AbortedError(absl::StrCat(
            "modem on ", device_, ": cannot write (port blocked)"));
      }
      pollfd p = {fd_, POLLOUT, 0};
      poll(&p, 1, static_cast<int>(ms));
    }
    return absl::OkStatus();
  }

  absl::Status ReadSome(absl::Duration left) {
    pollfd p = {fd_, POLLIN, 0};
    int64_t ms =
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
    int r = poll(&p, 1, static_cast<int>(ms));
    if (r < 0 && errno != EINTR) {
      return absl::AbortedError(
          absl::StrCat("modem on ", device_, ": poll: ", strerror(errno)));
    }
    if (r <= 0) return absl::OkStatus();
    char buf[512];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return absl::OkStatus();
    if (p.revents & (POLLHUP | POLLERR) || n == 0) {
      return absl::AbortedError(
          absl::StrCat("modem on ", device_, " hung up (unplugged or reset?)"));
    }
    return absl::AbortedError(
        absl::StrCat("modem on ", device_, ": read failed: ", strerror(errno)));
  }

  const int fd_;
  const std::string device_;
  const absl::Duration timeout_;
  std::string buffer_;
  absl::Status dead_;
};

class AtSim : public SimCard {
 public:
  static absl::StatusOr<std::unique_ptr<AtSim>> Open(const AtSimOptions& o);

  absl::StatusOr<std::string> Imsi() override { return imsi_; }
  absl::StatusOr<SimAuthResult> Authenticate(const Bytes& rand,
                                             const Bytes& autn) override;
  DeviceIdentity Identity() override { return identity_; }

 private:
  explicit AtSim(std::unique_ptr<AtPort> port) : port_(std::move(port)) {}

  absl::Status Sync();
  absl::Status ReadImsi();
  absl::Status ReadImei();
  absl::Status ReadIccid();
  absl::StatusOr<Bytes> Csim(const Bytes& apdu);

  absl::Status Refused(const std::string& cmd, const AtReply& r) {
    return absl::FailedPreconditionError(
        absl::StrCat("modem on ", port_->device(), " refused ", cmd, ": ",
                     Printable(r.final), CmeHint(r.final)));
  }

  std::unique_ptr<AtPort> port_;
  std::string imsi_;
  DeviceIdentity identity_;
};

absl::StatusOr<std::unique_ptr<AtSim>> AtSim::Open(const AtSimOptions& o) {
  const speed_t speed = BaudConstant(o.baud);
  if (speed == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("at: unsupported baud rate ", o.baud));
  }
  int fd = open(o.device.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    std::string hint;
    if (e == EACCES) hint = " (is this user in the dialout group?)";
    if (e == EBUSY) hint = " (another program holds the port)";
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open modem port ", o.device, ": ", strerror(e), hint));
  }
  termios t;
  if (tcgetattr(fd, &t) != 0) {
    const int e = errno;
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(o.device, " is not a serial port: ", strerror(e)));
  }
  cfmakeraw(&t);
  t.c_cflag |= CLOCAL | CREAD;
  t.c_cflag &= ~(CSTOPB | CRTSCTS);
  t.c_cc[VMIN] = 0;
  t.c_cc[VTIME] = 0;
  cfsetispeed(&t, speed);
  cfsetospeed(&t, speed);
  if (tcsetattr(fd, TCSANOW, &t) != 0) {
    const int e = errno;
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot configure ", o.device, ": ", strerror(e)));
  }
  tcflush(fd, TCIOFLUSH);
  auto sim = std::unique_ptr<AtSim>(
      new AtSim(std::make_unique<AtPort>(fd, o.device, o.timeout)));
  if (absl::Status s = sim->Sync(); !s.ok()) return s;
  if (absl::Status s = sim->ReadImsi(); !s.ok()) return s;
  if (absl::Status s = sim->ReadImei(); !s.ok()) return s;
  if (absl::Status s = sim->ReadIccid(); !s.ok()) return s;
  return sim;
}

// A modem may miss the first AT (autobauding, or a half-typed line left
// from before): AT until it answers, within the timeout.
absl::Status AtSim::Sync() {
  const absl::Time deadline = absl::Now() + port_->timeout();
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    bool timed_out = false;
    auto r = port_->Command("AT", std::min(left, kSyncAttempt),
                            /*may_retry=*/true, &timed_out);
    if (r.ok()) break;  // OK or ERROR: something that speaks AT is there
    if (!timed_out) return r.status();
    if (absl::Now() >= deadline) {
      return port_->Kill(absl::AbortedError(absl::StrCat(
          "no modem answers on ", port_->device(), " (no reply to AT within ",
          absl::FormatDuration(port_->timeout()),
          "): wrong port, wrong baud rate, or the modem is hung")));
    }
  }
  // Optional: echo off, verbose errors. Answers other than OK are fine.
  for (const char* cmd : {"ATE0", "AT+CMEE=2"}) {
    auto r = port_->Command(cmd, port_->timeout());
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

absl::Status AtSim::ReadImsi() {
  const absl::Time deadline = absl::Now() + port_->timeout();
  while (true) {
    auto r = port_->Command("AT+CIMI", port_->timeout());
    if (!r.ok()) return r.status();
    if (!r->ok()) {
      if (SimBusy(r->final) &&
          absl::Now() + absl::Milliseconds(500) < deadline) {
        absl::SleepFor(absl::Milliseconds(500));  // SIM still initialising
        continue;
      }
      return Refused("AT+CIMI", *r);
    }
    for (const std::string& line : r->lines) {
      std::string v = ValueOf(line, "+CIMI");
      if (IsValidImsi(v)) {
        imsi_ = v;
        return absl::OkStatus();
      }
    }
    return absl::DataLossError(absl::StrCat(
        "modem on ", port_->device(), " answered AT+CIMI without an IMSI"));
  }
}

absl::Status AtSim::ReadImei() {
  auto r = port_->Command("AT+CGSN", port_->timeout());
  if (!r.ok()) return r.status();
  if (!r->ok()) return absl::OkStatus();  // optional
  for (const std::string& line : r->lines) {
    std::string v = ValueOf(line, "+CGSN");
    if (AllDigits(v) && v.size() >= 14 && v.size() <= 17) {
      identity_.imei = v;
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status AtSim::ReadIccid() {
  for (const char* cmd : {"AT+CCID", "AT+QCCID", "AT+ICCID"}) {
    auto r = port_->Command(cmd, port_->timeout());
    if (!r.ok()) return r.status();
    if (!r->ok()) continue;  // this modem lacks it
    for (const std::string& line : r->lines) {
      absl::string_view v = line;
      if (size_t colon = v.find(':'); colon != absl::string_view::npos) {
        v.remove_prefix(colon + 1);
      }
      std::string s = ValueOf(std::string(v), "");
      while (!s.empty() && (s.back() == 'F' || s.back() == 'f')) s.pop_back();
      if (AllDigits(s) && s.size() >= 18 && s.size() <= 22) {
        identity_.iccid = s;
        return absl::OkStatus();
      }
    }
  }
  return absl::OkStatus();  // optional
}

absl::StatusOr<Bytes> AtSim::Csim(const Bytes& apdu) {
  const std::string hex = absl::AsciiStrToUpper(HexEncode(apdu));
  const std::string cmd =
      absl::StrCat("AT+CSIM=", hex.size(), ",\"", hex, "\"");
  auto r = port_->Command(cmd, port_->timeout());
  if (!r.ok()) return r.status();
  if (!r->ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "modem on ", port_->device(), " refused AT+CSIM: ", Printable(r->final),
        CmeHint(r->final),
        r->final == "ERROR" ? " (does it support AT+CSIM?)" : ""));
  }
  for (const std::string& line : r->lines) {
    absl::string_view v = line;
    if (!absl::ConsumePrefix(&v, "+CSIM:")) continue;
    std::vector<std::string> parts = absl::StrSplit(v, absl::MaxSplits(',', 1));
    int len;
    if (parts.size() != 2 ||
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(parts[0]), &len)) {
      break;
    }
    std::string data = ValueOf(parts[1], "");
    auto bytes = HexDecode(data);
    if (!bytes.ok() || len < 0 || static_cast<size_t>(len) != data.size()) {
      break;
    }
    return *bytes;
  }
  return absl::DataLossError(absl::StrCat("modem on ", port_->device(),
                                          " sent a malformed +CSIM answer"));
}

absl::StatusOr<SimAuthResult> AtSim::Authenticate(const Bytes& rand,
                                                  const Bytes& autn) {
  // No Le: AT+CSIM carries T=0 TPDUs on most modems; the answer comes with
  // 61xx and GET RESPONSE, or directly when the modem fetches it itself.
  auto apdu = usim::BuildAuthenticate(rand, autn, /*with_le=*/false);
  if (!apdu.ok()) return apdu.status();
  auto r = usim::Transmit([this](const Bytes& a) { return Csim(a); }, *apdu);
  if (!r.ok()) return r.status();
  return usim::ParseAuthenticateResponse(*r);
}

}  // namespace

absl::StatusOr<AtSimOptions> ParseAtSimSpec(absl::string_view spec) {
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ',');
  AtSimOptions o;
  o.device = std::string(parts[0]);
  if (o.device.empty()) {
    return absl::InvalidArgumentError(
        "--sim at: needs a device, e.g. at:/dev/ttyUSB2");
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    absl::string_view p = parts[i];
    if (absl::ConsumePrefix(&p, "baud=")) {
      if (!absl::SimpleAtoi(p, &o.baud) || BaudConstant(o.baud) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--sim at: unsupported baud rate '", p,
            "' (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, "
            "1000000, 2000000, 3000000 or 4000000)"));
      }
    } else if (absl::ConsumePrefix(&p, "timeout=")) {
      double secs;
      absl::Duration d;
      if (absl::SimpleAtod(p, &secs) && std::isfinite(secs)) {
        d = absl::Seconds(secs);
      } else if (auto h = ParseHumanDuration(p); h.ok()) {
        d = *h;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--sim at: bad timeout '", p, "' (seconds, e.g. timeout=10)"));
      }
      if (d < absl::Milliseconds(10) || d > absl::Minutes(10)) {
        return absl::InvalidArgumentError(
            "--sim at: timeout must be between 10ms and 10 minutes");
      }
      o.timeout = d;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--sim at: unknown option '", p,
                       "' (expected baud=N or timeout=SECONDS)"));
    }
  }
  return o;
}

absl::StatusOr<std::unique_ptr<SimCard>> OpenAtSim(
    const AtSimOptions& options) {
  auto sim = AtSim::Open(options);
  if (!sim.ok()) return sim.status();
  return std::unique_ptr<SimCard>(std::move(*sim));
}

}  // namespace simprov
