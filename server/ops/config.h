// Configuration layers for absl flags: command line > environment (KVSHUTTLED_<FLAG>) >
// config file (`key = value` lines) > built-in default.
//
// The config file: one `key = value` per line, keys are flag names without "--"; blank lines
// and lines starting with '#' are ignored; " #" after a value starts a trailing comment; a
// value may be wrapped in double quotes (kept literally, e.g. to hold " #"); `key =` sets an
// empty value. Unknown keys, unknown KVSHUTTLED_* variables, repeated keys and values a flag
// rejects are errors naming FILE:LINE or the variable, so typos are caught at startup.
//
// The flag named kConfigFlag gives the file: given on the command line or in the environment it
// must exist (empty: no file); otherwise its default path is read only when it exists.
// kCommandLineOnlyFlag may be given only on the command line.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvshuttle {

inline constexpr absl::string_view kConfigFlag = "config";
inline constexpr absl::string_view kCommandLineOnlyFlag = "print_config";
inline constexpr absl::string_view kEnvPrefix = "KVSHUTTLED_";

// "KVSHUTTLED_" + the flag name in upper case.
std::string EnvVarName(absl::string_view flag_name);

// One `key = value` line of a config file.
struct ConfigLine {
  std::string key;
  std::string value;
  int line = 0;  // 1-based
};

// Parses config file text. INVALID_ARGUMENT "<file_name>:<line>: ..." for a line without '=',
// an empty or malformed key, an unterminated quote, or a key given twice.
absl::StatusOr<std::vector<ConfigLine>> ParseConfigText(absl::string_view text,
                                                        absl::string_view file_name);

// Where a flag's effective value came from.
enum class ConfigSource { kDefault, kFile, kEnvironment, kCommandLine };

struct EffectiveFlag {
  std::string name;
  std::string value;
  ConfigSource source = ConfigSource::kDefault;
  std::string origin;  // "default", "command line", "env KVSHUTTLED_X", "FILE:LINE"
};

struct ConfigInputs {
  // The flags the layers may set (the daemon's own, not absl's --help & co.).
  std::vector<absl::CommandLineFlag*> flags;
  // Names of the flags given on the command line (FlagsOnCommandLine).
  std::set<std::string> on_command_line;
  // The process environment as "NAME=VALUE" strings.
  std::vector<std::string> environment;
};

// Applies the environment and the config file to every flag of `inputs.flags` that was not
// given on the command line, and returns every flag's effective value and origin (sorted by
// name). Errors (INVALID_ARGUMENT, NOT_FOUND for a missing explicit file) name the file and
// line or the variable, the key and the value.
absl::StatusOr<std::vector<EffectiveFlag>> ApplyConfigLayers(const ConfigInputs& inputs);

// Names among `flags` that `args` (argv after absl::ParseCommandLine accepted it) sets: --name,
// -name, --name=value, --noname for booleans; stops at "--".
std::set<std::string> FlagsOnCommandLine(const std::vector<std::string>& args,
                                         const std::vector<absl::CommandLineFlag*>& flags);

// `--print_config` output: "name = value  # origin" per flag; values that are empty or would
// not read back verbatim are quoted.
std::string FormatEffectiveConfig(const std::vector<EffectiveFlag>& flags);

}  // namespace kvshuttle
