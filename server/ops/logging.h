// kvshuttled's one logging facade: one line per event on stderr, as text or JSON lines, with
// a level filter. Everything the daemon logs goes through Log(); gRPC's own log lines are
// routed here by main.cc.
//
// text: 2025-01-02T03:04:05.123456Z INFO kvshuttled: session opened session=ab12 client="w 0"
// json: {"ts":"2025-01-02T03:04:05.123456Z","level":"info","msg":"session opened",
//        "session":"ab12","client":"w 0"}
//
// Never pass IPC handle bytes (or other secrets) as a field or inside a message.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace kvshuttle {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

// "debug" | "info" | "warning" | "error"; INVALID_ARGUMENT naming the value and the choices.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
// "text" | "json"; INVALID_ARGUMENT naming the value and the choices.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text);
absl::string_view LogLevelName(LogLevel level);  // "debug", "info", ...

// One key/value field of a log line. Numbers stay numbers in JSON; everything else is a string.
struct LogField {
  LogField(absl::string_view k, absl::string_view v) : key(k), value(v) {}
  LogField(absl::string_view k, const char* v) : key(k), value(v) {}
  LogField(absl::string_view k, const std::string& v) : key(k), value(v) {}
  template <typename T,
            typename = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>>
  LogField(absl::string_view k, T v)
      : key(k), value(absl::StrCat(v)), number(std::is_integral_v<T> || std::isfinite(v)) {}
  LogField(absl::string_view k, bool v) : key(k), value(v ? "true" : "false"), number(true) {}

  absl::string_view key;
  std::string value;
  bool number = false;  // written without quotes in JSON
};

// Process-wide settings; call before other threads log (startup). Default: text, info.
void SetLogOptions(LogFormat format, LogLevel level);
bool LogEnabled(LogLevel level);

// Writes one line to stderr (one write call) when `level` is enabled.
void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields = {});
inline void LogDebug(absl::string_view message, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kDebug, message, fields);
}
inline void LogInfo(absl::string_view message, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, message, fields);
}
inline void LogWarning(absl::string_view message, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarning, message, fields);
}
inline void LogError(absl::string_view message, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, message, fields);
}

// Bounds events that can come in floods (e.g. one per failed job when a GPU is lost): at most
// `per_second` are let through in each one-second window. Thread-safe.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(int per_second) : per_second_(per_second) {}
  // True when this event may be logged at `now`; `*suppressed` then gets the number of events
  // refused since the last one let through.
  bool Allow(absl::Time now, uint64_t* suppressed);

 private:
  const int per_second_;
  std::mutex mutex_;
  absl::Time window_start_ = absl::InfinitePast();
  int in_window_ = 0;
  uint64_t refused_ = 0;
};

// The line Log writes, newline included. ts: RFC 3339, UTC, microseconds. Text values that are
// empty or hold spaces, quotes, '=' or control characters are quoted with C-style escapes; JSON
// strings escape per RFC 8259, with invalid UTF-8 replaced by U+FFFD.
std::string FormatLogLine(LogFormat format, LogLevel level, absl::Time time,
                          absl::string_view message, absl::Span<const LogField> fields);

// RFC 3339 UTC with microseconds: "2025-01-02T03:04:05.123456Z".
std::string FormatLogTime(absl::Time time);

}  // namespace kvshuttle
