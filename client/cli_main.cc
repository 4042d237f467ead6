// kvshuttle: the command-line client of kvshuttled. main() parses the global flags (and reads
// KVSHUTTLE_SOCKET, the only environment it consults) into CliOptions and runs one command.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli.h"

namespace kvshuttle::cli {
namespace {

// A command: its name ("info", "pool create"), a one-line summary, the text `--help` prints,
// and the function, which returns the exit code or an error that main prints as
// "kvshuttle: <command>: <status>" (exit code 1).
struct Command {
  const char* name;
  const char* summary;
  const char* usage;
  absl::StatusOr<int> (*run)(const CliOptions& options, absl::Span<const std::string> args);
};

constexpr char kUsage[] =
    "usage: kvshuttle [--target unix:/path|host:port | --socket PATH] [--json]\n"
    "                 [--timeout SECONDS] [--tls_ca FILE [--tls_cert FILE --tls_key FILE]]\n"
    "                 <command> [args]\n"
    "\n"
    "Talks to kvshuttled, the KV-cache block conversion daemon.\n"
    "\n"
    "global flags (before the command):\n"
    "  --target T       daemon address: unix:/path, a socket path, or host:port\n"
    "                   (default unix:$KVSHUTTLE_SOCKET or unix:/run/kvshuttle/kvshuttle.sock)\n"
    "  --socket PATH    same as --target unix:PATH\n"
    "  --json           print protobuf JSON instead of tables\n"
    "  --timeout S      connect timeout and per-call deadline in seconds (default 30)\n"
    "  --tls_ca FILE    TLS to a host:port target: CA certificates (PEM) of the daemon's\n"
    "  --tls_cert FILE  mTLS: this client's certificate (PEM), with\n"
    "  --tls_key FILE   its private key (PEM)\n"
    "\n"
    "commands:\n";

const Command kCommands[] = {
    {"info", "daemon version, GPUs, executors and limits", "usage: kvshuttle info\n", RunInfo},
    {"health", "SERVING or NOT_SERVING; exit 0 only when SERVING",
     "usage: kvshuttle health [--service NAME]\n"
     "Prints the grpc.health.v1 status. Exit code: 0 SERVING, 2 answered but not serving,\n"
     "1 no answer (suits a Kubernetes exec probe).\n",
     RunHealth},
    {"pools", "list pools", "usage: kvshuttle pools\n", RunPools},
    {"pool create", "create a daemon-owned pool",
     "usage: kvshuttle pool create NAME --layout universal|operational_nhd|operational_hnd\n"
     "         --shape nl,no,nt,nh,hd --blocks N [--dtype bf16] [--memory device|host]\n"
     "         [--gpu UUID]\n"
     "Defaults: --dtype bf16, --memory device on the daemon's first GPU.\n",
     RunPoolCreate},
    {"pool destroy", "destroy a pool", "usage: kvshuttle pool destroy NAME\n", RunPoolDestroy},
    {"sessions", "list sessions", "usage: kvshuttle sessions\n", RunSessions},
    {"stats", "job, byte and queue counters", "usage: kvshuttle stats\n", RunStats},
    {"convert", "submit a batch from a JSON file and wait for it",
     "usage: kvshuttle convert --json FILE [--wait SECONDS]\n"
     "FILE ('-' = stdin) holds a kvshuttle.v1.SubmitBatchRequest in protobuf JSON; its\n"
     "session_id is filled in. Block set ids belong to the session that registered them and\n"
     "this command opens its own session, so both sides of every job must name a pool:\n"
     "  {\"jobs\": [{\"src\": {\"pool\": \"a\"}, \"dst\": {\"pool\": \"b\"},\n"
     "             \"pairs\": [{\"srcBlock\": 0, \"dstBlock\": 3}]}]}\n"
     "Waits up to --wait seconds (default 60); exit 1 unless every job is done.\n",
     RunConvert},
    {"demo", "all 25 layout pairs through the daemon, checked byte for byte",
     "usage: kvshuttle demo [--memory host|device|auto] [--blocks N] [--shape nl,no,nt,nh,hd]\n"
     "         [--dtype bf16]\n"
     "Registers memory of its own (host shared memory, or device memory through CUDA IPC),\n"
     "converts random blocks between every ordered pair of nhd, hnd, operational_nhd,\n"
     "operational_hnd and universal, and compares each result with the CPU reference.\n"
     "Defaults: --memory auto (device when this build has CUDA and a GPU here is also the\n"
     "daemon's), --blocks 16, --shape 4,2,16,8,128, --dtype bf16. Exit 1 on any mismatch.\n",
     RunDemo},
};

void PrintUsage(std::ostream& out) {
  out << kUsage;
  for (const Command& command : kCommands) {
    out << "  " << command.name << std::string(14 - std::string(command.name).size(), ' ')
        << command.summary << "\n";
  }
  out << "\n'kvshuttle <command> --help' describes one command.\n";
}

bool IsHelp(absl::string_view arg) { return arg == "--help" || arg == "-h"; }

// If args[i] is a global flag, applies it to `options` (advancing `i` past its value) and
// returns true; returns false for any other argument.
absl::StatusOr<bool> TakeGlobalFlag(const std::vector<std::string>& args, size_t& i,
                                    bool json_is_global, CliOptions& options) {
  auto value = [&](absl::string_view flag) -> absl::StatusOr<std::string> {
    if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    return args[++i];
  };
  const std::string& arg = args[i];
  if (arg == "--target" || arg == "--socket") {
    absl::StatusOr<std::string> v = value(arg);
    if (!v.ok()) return v.status();
    options.target = arg == "--socket" ? absl::StrCat("unix:", *v) : *v;
  } else if (arg == "--tls_ca" || arg == "--tls_cert" || arg == "--tls_key") {
    absl::StatusOr<std::string> v = value(arg);
    if (!v.ok()) return v.status();
    (arg == "--tls_ca" ? options.tls_ca : arg == "--tls_cert" ? options.tls_cert
                                                              : options.tls_key) = *v;
  } else if (arg == "--json" && json_is_global) {
    options.json = true;
  } else if (arg == "--timeout") {
    absl::StatusOr<std::string> v = value(arg);
    if (!v.ok()) return v.status();
    double seconds = 0;
    if (!absl::SimpleAtod(*v, &seconds) || !(seconds > 0) || seconds > 86400) {
      return absl::InvalidArgumentError(
          absl::StrCat("--timeout: \"", *v, "\" is not a number of seconds in (0, 86400]"));
    }
    options.timeout = absl::Seconds(seconds);
  } else {
    return false;
  }
  return true;
}

// Parses the global flags before the command into `options`; returns the index of the command
// word.
absl::StatusOr<size_t> ParseGlobalFlags(const std::vector<std::string>& args,
                                        CliOptions& options) {
  size_t i = 0;
  for (; i < args.size() && absl::StartsWith(args[i], "-"); ++i) {
    absl::StatusOr<bool> taken = TakeGlobalFlag(args, i, /*json_is_global=*/true, options);
    if (!taken.ok()) return taken.status();
    if (!*taken) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", args[i], " (see --help)"));
    }
  }
  return i;
}

// Global flags may also follow the command (`kvshuttle info --json`); `convert` keeps its own
// `--json FILE`. Returns the command's arguments with the global flags taken out.
absl::StatusOr<std::vector<std::string>> CommandArgs(const std::vector<std::string>& rest,
                                                     bool json_is_global, CliOptions& options) {
  std::vector<std::string> out;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--") {
      out.insert(out.end(), rest.begin() + i, rest.end());
      break;
    }
    absl::StatusOr<bool> taken = TakeGlobalFlag(rest, i, json_is_global, options);
    if (!taken.ok()) return taken.status();
    if (!*taken) out.push_back(rest[i]);
  }
  return out;
}

int Main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  CliOptions options;
  if (const char* socket = std::getenv("KVSHUTTLE_SOCKET"); socket != nullptr && *socket) {
    options.target = absl::StrCat("unix:", socket);
  }
  if (!args.empty() && IsHelp(args.front())) {
    PrintUsage(std::cout);
    return 0;
  }
  absl::StatusOr<size_t> first = ParseGlobalFlags(args, options);
  if (!first.ok()) {
    std::cerr << "kvshuttle: " << first.status() << "\n";
    return 1;
  }
  if (*first >= args.size()) {
    PrintUsage(std::cerr);
    return 1;
  }
  // Two-word commands ("pool create") first, then one word.
  const Command* command = nullptr;
  size_t words = 0;
  for (const Command& candidate : kCommands) {
    const std::string& word = args[*first];
    const std::string two =
        *first + 1 < args.size() ? absl::StrCat(word, " ", args[*first + 1]) : word;
    if (candidate.name == two && two != word) {
      command = &candidate, words = 2;
      break;
    }
    if (candidate.name == word) command = &candidate, words = 1;
  }
  if (command == nullptr) {
    std::cerr << "kvshuttle: unknown command \"" << args[*first] << "\"";
    if (args[*first] == "pool") std::cerr << " (pool create | pool destroy)";
    std::cerr << "; see kvshuttle --help\n";
    return 1;
  }
  const absl::Span<const std::string> rest =
      absl::MakeConstSpan(args).subspan(*first + words);
  for (const std::string& arg : rest) {
    if (arg == "--") break;
    if (IsHelp(arg)) {
      std::cout << command->usage;
      return 0;
    }
  }
  absl::StatusOr<std::vector<std::string>> command_args = CommandArgs(
      std::vector<std::string>(rest.begin(), rest.end()), std::string(command->name) != "convert", options);
  if (!command_args.ok()) {
    std::cerr << "kvshuttle: " << command->name << ": " << command_args.status() << "\n";
    return 1;
  }
  absl::StatusOr<int> code = command->run(options, *command_args);
  if (!code.ok()) {
    std::cerr << "kvshuttle: " << command->name << ": " << code.status() << "\n";
    return 1;
  }
  return *code;
}

}  // namespace
}  // namespace kvshuttle::cli

int main(int argc, char** argv) { return kvshuttle::cli::Main(argc, argv); }
