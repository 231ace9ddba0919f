#include "test/testing/vpcd_card.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <winscard.h>

#include <cerrno>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace simprov::testing {

namespace {

constexpr const char* kPcscd = "/usr/sbin/pcscd";

bool PcscdAnswers() {
  SCARDCONTEXT ctx;
  if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &ctx) !=
      SCARD_S_SUCCESS) {
    return false;
  }
  SCardReleaseContext(ctx);
  return true;
}

// Reads exactly n bytes; false on EOF, error or stop.
bool ReadFull(int fd, uint8_t* p, size_t n, const std::atomic<bool>& stop) {
  size_t got = 0;
  while (got < n) {
    pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, 50);
    if (stop) return false;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t k = read(fd, p + got, n - got);
    if (k <= 0) {
      if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return false;
    }
    got += static_cast<size_t>(k);
  }
  return true;
}

bool WriteFrame(int fd, const Bytes& payload) {
  Bytes frame = {static_cast<uint8_t>(payload.size() >> 8),
                 static_cast<uint8_t>(payload.size() & 0xFF)};
  frame.insert(frame.end(), payload.begin(), payload.end());
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t k = send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (k <= 0) {
      if (k < 0 && errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(k);
  }
  return true;
}

}  // namespace

std::vector<std::string> ListPcscReaders() {
  std::vector<std::string> out;
  SCARDCONTEXT ctx;
  if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &ctx) !=
      SCARD_S_SUCCESS) {
    return out;
  }
  DWORD len = 0;
  if (SCardListReaders(ctx, nullptr, nullptr, &len) == SCARD_S_SUCCESS) {
    std::vector<char> buf(len + 1, '\0');
    if (SCardListReaders(ctx, nullptr, buf.data(), &len) == SCARD_S_SUCCESS) {
      for (size_t i = 0; i < buf.size() && buf[i] != '\0';) {
        std::string s(&buf[i]);
        i += s.size() + 1;
        out.push_back(std::move(s));
      }
    }
  }
  SCardReleaseContext(ctx);
  return out;
}

std::unique_ptr<PcscDaemon> PcscDaemon::Ensure(std::string* error) {
  auto d = std::unique_ptr<PcscDaemon>(new PcscDaemon);
  if (!PcscdAnswers()) {
    if (access(kPcscd, X_OK) != 0) {
      *error = absl::StrCat(kPcscd,
                            " not found: install pcscd and vsmartcard-vpcd "
                            "(scripts/deps)");
      return nullptr;
    }
    d->log_dir_ = MakeTempDir();
    d->process_ = std::make_unique<BackgroundProcess>(
        // Its log goes to stdout: into the log file, for failures.
        std::vector<std::string>{
            "/bin/sh", "-c",
            absl::StrCat("exec ", kPcscd, " --foreground --auto-exit 1>&2")},
        d->log_dir_ + "/pcscd.log");
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    for (const std::string& r : ListPcscReaders()) {
      // vpcd offers slots on consecutive ports; the first is kVpcdPort's.
      if (absl::StartsWith(r, "Virtual PCD") && absl::EndsWith(r, "00 00")) {
        d->reader_ = r;
        return d;
      }
    }
    if (d->process_ != nullptr && !d->process_->Running()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  *error = absl::StrCat(
      "vpcd's reader did not appear in pcscd's list (is vsmartcard-vpcd "
      "installed, and was pcscd started after it?)",
      d->process_ != nullptr
          ? absl::StrCat("; pcscd log:\n",
                         ReadFileOrEmpty(d->log_dir_ + "/pcscd.log"))
          : "");
  return nullptr;
}

PcscDaemon::~PcscDaemon() {
  if (process_ != nullptr) {
    process_->Stop();
    process_.reset();
    RemoveTree(log_dir_);
  }
}

bool PcscDaemon::WaitForCard(bool present, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  SCARDCONTEXT ctx;
  if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &ctx) !=
      SCARD_S_SUCCESS) {
    return false;
  }
  bool ok = false;
  while (absl::Now() < deadline) {
    SCARD_READERSTATE st = {};
    st.szReader = reader_.c_str();
    st.dwCurrentState = SCARD_STATE_UNAWARE;
    if (SCardGetStatusChange(ctx, 0, &st, 1) == SCARD_S_SUCCESS) {
      const bool has = (st.dwEventState & SCARD_STATE_PRESENT) &&
                       !(st.dwEventState & SCARD_STATE_MUTE);
      if (has == present) {
        ok = true;
        break;
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  SCardReleaseContext(ctx);
  return ok;
}

std::unique_ptr<VpcdCard> VpcdCard::Insert(VirtualUsim* usim, int port,
                                           absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return std::unique_ptr<VpcdCard>(new VpcdCard(usim, fd));
    }
    close(fd);
    absl::SleepFor(absl::Milliseconds(100));
  }
  return nullptr;
}

VpcdCard::VpcdCard(VirtualUsim* usim, int fd) : usim_(usim), fd_(fd) {
  usim_->Reset();
  thread_ = std::thread([this] { Run(); });
}

VpcdCard::~VpcdCard() {
  stop_ = true;
  thread_.join();
  close(fd_);
}

void VpcdCard::Run() {
  while (!stop_) {
    uint8_t len_buf[2] = {0, 0};
    const bool header = ReadFull(fd_, len_buf, 2, stop_);
    const size_t len = static_cast<size_t>(len_buf[0] << 8 | len_buf[1]);
    Bytes payload(len);
    if (!header || (len > 0 && !ReadFull(fd_, payload.data(), len, stop_))) {
      if (!stop_) dropped_ = true;  // vpcd closed the connection
      return;
    }
    if (len == 1) {
      switch (payload[0]) {
        case 0x00:  // power off
        case 0x02:  // reset
          usim_->Reset();
          break;
        case 0x01:  // power on
          ++power_ons_;
          usim_->Reset();
          break;
        case 0x04:  // ATR
          if (!WriteFrame(fd_, usim_->Atr())) return;
          break;
        default:
          break;
      }
      continue;
    }
    ++apdus_;
    if (!WriteFrame(fd_, usim_->Process(payload))) return;
  }
}

}  // namespace simprov::testing
