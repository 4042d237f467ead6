#include "core/text_escape.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvshuttle {
namespace {

// Length of the valid UTF-8 sequence starting at text[i], or 0 when it is not one.
size_t Utf8SequenceLength(absl::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  size_t n = 0;
  uint32_t min = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  uint32_t code = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

// One byte below 0x80 with the escapes JSON and quoted text share; other control bytes as
// \u00XX (`json`) or \xXX.
void AppendAsciiEscaped(std::string& out, unsigned char c, bool json) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default:
      if (c < 0x20 || c == 0x7F) {
        // Two calls: clang checks absl format strings at compile time, so each must be a literal.
        if (json) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          absl::StrAppendFormat(&out, "\\x%02x", c);
        }
      } else {
        out += static_cast<char>(c);
      }
  }
}

bool NeedsQuotes(absl::string_view value) {
  if (value.empty()) return true;
  for (const char ch : value) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7F || c == '"' || c == '=' || c == '\\') return true;
  }
  return false;
}

}  // namespace

void AppendJsonString(std::string& out, absl::string_view text) {
  out += '"';
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      AppendAsciiEscaped(out, c, /*json=*/true);
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
    } else {
      absl::StrAppend(&out, text.substr(i, n));
      i += n;
    }
  }
  out += '"';
}

std::string JsonString(absl::string_view text) {
  std::string out;
  AppendJsonString(out, text);
  return out;
}

void AppendTextValue(std::string& out, absl::string_view value, bool force_plain) {
  if (force_plain || !NeedsQuotes(value)) {
    absl::StrAppend(&out, value);
    return;
  }
  out += '"';
  for (const char ch : value) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      out += ch;
    } else {
      AppendAsciiEscaped(out, c, /*json=*/false);
    }
  }
  out += '"';
}

}  // namespace kvshuttle
