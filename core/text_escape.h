// Escaping shared by everything that writes JSON or quoted one-line text by hand: the
// daemon's log lines and the benchmark reports.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace kvshuttle {

// Appends `text` as a JSON string literal: \" \\ \n \r \t, other control bytes as \u00XX,
// valid UTF-8 as is, every byte of invalid UTF-8 as \ufffd.
void AppendJsonString(std::string& out, absl::string_view text);
std::string JsonString(absl::string_view text);

// Appends a text-format value (a log field): as is when it needs no quotes (non-empty; no
// space, control byte, '"', '=' or '\\'), else quoted with \" \\ \n \r \t and \xNN escapes.
// `force_plain` appends it as is (numbers).
void AppendTextValue(std::string& out, absl::string_view value, bool force_plain = false);

}  // namespace kvshuttle
