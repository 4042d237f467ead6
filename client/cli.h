// The `kvshuttle` CLI: global options, the command table, and the helpers the commands share
// (argument parsing, tables for people, protobuf JSON for scripts).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "google/protobuf/message.h"

namespace kvshuttle::cli {

// Global flags, parsed by main() (the only place that reads the environment).
struct CliOptions {
  std::string target = "unix:/run/kvshuttle/kvshuttle.sock";  // --target / --socket
  bool json = false;                                          // --json
  absl::Duration timeout = absl::Seconds(30);                 // --timeout: connect and per call
  // TLS to a TCP target (kvshuttled --tls_cert): PEM files. TLS is on when tls_ca is set.
  std::string tls_ca;    // --tls_ca: CAs that signed the daemon's certificate
  std::string tls_cert;  // --tls_cert: client certificate (mTLS)
  std::string tls_key;   // --tls_key: its key
};

// The arguments of one command: "--flag value", "--flag=value", boolean "--flag", and
// positionals (everything after "--" is positional).
class CommandArgs {
 public:
  // INVALID_ARGUMENT for an unknown flag or a value flag without a value.
  static absl::StatusOr<CommandArgs> Parse(absl::Span<const std::string> args,
                                           std::initializer_list<absl::string_view> value_flags,
                                           std::initializer_list<absl::string_view> bool_flags);

  bool Has(absl::string_view flag) const;
  // The flag's value, or `fallback` when absent.
  std::string Get(absl::string_view flag, absl::string_view fallback = "") const;
  // INVALID_ARGUMENT "--flag is required" when absent.
  absl::StatusOr<std::string> Require(absl::string_view flag) const;
  // The value as an integer in [min, max]; `fallback` when absent.
  absl::StatusOr<uint32_t> GetUint32(absl::string_view flag, uint32_t fallback, uint32_t min,
                                     uint32_t max) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string, std::less<>> flags_;  // name without dashes → value
  std::vector<std::string> positional_;
};

// Connects with the global target and timeout; the timeout is also every call's deadline.
absl::StatusOr<std::unique_ptr<Client>> ConnectFromOptions(const CliOptions& options);

// "nl,no,nt,nh,hd", every value in [1, 16777216].
absl::StatusOr<v1::BlockShape> ParseShape(absl::string_view text);
// A layout from CLI words ("universal", "bf16"), validated like the daemon validates it.
absl::StatusOr<v1::Layout> MakeLayout(absl::string_view kind, const v1::BlockShape& shape,
                                      absl::string_view dtype);
// "device" or "host".
absl::StatusOr<v1::MemoryKind> ParseMemoryKind(absl::string_view text);

// "universal", "operational_nhd", ... for a proto layout kind.
std::string LayoutName(v1::LayoutKind kind);
// "4x2x16x8x128" (nl x no x nt x nh x hd).
std::string ShapeText(const v1::BlockShape& shape);
std::string DTypeText(v1::DType dtype);
// "auto", "kernel", "batch", "async".
std::string BackendText(v1::Backend backend);
// "device" / "host".
std::string MemoryText(v1::MemoryKind memory);
// Bytes for people: "512 B", "4.0 MiB", "1.50 GiB".
std::string BytesText(uint64_t bytes);

// Prints `message` as protobuf JSON (default values included) and a newline.
void PrintJson(const google::protobuf::Message& message, std::ostream& out);
// The same as a string.
std::string ToJson(const google::protobuf::Message& message, bool multiline);

// Left-aligned columns separated by two spaces, a header row first.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> row);
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Commands, one file per group.
absl::StatusOr<int> RunInfo(const CliOptions& options, absl::Span<const std::string> args);
absl::StatusOr<int> RunHealth(const CliOptions& options, absl::Span<const std::string> args);
absl::StatusOr<int> RunPools(const CliOptions& options, absl::Span<const std::string> args);
absl::StatusOr<int> RunSessions(const CliOptions& options, absl::Span<const std::string> args);
absl::StatusOr<int> RunStats(const CliOptions& options, absl::Span<const std::string> args);
absl::StatusOr<int> RunPoolCreate(const CliOptions& options, absl::Span<const std::string> args);
absl::StatusOr<int> RunPoolDestroy(const CliOptions& options,
                                   absl::Span<const std::string> args);
absl::StatusOr<int> RunConvert(const CliOptions& options, absl::Span<const std::string> args);
absl::StatusOr<int> RunDemo(const CliOptions& options, absl::Span<const std::string> args);

}  // namespace kvshuttle::cli
