// The logging facade: level filter, text and JSON line formats, one write(2) per line.
#include "server/ops/logging.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/text_escape.h"

namespace kvshuttle {
namespace {

std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_write_mutex;  // lines never interleave, even past PIPE_BUF

absl::string_view UpperLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "INFO";
}

// A message in text format: control characters escaped so that one event stays one line.
void AppendTextMessage(std::string& out, absl::string_view message) {
  for (const char ch : message) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7F) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    } else {
      out += ch;
    }
  }
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    if (text == LogLevelName(level)) return level;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("log_level: \"", text, "\"; one of debug, info, warning, error"));
}

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text) {
  if (text == "text") return LogFormat::kText;
  if (text == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(absl::StrCat("log_format: \"", text, "\"; one of text, json"));
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

void SetLogOptions(LogFormat format, LogLevel level) {
  g_format.store(static_cast<int>(format), std::memory_order_relaxed);
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string FormatLogTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", time, absl::UTCTimeZone());
}

std::string FormatLogLine(LogFormat format, LogLevel level, absl::Time time,
                          absl::string_view message, absl::Span<const LogField> fields) {
  std::string out;
  out.reserve(64 + message.size() + 24 * fields.size());
  if (format == LogFormat::kJson) {
    out += "{\"ts\":\"";
    out += FormatLogTime(time);
    out += "\",\"level\":\"";
    absl::StrAppend(&out, LogLevelName(level));
    out += "\",\"msg\":";
    AppendJsonString(out, message);
    for (const LogField& field : fields) {
      out += ',';
      AppendJsonString(out, field.key);
      out += ':';
      if (field.number) {
        out += field.value;
      } else {
        AppendJsonString(out, field.value);
      }
    }
    out += "}\n";
    return out;
  }
  out += FormatLogTime(time);
  out += ' ';
  absl::StrAppend(&out, UpperLevelName(level));
  out += " kvshuttled: ";
  AppendTextMessage(out, message);
  for (const LogField& field : fields) {
    out += ' ';
    AppendTextValue(out, field.key, /*force_plain=*/false);
    out += '=';
    AppendTextValue(out, field.value, field.number);
  }
  out += '\n';
  return out;
}

bool LogRateLimiter::Allow(absl::Time now, uint64_t* suppressed) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (now - window_start_ >= absl::Seconds(1)) {
    window_start_ = now;
    in_window_ = 0;
  }
  if (in_window_ >= per_second_) {
    ++refused_;
    return false;
  }
  ++in_window_;
  *suppressed = refused_;
  refused_ = 0;
  return true;
}

void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  const auto format = static_cast<LogFormat>(g_format.load(std::memory_order_relaxed));
  const std::string line =
      FormatLogLine(format, level, absl::Now(), message, absl::MakeConstSpan(fields.begin(), fields.size()));
  std::lock_guard<std::mutex> lock(g_write_mutex);
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr is gone; nothing better to do
    written += static_cast<size_t>(n);
  }
}

}  // namespace kvshuttle
