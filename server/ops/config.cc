// Config file parsing and the flag / environment / file / default layers.
#include "server/ops/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvshuttle {
namespace {

bool ValidKey(absl::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// Index of a '#' that starts a trailing comment (preceded by a space or tab), or npos.
size_t TrailingComment(absl::string_view value) {
  for (size_t i = 1; i < value.size(); ++i) {
    if (value[i] == '#' && (value[i - 1] == ' ' || value[i - 1] == '\t')) return i;
  }
  return absl::string_view::npos;
}

struct FileValue {
  std::string value;
  std::string origin;  // FILE:LINE
};

struct EnvValue {
  std::string value;
  std::string variable;
};

absl::Status ReadFile(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::ErrnoToStatus(errno, absl::StrCat("config file ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("config file ", path, ": read error"));
  *text = buffer.str();
  return absl::OkStatus();
}

bool IsRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

const char* OriginOf(ConfigSource source) {
  switch (source) {
    case ConfigSource::kDefault:
      return "default";
    case ConfigSource::kCommandLine:
      return "command line";
    default:
      return "";
  }
}

}  // namespace

std::string EnvVarName(absl::string_view flag_name) {
  return absl::StrCat(kEnvPrefix, absl::AsciiStrToUpper(flag_name));
}

absl::StatusOr<std::vector<ConfigLine>> ParseConfigText(absl::string_view text,
                                                        absl::string_view file_name) {
  std::vector<ConfigLine> out;
  std::map<std::string, int> seen;
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    const auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", number, ": ", what));
    };
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return error(absl::StrCat("\"", line, "\" is not a `key = value` line"));
    }
    ConfigLine entry;
    entry.line = number;
    entry.key = std::string(absl::StripAsciiWhitespace(line.substr(0, eq)));
    if (!ValidKey(entry.key)) {
      return error(absl::StrCat("\"", entry.key,
                                "\" is not a key (keys are flag names: letters, digits, _)"));
    }
    absl::string_view value = absl::StripLeadingAsciiWhitespace(line.substr(eq + 1));
    if (!value.empty() && value[0] == '"') {
      const size_t close = value.find('"', 1);
      if (close == absl::string_view::npos) {
        return error(absl::StrCat(entry.key, ": unterminated quote in ", value));
      }
      const absl::string_view rest = absl::StripAsciiWhitespace(value.substr(close + 1));
      if (!rest.empty() && rest[0] != '#') {
        return error(absl::StrCat(entry.key, ": text after the closing quote: ", rest));
      }
      entry.value = std::string(value.substr(1, close - 1));
    } else {
      const size_t comment = TrailingComment(value);
      if (comment != absl::string_view::npos) value = value.substr(0, comment);
      entry.value = std::string(absl::StripTrailingAsciiWhitespace(value));
    }
    if (auto [it, inserted] = seen.emplace(entry.key, number); !inserted) {
      return error(absl::StrCat(entry.key, ": already set on line ", it->second));
    }
    out.push_back(std::move(entry));
  }
  return out;
}

absl::StatusOr<std::vector<EffectiveFlag>> ApplyConfigLayers(const ConfigInputs& inputs) {
  std::map<std::string, absl::CommandLineFlag*, std::less<>> flags;
  for (absl::CommandLineFlag* flag : inputs.flags) flags.emplace(std::string(flag->Name()), flag);
  const auto set_on_command_line = [&](absl::string_view name) {
    return inputs.on_command_line.count(std::string(name)) > 0;
  };

  // Environment: every KVSHUTTLED_* variable must name a flag.
  std::map<std::string, EnvValue, std::less<>> env;
  for (const std::string& entry : inputs.environment) {
    const size_t eq = entry.find('=');
    const std::string variable = entry.substr(0, eq);
    if (!absl::StartsWith(variable, kEnvPrefix)) continue;
    std::string name = absl::AsciiStrToLower(variable.substr(kEnvPrefix.size()));
    if (flags.count(name) == 0 || EnvVarName(name) != variable) {
      return absl::InvalidArgumentError(absl::StrCat(
          "environment variable ", variable, " names no flag (KVSHUTTLED_<FLAG NAME>; see --help)"));
    }
    if (name == kCommandLineOnlyFlag) {
      return absl::InvalidArgumentError(absl::StrCat("environment variable ", variable, ": --",
                                                     name, " is only taken on the command line"));
    }
    env[name] = EnvValue{eq == std::string::npos ? "" : entry.substr(eq + 1), variable};
  }

  // The config file: named on the command line or in the environment (must exist), else the
  // flag's default path when that file exists.
  std::string path;
  std::string given_by;  // empty: the default path
  if (auto it = flags.find(kConfigFlag); it != flags.end()) {
    if (set_on_command_line(kConfigFlag)) {
      path = it->second->CurrentValue();
      given_by = absl::StrCat("--", kConfigFlag);
    } else if (auto e = env.find(kConfigFlag); e != env.end()) {
      path = e->second.value;
      given_by = e->second.variable;
    } else {
      path = it->second->DefaultValue();
    }
  }
  const bool read_file = !path.empty() && (!given_by.empty() || IsRegularFile(path));
  std::map<std::string, FileValue, std::less<>> file;
  if (read_file) {
    std::string text;
    if (absl::Status read = ReadFile(path, &text); !read.ok()) {
      return absl::Status(read.code(), absl::StrCat(read.message(), " (given by ", given_by, ")"));
    }
    absl::StatusOr<std::vector<ConfigLine>> lines = ParseConfigText(text, path);
    if (!lines.ok()) return lines.status();
    for (ConfigLine& line : *lines) {
      const std::string origin = absl::StrCat(path, ":", line.line);
      if (flags.count(line.key) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, ": unknown key \"", line.key, "\" (keys are kvshuttled flag names; see --help)"));
      }
      if (line.key == kConfigFlag || line.key == kCommandLineOnlyFlag) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": ", line.key, " cannot be set in the config file"));
      }
      file[line.key] = FileValue{std::move(line.value), origin};
    }
  }

  std::vector<EffectiveFlag> out;
  for (auto& [name, flag] : flags) {
    EffectiveFlag effective;
    effective.name = name;
    std::string error;
    if (set_on_command_line(name)) {
      effective.source = ConfigSource::kCommandLine;
      effective.origin = OriginOf(effective.source);
    } else if (auto e = env.find(name); e != env.end()) {
      if (!flag->ParseFrom(e->second.value, &error)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "environment variable ", e->second.variable, "=\"", e->second.value, "\": ", error));
      }
      effective.source = ConfigSource::kEnvironment;
      effective.origin = absl::StrCat("env ", e->second.variable);
    } else if (auto f = file.find(name); f != file.end()) {
      if (!flag->ParseFrom(f->second.value, &error)) {
        return absl::InvalidArgumentError(absl::StrCat(f->second.origin, ": ", name, " = \"",
                                                       f->second.value, "\": ", error));
      }
      effective.source = ConfigSource::kFile;
      effective.origin = f->second.origin;
    } else if (name == kConfigFlag && !path.empty()) {
      effective.origin = read_file ? "default (read)" : "default (no such file: none read)";
    } else {
      effective.origin = OriginOf(effective.source);
    }
    effective.value = flag->CurrentValue();
    out.push_back(std::move(effective));
  }
  return out;
}

std::set<std::string> FlagsOnCommandLine(const std::vector<std::string>& args,
                                         const std::vector<absl::CommandLineFlag*>& flags) {
  std::set<std::string, std::less<>> names;
  std::set<std::string, std::less<>> booleans;
  for (const absl::CommandLineFlag* flag : flags) {
    names.emplace(flag->Name());
    if (flag->IsOfType<bool>()) booleans.emplace(flag->Name());
  }
  std::set<std::string> out;
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    const absl::string_view name = arg.substr(0, arg.find('='));
    if (names.count(name) > 0) {
      out.emplace(name);
      // "--name value": the value is the next argument (absl takes it unless it is a boolean).
      if (arg.find('=') == absl::string_view::npos && booleans.count(name) == 0) ++i;
    } else if (absl::StartsWith(name, "no") && booleans.count(name.substr(2)) > 0) {
      out.emplace(name.substr(2));
    }
  }
  return out;
}

std::string FormatEffectiveConfig(const std::vector<EffectiveFlag>& flags) {
  std::string out = "# kvshuttled effective configuration: flag = value  # where it came from\n";
  for (const EffectiveFlag& flag : flags) {
    const absl::string_view v = flag.value;
    const bool quote = v.empty() || v.front() == '"' || absl::ascii_isspace(v.front()) ||
                       absl::ascii_isspace(v.back()) || TrailingComment(v) != absl::string_view::npos;
    absl::StrAppend(&out, flag.name, " = ", quote ? "\"" : "", v, quote ? "\"" : "", "  # ",
                    flag.origin, "\n");
  }
  return out;
}

}  // namespace kvshuttle
