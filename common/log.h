// Logging to stderr, one line per message, in one write(2):
//  - text (default): "<RFC 3339 time> <LEVEL> <message>";
//  - json: {"time":"...","level":"info","msg":"..."} (JSON lines).
// Control characters in messages are escaped, so a logged value can never
// start a line of its own. Under systemd (JOURNAL_STREAM names stderr) each
// line starts with its syslog priority ("<4>" for a warning), so
// `journalctl -p warning` selects by level.
//
// Callers must never pass RES, CK, IK, K, OPc or derived keys; log the IMSI
// and the outcome, not the material.
#ifndef SIMPROV_COMMON_LOG_H_
#define SIMPROV_COMMON_LOG_H_

#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace simprov {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

enum class LogFormat { kText, kJson };

void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
// "text" or "json"; false for anything else.
bool ParseLogFormat(std::string_view name, LogFormat* format);
// The line LogLine writes (without the newline), for tests.
std::string FormatLogLine(LogLevel level, std::string_view message,
                          std::string_view time, LogFormat format,
                          bool journald);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (LogEnabled(LogLevel::kInfo)) {
    LogLine(LogLevel::kInfo, absl::StrFormat(fmt, args...));
  }
}
template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (LogEnabled(LogLevel::kWarning)) {
    LogLine(LogLevel::kWarning, absl::StrFormat(fmt, args...));
  }
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  LogLine(LogLevel::kError, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void LogDebug(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (LogEnabled(LogLevel::kDebug)) {
    LogLine(LogLevel::kDebug, absl::StrFormat(fmt, args...));
  }
}

}  // namespace simprov

#endif  // SIMPROV_COMMON_LOG_H_
