// Helpers shared by the CLI commands: argument parsing, layout words, tables and JSON.
#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "core/backend.h"
#include "core/dtype.h"
#include "core/layout.h"
#include "core/status_macros.h"
#include "core/transfer.h"
#include "google/protobuf/util/json_util.h"
#include "proto/proto_convert.h"

namespace kvshuttle::cli {

// ---------------------------------------------------------------------------------------------
// CommandArgs

absl::StatusOr<CommandArgs> CommandArgs::Parse(
    absl::Span<const std::string> args, std::initializer_list<absl::string_view> value_flags,
    std::initializer_list<absl::string_view> bool_flags) {
  auto contains = [](std::initializer_list<absl::string_view> list, absl::string_view name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  CommandArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      parsed.positional_.insert(parsed.positional_.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      parsed.positional_.emplace_back(arg);
      continue;
    }
    std::string name(arg.substr(2));
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    if (contains(bool_flags, name)) {
      if (has_value) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
    } else if (contains(value_flags, name)) {
      if (!has_value) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
        }
        value = args[++i];
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    parsed.flags_[name] = std::move(value);
  }
  return parsed;
}

bool CommandArgs::Has(absl::string_view flag) const { return flags_.find(flag) != flags_.end(); }

std::string CommandArgs::Get(absl::string_view flag, absl::string_view fallback) const {
  auto it = flags_.find(flag);
  return it == flags_.end() ? std::string(fallback) : it->second;
}

absl::StatusOr<std::string> CommandArgs::Require(absl::string_view flag) const {
  auto it = flags_.find(flag);
  if (it == flags_.end()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is required"));
  return it->second;
}

absl::StatusOr<uint32_t> CommandArgs::GetUint32(absl::string_view flag, uint32_t fallback,
                                                uint32_t min, uint32_t max) const {
  auto it = flags_.find(flag);
  if (it == flags_.end()) return fallback;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": \"", it->second,
                                                   "\" is not an integer in [", min, ", ", max,
                                                   "]"));
  }
  return static_cast<uint32_t>(value);
}

// ---------------------------------------------------------------------------------------------
// Connection and layout words

absl::StatusOr<std::unique_ptr<Client>> ConnectFromOptions(const CliOptions& options) {
  std::unique_ptr<Client> client;
  if (options.tls_ca.empty() && options.tls_cert.empty()) {
    ASSIGN_OR_RETURN(client, Client::Connect(options.target, options.timeout));
  } else {
    ASSIGN_OR_RETURN(const TlsOptions tls,
                     TlsOptionsFromFiles(options.tls_ca, options.tls_cert, options.tls_key));
    ASSIGN_OR_RETURN(client, Client::Connect(options.target, options.timeout, tls));
  }
  client->set_call_timeout(options.timeout);
  return client;
}

absl::StatusOr<v1::BlockShape> ParseShape(absl::string_view text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  if (parts.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shape: \"", text, "\" is not nl,no,nt,nh,hd (five comma-separated integers)"));
  }
  uint32_t values[5];
  static constexpr const char* kNames[5] = {"nl", "no", "nt", "nh", "hd"};
  for (int i = 0; i < 5; ++i) {
    uint64_t value = 0;
    if (!absl::SimpleAtoi(parts[i], &value) || value < 1 || value > uint64_t{kMaxDim}) {
      return absl::InvalidArgumentError(absl::StrCat("--shape ", kNames[i], ": \"", parts[i],
                                                     "\" is not an integer in [1, ", kMaxDim,
                                                     "]"));
    }
    values[i] = static_cast<uint32_t>(value);
  }
  v1::BlockShape shape;
  shape.set_nl(values[0]);
  shape.set_no(values[1]);
  shape.set_nt(values[2]);
  shape.set_nh(values[3]);
  shape.set_hd(values[4]);
  return shape;
}

absl::StatusOr<v1::Layout> MakeLayout(absl::string_view kind, const v1::BlockShape& shape,
                                      absl::string_view dtype) {
  ASSIGN_OR_RETURN(const LayoutKind core_kind, ParseLayoutKind(kind));
  ASSIGN_OR_RETURN(const DType core_dtype, ParseDType(dtype));
  v1::Layout layout;
  layout.set_kind(LayoutKindToProto(core_kind));
  layout.set_dtype(DTypeToProto(core_dtype));
  *layout.mutable_shape() = shape;
  RETURN_IF_ERROR(LayoutFromProto(layout, "layout").status());
  return layout;
}

absl::StatusOr<v1::MemoryKind> ParseMemoryKind(absl::string_view text) {
  if (text == "device") return v1::MEMORY_DEVICE;
  if (text == "host") return v1::MEMORY_HOST;
  return absl::InvalidArgumentError(
      absl::StrCat("--memory: \"", text, "\" is not a memory kind; allowed: device, host"));
}

std::string LayoutName(v1::LayoutKind kind) {
  absl::StatusOr<LayoutKind> core_kind = LayoutKindFromProto(kind, "kind");
  if (!core_kind.ok()) return v1::LayoutKind_Name(kind);
  return std::string(LayoutKindName(*core_kind));
}

std::string ShapeText(const v1::BlockShape& s) {
  return absl::StrCat(s.nl(), "x", s.no(), "x", s.nt(), "x", s.nh(), "x", s.hd());
}

std::string DTypeText(v1::DType dtype) {
  absl::StatusOr<DType> core_dtype = DTypeFromProto(dtype, "dtype");
  if (!core_dtype.ok()) return v1::DType_Name(dtype);
  return std::string(DTypeName(*core_dtype));
}

std::string BackendText(v1::Backend backend) {
  absl::StatusOr<Backend> core_backend = BackendFromProto(backend, "backend");
  if (!core_backend.ok()) return v1::Backend_Name(backend);
  return std::string(BackendName(*core_backend));
}

std::string MemoryText(v1::MemoryKind memory) {
  switch (memory) {
    case v1::MEMORY_DEVICE:
      return "device";
    case v1::MEMORY_HOST:
      return "host";
    default:
      return v1::MemoryKind_Name(memory);
  }
}

std::string BytesText(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const double value = static_cast<double>(bytes);
  if (bytes < (uint64_t{1} << 20)) return absl::StrFormat("%.1f KiB", value / 1024);
  if (bytes < (uint64_t{1} << 30)) return absl::StrFormat("%.1f MiB", value / (1 << 20));
  return absl::StrFormat("%.2f GiB", value / (1 << 30));
}

// ---------------------------------------------------------------------------------------------
// Output

std::string ToJson(const google::protobuf::Message& message, bool multiline) {
  google::protobuf::util::JsonPrintOptions print_options;
  print_options.add_whitespace = multiline;
  print_options.always_print_primitive_fields = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, print_options);
  if (!status.ok()) return absl::StrCat("{\"error\": \"", status.ToString(), "\"}");
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

void PrintJson(const google::protobuf::Message& message, std::ostream& out) {
  out << ToJson(message, /*multiline=*/true) << "\n";
}

Table::Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void Table::AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

}  // namespace kvshuttle::cli
