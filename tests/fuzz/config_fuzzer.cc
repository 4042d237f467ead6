// Fuzz target: the config file parser (server/ops/config). The input is the text of a config
// file. ParseConfigText must accept it or fail INVALID_ARGUMENT naming "FILE:LINE"; what it
// accepts has valid, distinct keys on increasing lines and single-line values; and the
// `--print_config` form of the accepted entries (FormatEffectiveConfig) parses back to the same
// keys and values. The same text, split into lines, is also an argv for FlagsOnCommandLine,
// which may only report flags it was given.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "server/ops/config.h"
#include "tests/fuzz/fuzz_util.h"

ABSL_FLAG(bool, fuzz_bool, false, "a boolean flag for FlagsOnCommandLine");
ABSL_FLAG(std::string, fuzz_string, "", "a string flag for FlagsOnCommandLine");
ABSL_FLAG(int32_t, fuzz_int, 0, "an integer flag for FlagsOnCommandLine");

namespace kvshuttle::fuzz {
namespace {

constexpr absl::string_view kFile = "fuzz.conf";

bool ValidKey(const std::string& key) {
  if (key.empty()) return false;
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_';
    if (!ok) return false;
  }
  return true;
}

void CheckParse(absl::string_view text) {
  absl::StatusOr<std::vector<ConfigLine>> lines = ParseConfigText(text, kFile);
  if (!lines.ok()) {
    KVS_FUZZ_CHECK(lines.status().code() == absl::StatusCode::kInvalidArgument &&
                       absl::StartsWith(lines.status().message(), absl::StrCat(kFile, ":")),
                   "ParseConfigText error: ", lines.status().ToString().substr(0, 300));
    return;
  }
  const int num_lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  std::set<std::string> keys;
  int previous = 0;
  std::vector<EffectiveFlag> flags;
  for (const ConfigLine& line : *lines) {
    KVS_FUZZ_CHECK(ValidKey(line.key), "accepted key \"", line.key.substr(0, 100), "\"");
    KVS_FUZZ_CHECK(keys.insert(line.key).second, "accepted key ", line.key, " twice");
    KVS_FUZZ_CHECK(line.line > previous && line.line <= num_lines, "line ", line.line,
                   " after ", previous, " of ", num_lines);
    KVS_FUZZ_CHECK(line.value.find('\n') == std::string::npos, "value spans lines");
    previous = line.line;
    flags.push_back(EffectiveFlag{line.key, line.value, ConfigSource::kFile, "fuzz.conf:1"});
  }

  // --print_config output reads back verbatim.
  const std::string printed = FormatEffectiveConfig(flags);
  absl::StatusOr<std::vector<ConfigLine>> again = ParseConfigText(printed, "printed");
  KVS_FUZZ_CHECK(again.ok(), "FormatEffectiveConfig output does not parse: ", again.status());
  KVS_FUZZ_CHECK(again->size() == lines->size(), "printed ", lines->size(), " entries, read back ",
                 again->size());
  for (size_t i = 0; i < lines->size(); ++i) {
    KVS_FUZZ_CHECK((*again)[i].key == (*lines)[i].key && (*again)[i].value == (*lines)[i].value,
                   "entry ", i, " (", (*lines)[i].key, ") reads back as ", (*again)[i].key,
                   " = \"", (*again)[i].value, "\", printed from \"", (*lines)[i].value, "\"");
  }
}

void CheckCommandLine(absl::string_view text) {
  static const std::vector<absl::CommandLineFlag*> flags = {
      absl::FindCommandLineFlag("fuzz_bool"), absl::FindCommandLineFlag("fuzz_string"),
      absl::FindCommandLineFlag("fuzz_int")};
  std::vector<std::string> args = {"kvshuttled"};
  for (absl::string_view arg : absl::StrSplit(text, '\n')) args.emplace_back(arg);
  for (const std::string& name : FlagsOnCommandLine(args, flags)) {
    KVS_FUZZ_CHECK(name == "fuzz_bool" || name == "fuzz_string" || name == "fuzz_int",
                   "FlagsOnCommandLine reported \"", name.substr(0, 100), "\"");
    bool given = false;
    for (const std::string& arg : args) given = given || arg.find(name) != std::string::npos;
    KVS_FUZZ_CHECK(given, "FlagsOnCommandLine reported ", name, ", which no argument names");
  }
}

}  // namespace
}  // namespace kvshuttle::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  kvshuttle::fuzz::CheckParse(text);
  kvshuttle::fuzz::CheckCommandLine(text);
  return 0;
}
