#include "common/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace simprov {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
constexpr const char* kJsonNames[] = {"debug", "info", "warning", "error"};
// syslog priorities: debug 7, info 6, warning 4, error 3.
constexpr const char* kPriorities[] = {"<7>", "<6>", "<4>", "<3>"};

// True when stderr is the journal's stream: JOURNAL_STREAM holds its
// "DEVICE:INODE" (systemd.exec(5)); a child that inherited the variable but
// not the stream gets no prefixes.
bool StderrIsJournal() {
  const char* v = std::getenv("JOURNAL_STREAM");
  if (v == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(v, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

// True if `text` is well-formed UTF-8 (JSON strings must be).
bool IsUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t n;  // continuation bytes after the lead byte
    if (c < 0x80) {
      n = 0;
    } else if ((c >> 5) == 6) {
      n = 1;
    } else if ((c >> 4) == 14) {
      n = 2;
    } else if ((c >> 3) == 30) {
      n = 3;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= text.size() ||
          (static_cast<unsigned char>(text[i + k]) >> 6) != 2) {
        return false;
      }
    }
    i += n + 1;
  }
  return true;
}

// `text` as a JSON string's contents: quotes, backslashes and control
// bytes escaped; bytes of text that is not UTF-8 as \u00XX.
void AppendJsonEscaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool utf8 = IsUtf8(text);
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F || (u >= 0x80 && !utf8)) {
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    } else {
      out.push_back(c);
    }
  }
}

// Appends `text` with every control byte (below 0x20, and 0x7F) escaped:
// \n, \r and \t as such, the others as \xNN. A logged value (a webhook's
// answer, a token header, a file name) can then never break the line or
// forge another one, nor send terminal escape sequences.
void AppendEscaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7F) {
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogFormat(LogFormat format) { g_format = static_cast<int>(format); }

bool ParseLogFormat(std::string_view name, LogFormat* format) {
  if (name == "text") {
    *format = LogFormat::kText;
  } else if (name == "json") {
    *format = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

std::string FormatLogLine(LogLevel level, std::string_view message,
                          std::string_view time, LogFormat format,
                          bool journald) {
  const int l = static_cast<int>(level);
  std::string line = journald ? kPriorities[l] : "";
  if (format == LogFormat::kJson) {
    line += "{\"time\":\"";
    line += time;
    line += "\",\"level\":\"";
    line += kJsonNames[l];
    line += "\",\"msg\":\"";
    AppendJsonEscaped(line, message);
    line += "\"}";
    return line;
  }
  line += time;
  line += ' ';
  line += kNames[l];
  line += ' ';
  AppendEscaped(line, message);
  return line;
}
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level; }

void LogLine(LogLevel level, std::string_view message) {
  static const bool journald = StderrIsJournal();
  const std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                            absl::UTCTimeZone());
  std::string line = FormatLogLine(
      level, message, time, static_cast<LogFormat>(g_format.load()), journald);
  line += '\n';
  // One write(2) per line so concurrent threads never interleave.
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace simprov
