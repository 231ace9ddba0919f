// Minimal structured logging to stderr: "<RFC 3339 time> <LEVEL> <message>".
//
// Callers must never pass RES, CK, IK, K, OPc or derived keys; log the IMSI
// and the outcome, not the material.
#ifndef SIMPROV_COMMON_LOG_H_
#define SIMPROV_COMMON_LOG_H_

#include <string_view>

#include "absl/strings/str_format.h"

namespace simprov {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
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
