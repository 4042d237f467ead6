// kvshuttled: reads its configuration (flags > KVSHUTTLED_* environment > config file >
// defaults) into DaemonOptions, starts the gRPC server (kvshuttle.v1 API, grpc.health.v1,
// reflection) on a unix socket (and optionally TCP) and the metrics endpoint, tells systemd
// when it is ready, and drains on SIGTERM.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/support/log.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/server_posix.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/daemon.h"
#include "server/health_service.h"
#include "server/memory/fd_channel.h"
#include "server/net/connections.h"
#include "server/net/listener.h"
#include "server/ops/build_info.h"
#include "server/ops/config.h"
#include "server/ops/http_server.h"
#include "server/ops/logging.h"
#include "server/ops/process_stats.h"
#include "server/ops/sd_notify.h"
#include "server/service.h"
#include "server/tcp_security.h"

extern char** environ;

ABSL_FLAG(std::string, listen, "unix:/run/kvshuttle/kvshuttle.sock",
          "unix socket to serve on: unix:PATH or an absolute path");
ABSL_FLAG(std::string, tcp, "",
          "also serve on this host:port ([v6]:port; port 0 picks a free one); plaintext only on a "
          "loopback address unless --tls_cert or --allow_insecure_tcp");
ABSL_FLAG(std::string, tls_cert, "", "TLS on --tcp: the daemon's certificate chain, PEM file");
ABSL_FLAG(std::string, tls_key, "", "TLS on --tcp: the private key of --tls_cert, PEM file");
ABSL_FLAG(std::string, tls_client_ca, "",
          "mTLS on --tcp: CA certificates, PEM file; clients must present a certificate they "
          "signed (needs --tls_cert)");
ABSL_FLAG(bool, allow_insecure_tcp, false,
          "allow --tcp without TLS on a non-loopback address (whoever reaches the port can lend "
          "memory and run jobs)");
ABSL_FLAG(std::string, socket_mode, "0660", "permissions of the unix socket, octal");
ABSL_FLAG(std::string, socket_group, "",
          "group of the unix socket: a group name or numeric gid; empty: the daemon's group");
ABSL_FLAG(int, lease_seconds, 30, "lease of a session without an Attach stream");
ABSL_FLAG(int, cpu_threads, 2, "threads of the CPU executor (host-only jobs)");
ABSL_FLAG(bool, gpus, true, "use the visible GPUs (false: CPU executor only)");
ABSL_FLAG(int, drain_timeout_seconds, 30, "SIGTERM: longest wait for in-flight work");
ABSL_FLAG(int, max_sessions, 256, "sessions open at once");
ABSL_FLAG(int, max_regions_per_session, 1024, "regions per session");
ABSL_FLAG(int, max_block_sets_per_session, 1024, "block sets per session");
ABSL_FLAG(int, max_pools, 64, "pools");
ABSL_FLAG(int, max_jobs_per_batch, 4096, "jobs per SubmitBatch");
ABSL_FLAG(int, max_pairs_per_job, 65536, "block pairs per job");
ABSL_FLAG(int, queue_capacity, 8192, "queued jobs per executor (full: RESOURCE_EXHAUSTED)");
ABSL_FLAG(int, max_message_mib, 64, "largest gRPC message, MiB");
ABSL_FLAG(int, max_sessions_per_client, 64,
          "sessions one client may hold: one uid on the unix socket, one host over TCP");
ABSL_FLAG(int, max_waits_per_session, 16, "Wait calls of one session blocked at once");
ABSL_FLAG(int, max_wait_ids, 65536, "job ids one Wait may name");
ABSL_FLAG(int, gpu_slice_mib, 256,
          "a GPU job moving more than this many MiB runs in slices of whole pairs of about this "
          "size, so that other sessions' jobs interleave and it can be stopped (0: never sliced)");
ABSL_FLAG(int, session_queue_capacity, 2048,
          "queued jobs of one session per executor (sessions are served in turn)");
ABSL_FLAG(int, max_connections, 1024, "unix-socket connections open at once");
ABSL_FLAG(int, max_connections_per_uid, 128, "unix-socket connections of one uid open at once");
ABSL_FLAG(int, connection_idle_seconds, 600,
          "close a gRPC connection with no call for this long (clients reconnect by themselves)");
ABSL_FLAG(int, keepalive_seconds, 60,
          "HTTP/2 keepalive ping interval of quiet connections (a peer that does not answer "
          "within 20 s is dropped)");
ABSL_FLAG(int, grpc_memory_mib, 512,
          "memory gRPC may use for the buffers of all connections together; a message that "
          "would exceed it (one over --max_message_mib included) is refused when it reaches it");
ABSL_FLAG(int, max_rpc_threads, 512, "threads serving calls at once");
ABSL_FLAG(int, rpc_queues, 0,
          "gRPC completion queues of the server (0: a quarter of the CPUs, 1 to 8)");
ABSL_FLAG(int, rpc_pollers, 4, "threads polling each completion queue at most");
ABSL_FLAG(int64_t, metadata_budget_mib, 0,
          "daemon memory for request-made metadata (block-set tables, plans, pool metadata, "
          "Wait lists); 0: RAM/8, at most 8192");
ABSL_FLAG(int64_t, session_metadata_budget_mib, 0,
          "the share one session may take of --metadata_budget_mib; 0: a quarter of it");
ABSL_FLAG(int64_t, maps_budget, 0,
          "memory mappings of host regions, all sessions; 0: vm.max_map_count / 2");
ABSL_FLAG(int64_t, session_maps_budget, 0,
          "memory mappings of one session's host regions; 0: an eighth of --maps_budget");
ABSL_FLAG(double, pool_device_fraction, 0.5,
          "device pools of one GPU may take at most this fraction of its memory");
ABSL_FLAG(double, session_pool_fraction, 0.5,
          "pools one session created (while they exist) may use at most this fraction of each "
          "pool budget, in (0, 1]");
ABSL_FLAG(double, pool_host_fraction, 0.25,
          "pinned host pools may take at most this fraction of the machine's RAM");
ABSL_FLAG(std::string, fd_socket, "auto",
          "descriptor side channel (memfd host memory): a unix socket path, auto (the --listen "
          "path + \".fds\"), or empty for none");
ABSL_FLAG(std::string, shm_trust_group, "",
          "named shm objects of this group may be lent by any client; otherwise only the "
          "object's owner may lend it (group name or gid; empty: none)");
ABSL_FLAG(int, malloc_arena_max, 2,
          "glibc malloc arenas (mallopt M_ARENA_MAX); bounds the memory freed by gRPC's many "
          "threads but kept in per-thread arenas; 0: glibc's default (8 per core)");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9461",
          "serve Prometheus GET /metrics and GET /healthz over HTTP on host:port ([v6]:port; "
          ":port = every interface; port 0 picks a free one); empty: no metrics endpoint");
ABSL_FLAG(std::string, log_format, "text",
          "log lines on stderr: text, or json (one object per line: ts, level, msg, fields)");
ABSL_FLAG(std::string, log_level, "info", "least severe level logged: debug, info, warning, error");
ABSL_FLAG(std::string, config, "/etc/kvshuttle/kvshuttled.conf",
          "config file of `key = value` lines (keys: these flag names); the default path is "
          "read when it exists, a path given here or in KVSHUTTLED_CONFIG must exist; empty: none");
ABSL_FLAG(std::string, fault_fail_jobs_of_client, "",
          "TEST ONLY (fault injection): every job of sessions opened with this client name fails "
          "INTERNAL where it would launch; empty: off");
ABSL_FLAG(bool, print_config, false,
          "print the effective configuration (every flag, its value and where it came from: "
          "command line, environment, config file:line or default) and exit");

namespace kvshuttle {
namespace {

constexpr absl::string_view kUsage =
    "kvshuttled: KV-cache block conversion daemon.\n"
    "  kvshuttled [--listen unix:PATH] [--tcp host:port] [--metrics_address host:port] [flags]\n"
    "\n"
    "Every flag can also be set in the environment as KVSHUTTLED_<FLAG NAME IN UPPER CASE>\n"
    "(e.g. KVSHUTTLED_LOG_FORMAT=json) or in the config file (--config, default\n"
    "/etc/kvshuttle/kvshuttled.conf when it exists) as a `flag_name = value` line.\n"
    "Precedence: command line > environment > config file > default. --print_config shows the\n"
    "result; unknown keys and KVSHUTTLED_* variables are startup errors.";

// The flags of this file: the ones the config layers set and --help lists.
bool IsDaemonFlagFile(absl::string_view file) { return absl::EndsWith(file, "server/main.cc"); }

std::vector<absl::CommandLineFlag*> DaemonFlags() {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsDaemonFlagFile(flag->Filename())) flags.push_back(flag);
  }
  return flags;
}

// Where each flag's value came from, to name it in errors about that value.
using Origins = std::map<std::string, std::string, std::less<>>;

absl::Status FlagError(const Origins& origins, absl::string_view flag, absl::string_view value,
                       absl::string_view problem) {
  std::string origin;
  if (auto it = origins.find(flag); it != origins.end() && it->second != "command line") {
    origin = absl::StrCat(" (from ", it->second, ")");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=\"", value, "\"", origin, ": ", problem));
}

// The budgets of DaemonOptions from their flags, deriving the 0s from the machine.
absl::Status ResolveBudgets(const Origins& origins, DaemonOptions& o) {
  const MachineFacts machine = ReadMachineFacts();
  Budgets& b = o.budgets;
  b.host_ram_bytes = machine.ram_bytes > 0 ? machine.ram_bytes : int64_t{8} << 30;
  const int64_t metadata_mib = absl::GetFlag(FLAGS_metadata_budget_mib);
  const int64_t session_metadata_mib = absl::GetFlag(FLAGS_session_metadata_budget_mib);
  const int64_t maps = absl::GetFlag(FLAGS_maps_budget);
  const int64_t session_maps = absl::GetFlag(FLAGS_session_maps_budget);
  const std::pair<const char*, int64_t> non_negative[] = {
      {"metadata_budget_mib", metadata_mib},
      {"session_metadata_budget_mib", session_metadata_mib},
      {"maps_budget", maps},
      {"session_maps_budget", session_maps}};
  for (const auto& [name, value] : non_negative) {
    if (value < 0) return FlagError(origins, name, absl::StrCat(value), "must be ≥ 0 (0: derive)");
  }
  b.metadata_bytes = metadata_mib > 0 ? metadata_mib << 20
                                      : std::min<int64_t>(b.host_ram_bytes / 8, int64_t{8} << 30);
  b.session_metadata_bytes =
      session_metadata_mib > 0 ? session_metadata_mib << 20 : b.metadata_bytes / 4;
  const int64_t map_limit = machine.max_map_count > 0 ? machine.max_map_count : 65530;
  b.maps = maps > 0 ? maps : map_limit / 2;
  b.session_maps =
      session_maps > 0 ? session_maps : std::min<int64_t>(b.maps, std::max<int64_t>(1024, b.maps / 8));
  for (const auto& [name, value] :
       {std::pair<const char*, double>{"pool_device_fraction",
                                       absl::GetFlag(FLAGS_pool_device_fraction)},
        std::pair<const char*, double>{"pool_host_fraction",
                                       absl::GetFlag(FLAGS_pool_host_fraction)},
        std::pair<const char*, double>{"session_pool_fraction",
                                       absl::GetFlag(FLAGS_session_pool_fraction)}}) {
    if (!(value > 0 && value <= 1)) {
      return FlagError(origins, name, absl::StrCat(value), "must be in (0, 1]");
    }
  }
  b.pool_device_fraction = absl::GetFlag(FLAGS_pool_device_fraction);
  b.pool_host_fraction = absl::GetFlag(FLAGS_pool_host_fraction);
  b.session_pool_fraction = absl::GetFlag(FLAGS_session_pool_fraction);
  return absl::OkStatus();
}

absl::StatusOr<DaemonOptions> OptionsFromFlags(const Origins& origins) {
  DaemonOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  if (UnixSocketPath(o.listen).empty()) {
    return FlagError(origins, "listen", o.listen, "not a unix socket address (unix:PATH or a path)");
  }
  o.tcp_listen = absl::GetFlag(FLAGS_tcp);
  o.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (absl::Status s = CheckListenAddress(o.metrics_address);
      !o.metrics_address.empty() && !s.ok()) {
    return FlagError(origins, "metrics_address", o.metrics_address,
                     "not host:port, [ipv6]:port or :port (port 0-65535); empty: no endpoint");
  }
  const std::string mode = absl::GetFlag(FLAGS_socket_mode);
  if (!absl::numbers_internal::safe_strtou32_base(mode, &o.socket_mode, 8) ||
      o.socket_mode > 0777) {
    return FlagError(origins, "socket_mode", mode, "not an octal mode (0000-0777)");
  }
  if (const std::string group = absl::GetFlag(FLAGS_socket_group); !group.empty()) {
    absl::StatusOr<int> gid = ResolveGroup(group);
    if (!gid.ok()) {
      return FlagError(origins, "socket_group", group, "neither a group name nor a numeric gid");
    }
    o.socket_gid = *gid;
  }
  o.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.allow_insecure_tcp = absl::GetFlag(FLAGS_allow_insecure_tcp);
  if (o.tls.cert_file.empty() != o.tls.key_file.empty()) {
    return o.tls.cert_file.empty()
               ? FlagError(origins, "tls_key", o.tls.key_file, "needs --tls_cert")
               : FlagError(origins, "tls_cert", o.tls.cert_file, "needs --tls_key");
  }
  if (!o.tls.client_ca_file.empty() && o.tls.cert_file.empty()) {
    return FlagError(origins, "tls_client_ca", o.tls.client_ca_file,
                     "needs --tls_cert and --tls_key (mTLS is TLS plus client certificates)");
  }
  if (!o.tls.cert_file.empty() && o.tcp_listen.empty()) {
    return FlagError(origins, "tls_cert", o.tls.cert_file,
                     "TLS is for --tcp, which is not set (the unix socket is guarded by "
                     "--socket_mode and --socket_group)");
  }
  if (!o.tcp_listen.empty()) {
    if (!CheckListenAddress(o.tcp_listen).ok()) {
      return FlagError(origins, "tcp", o.tcp_listen,
                       "not host:port or [ipv6]:port (port 0-65535)");
    }
    if (o.tls.cert_file.empty() && !o.allow_insecure_tcp && !IsLoopbackAddress(o.tcp_listen)) {
      return FlagError(origins, "tcp", o.tcp_listen,
                       "not a loopback address, and there is no TLS: whoever reaches the port "
                       "could lend memory and run jobs; give --tls_cert and --tls_key (and "
                       "--tls_client_ca), or --allow_insecure_tcp");
    }
  }
  o.fault_fail_jobs_of_client = absl::GetFlag(FLAGS_fault_fail_jobs_of_client);
  o.lease = absl::Seconds(absl::GetFlag(FLAGS_lease_seconds));
  o.cpu_threads = absl::GetFlag(FLAGS_cpu_threads);
  o.use_gpus = absl::GetFlag(FLAGS_gpus);
  o.drain_timeout = absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_seconds));
  Limits& l = o.limits;
  l.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  l.max_regions_per_session = absl::GetFlag(FLAGS_max_regions_per_session);
  l.max_block_sets_per_session = absl::GetFlag(FLAGS_max_block_sets_per_session);
  l.max_pools = absl::GetFlag(FLAGS_max_pools);
  l.max_jobs_per_batch = absl::GetFlag(FLAGS_max_jobs_per_batch);
  l.max_pairs_per_job = absl::GetFlag(FLAGS_max_pairs_per_job);
  l.queue_capacity = absl::GetFlag(FLAGS_queue_capacity);
  l.max_message_bytes = int64_t{absl::GetFlag(FLAGS_max_message_mib)} << 20;
  l.max_sessions_per_client = absl::GetFlag(FLAGS_max_sessions_per_client);
  l.max_waits_per_session = absl::GetFlag(FLAGS_max_waits_per_session);
  l.max_wait_ids = absl::GetFlag(FLAGS_max_wait_ids);
  l.session_queue_capacity = absl::GetFlag(FLAGS_session_queue_capacity);
  if (absl::GetFlag(FLAGS_gpu_slice_mib) < 0) {
    return FlagError(origins, "gpu_slice_mib", absl::StrCat(absl::GetFlag(FLAGS_gpu_slice_mib)),
                     "must be >= 0 (0: GPU jobs are never sliced)");
  }
  l.gpu_slice_bytes = int64_t{absl::GetFlag(FLAGS_gpu_slice_mib)} << 20;
  EdgeLimits& e = o.edge;
  e.max_connections = absl::GetFlag(FLAGS_max_connections);
  e.max_connections_per_uid = absl::GetFlag(FLAGS_max_connections_per_uid);
  e.connection_idle = absl::Seconds(absl::GetFlag(FLAGS_connection_idle_seconds));
  e.keepalive_time = absl::Seconds(absl::GetFlag(FLAGS_keepalive_seconds));
  e.grpc_memory_bytes = int64_t{absl::GetFlag(FLAGS_grpc_memory_mib)} << 20;
  e.max_rpc_threads = absl::GetFlag(FLAGS_max_rpc_threads);
  e.rpc_queues = absl::GetFlag(FLAGS_rpc_queues);
  if (e.rpc_queues == 0) {
    e.rpc_queues = std::clamp(static_cast<int>(std::thread::hardware_concurrency()) / 4, 1, 8);
  }
  e.rpc_pollers = absl::GetFlag(FLAGS_rpc_pollers);
  const std::pair<const char*, int> positive[] = {
      {"rpc_queues", e.rpc_queues},
      {"rpc_pollers", e.rpc_pollers},
      {"max_sessions_per_client", l.max_sessions_per_client},
      {"max_waits_per_session", l.max_waits_per_session},
      {"max_wait_ids", l.max_wait_ids},
      {"session_queue_capacity", l.session_queue_capacity},
      {"max_connections", e.max_connections},
      {"max_connections_per_uid", e.max_connections_per_uid},
      {"connection_idle_seconds", absl::GetFlag(FLAGS_connection_idle_seconds)},
      {"keepalive_seconds", absl::GetFlag(FLAGS_keepalive_seconds)},
      {"grpc_memory_mib", absl::GetFlag(FLAGS_grpc_memory_mib)},
      {"max_rpc_threads", e.max_rpc_threads},
      {"max_sessions", l.max_sessions},
      {"max_regions_per_session", l.max_regions_per_session},
      {"max_block_sets_per_session", l.max_block_sets_per_session},
      {"max_pools", l.max_pools},
      {"max_jobs_per_batch", l.max_jobs_per_batch},
      {"max_pairs_per_job", l.max_pairs_per_job},
      {"queue_capacity", l.queue_capacity},
      {"cpu_threads", o.cpu_threads},
      {"lease_seconds", absl::GetFlag(FLAGS_lease_seconds)},
      {"max_message_mib", absl::GetFlag(FLAGS_max_message_mib)},
  };
  for (const auto& [name, value] : positive) {
    if (value < 1) return FlagError(origins, name, absl::StrCat(value), "must be ≥ 1");
  }
  if (absl::GetFlag(FLAGS_drain_timeout_seconds) < 0) {
    return FlagError(origins, "drain_timeout_seconds",
                     absl::StrCat(absl::GetFlag(FLAGS_drain_timeout_seconds)), "must be ≥ 0");
  }
  if (absl::GetFlag(FLAGS_malloc_arena_max) < 0) {
    return FlagError(origins, "malloc_arena_max", absl::StrCat(absl::GetFlag(FLAGS_malloc_arena_max)),
                     "must be ≥ 0 (0: glibc's default)");
  }
  if (absl::Status s = ResolveBudgets(origins, o); !s.ok()) return s;
  const std::string fd_socket = absl::GetFlag(FLAGS_fd_socket);
  o.fd_socket = fd_socket == "auto" ? UnixSocketPath(o.listen) + ".fds" : fd_socket;
  if (const std::string group = absl::GetFlag(FLAGS_shm_trust_group); !group.empty()) {
    absl::StatusOr<int> gid = ResolveGroup(group);
    if (!gid.ok()) {
      return FlagError(origins, "shm_trust_group", group, "neither a group name nor a numeric gid");
    }
    o.shm_trust_gid = *gid;
  }
  if (absl::GetFlag(FLAGS_max_message_mib) > 2047) {
    return FlagError(origins, "max_message_mib", absl::StrCat(absl::GetFlag(FLAGS_max_message_mib)),
                     "must be < 2048 (gRPC sizes are int)");
  }
  return o;
}

// gRPC's own log lines go through the facade (so --log_format=json output stays JSON).
void GrpcLog(gpr_log_func_args* args) {
  const LogLevel level = args->severity == GPR_LOG_SEVERITY_ERROR  ? LogLevel::kError
                         : args->severity == GPR_LOG_SEVERITY_INFO ? LogLevel::kInfo
                                                                   : LogLevel::kDebug;
  Log(level, args->message != nullptr ? args->message : "",
      {{"source", "grpc"}, {"file", args->file != nullptr ? args->file : ""}, {"line", args->line}});
}

// systemd's variables, read by main (the only reader of the environment).
struct SystemdEnv {
  std::string notify_socket;
  std::string watchdog_usec;
  std::string watchdog_pid;
};

std::string GetEnv(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

void Notify(const SdNotifier& notifier, absl::string_view state) {
  if (absl::Status s = notifier.Notify(state); !s.ok()) {
    LogWarning("sd_notify failed", {{"error", s.ToString()}});
  }
}

int Run(const DaemonOptions& options, const SystemdEnv& systemd) {
  const std::string socket_path = UnixSocketPath(options.listen);  // non-empty: checked
  if (absl::Status s = PrepareSocketPath(socket_path); !s.ok()) {
    LogError(s.message());
    return 1;
  }
  const SdNotifier notifier(systemd.notify_socket);
  absl::StatusOr<std::optional<absl::Duration>> watchdog_interval =
      WatchdogInterval(systemd.watchdog_usec, systemd.watchdog_pid, ::getpid());
  if (!watchdog_interval.ok()) {
    LogWarning("systemd watchdog disabled", {{"error", watchdog_interval.status().ToString()}});
    watchdog_interval = std::optional<absl::Duration>();
  }
  // SIGTERM/SIGINT are taken by a dedicated thread (sigwait); block them everywhere first
  // (every thread started below inherits the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Create(options, CreateGpuRuntime());
  if (!daemon.ok()) {
    LogError(daemon.status().ToString());
    return 1;
  }
  DaemonMetrics& metrics = (*daemon)->metrics();
  std::unique_ptr<HttpServer> metrics_server;
  if (!options.metrics_address.empty()) {
    Daemon* raw = daemon->get();
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(
        options.metrics_address, [raw](absl::string_view path) -> HttpResponse {
          if (path == "/metrics") {
            return {200, std::string(metrics::kContentType), raw->metrics().registry().Render()};
          }
          if (path == "/healthz") {
            if (raw->draining()) return {503, "text/plain; charset=utf-8", "draining\n"};
            if (!raw->metrics().serving()) return {503, "text/plain; charset=utf-8", "starting\n"};
            return {200, "text/plain; charset=utf-8", "ok\n"};
          }
          return {404, "text/plain; charset=utf-8", "not found; see /metrics and /healthz\n"};
        });
    if (!started.ok()) {
      LogError(absl::StrCat("--metrics_address: cannot serve metrics on ",
                            started.status().message()));
      return 1;
    }
    metrics_server = *std::move(started);
  }

  // Set before the server starts: RPC threads read it (GetInfo) as soon as it accepts.
  (*daemon)->set_listen_address("unix:" + socket_path);
  ConnectionTable connections;
  ShuttleService service(**daemon, connections);
  HealthService health({std::string(kvshuttle::v1::Shuttle::service_full_name())});
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int tcp_port = 0;  // the bound port, once started
  if (!options.tcp_listen.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
        TcpServerCredentials(options.tls);
    if (!credentials.ok()) {
      LogError(credentials.status().message());
      return 1;
    }
    builder.AddListeningPort(options.tcp_listen, *credentials, &tcp_port);
  }
  builder.RegisterService(&service);
  builder.RegisterService(&health);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.limits.max_message_bytes));
  // Connection hygiene: idle connections are closed (clients reconnect by themselves), quiet
  // ones are pinged, and gRPC's buffers of all connections together are bounded — a message
  // over the cap is refused when the buffers reach the bound instead of being read whole.
  const EdgeLimits& edge = options.edge;
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(edge.connection_idle)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(edge.keepalive_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(edge.keepalive_timeout)));
  grpc::ResourceQuota quota("kvshuttled");
  quota.Resize(static_cast<size_t>(edge.grpc_memory_bytes));
  quota.SetMaxThreads(edge.max_rpc_threads);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, edge.rpc_queues);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              std::max(edge.rpc_pollers, 1));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    LogError(absl::StrCat("cannot start the gRPC server",
                          options.tcp_listen.empty() ? "" : " on ", options.tcp_listen));
    return 1;
  }
  // The unix socket is ours: accepted connections are handed to gRPC with their peer's
  // credentials recorded (server/net/connections.h). Bound under a private name and published
  // once its mode and group are set (PublishSocket).
  const std::string bound_path = StagingSocketPath(socket_path, ::getpid());
  const mode_t old_umask = umask(0777 & ~options.socket_mode);
  absl::StatusOr<int> listen_fd = BindUnixSocket(bound_path);
  umask(old_umask);
  if (!listen_fd.ok()) {
    LogError(absl::StrCat("cannot listen on ", options.listen, ": ", listen_fd.status().message()));
    server->Shutdown();
    return 1;
  }
  grpc::Server* raw_server = server.get();
  UnixAcceptor acceptor(*listen_fd,
                        ConnectionLimits{edge.max_connections, edge.max_connections_per_uid},
                        connections,
                        [raw_server](int fd) { grpc::AddInsecureChannelFromFd(raw_server, fd); });
  if (absl::Status s =
          PublishSocket(bound_path, socket_path, options.socket_mode, options.socket_gid);
      !s.ok()) {
    LogError(s.message());
    acceptor.Stop();
    server->Shutdown();
    return 1;
  }
  std::unique_ptr<FdChannel> fd_channel;
  if (!options.fd_socket.empty()) {
    absl::Status prepared = PrepareSocketPath(options.fd_socket);
    absl::StatusOr<std::unique_ptr<FdChannel>> started =
        prepared.ok() ? FdChannel::Start(options.fd_socket, options.socket_mode,
                                         options.socket_gid, (*daemon)->fd_tokens())
                      : absl::StatusOr<std::unique_ptr<FdChannel>>(prepared);
    if (!started.ok()) {
      LogError(absl::StrCat("--fd_socket: ", started.status().message()));
      acceptor.Stop();
      server->Shutdown();
      unlink(socket_path.c_str());
      return 1;
    }
    fd_channel = *std::move(started);
  }
  // The TCP address as bound (port 0 in --tcp picks a free port).
  const std::string tcp_bound =
      options.tcp_listen.empty()
          ? std::string()
          : absl::StrCat(options.tcp_listen.substr(0, options.tcp_listen.rfind(':')), ":",
                         tcp_port);
  health.SetServing(true);
  metrics.set_serving(true);

  int gpus = 0;
  for (const DaemonSnapshot::QueueState& q : (*daemon)->Snapshot().queues) {
    if (q.executor != ExecutorLabel(-1)) ++gpus;
  }
  const std::string metrics_url =
      metrics_server ? absl::StrCat("http://", metrics_server->bound_address(), "/metrics")
                     : std::string("off");
  LogInfo(absl::StrCat("serving on unix:", socket_path, tcp_bound.empty() ? "" : " and ",
                       tcp_bound),
          {{"version", BuildVersion()},
           {"commit", BuildCommit()},
           {"socket_mode", absl::StrFormat("%04o", options.socket_mode)},
           {"socket_group", options.socket_gid >= 0 ? absl::StrCat(options.socket_gid)
                                                    : std::string("default")},
           {"tcp_security", tcp_bound.empty()                     ? "off"
                            : !options.tls.client_ca_file.empty() ? "mtls"
                            : !options.tls.cert_file.empty()      ? "tls"
                                                                  : "plaintext"},
           {"gpus", gpus},
           {"metrics", metrics_url}});
  Notify(notifier, absl::StrCat("READY=1\nSTATUS=serving on unix:", socket_path, ", ", gpus,
                                gpus == 1 ? " GPU" : " GPUs", ", metrics ", metrics_url));
  std::unique_ptr<Watchdog> watchdog;
  if (notifier.enabled() && watchdog_interval->has_value()) {
    // A ping only after the daemon's state answered: a deadlocked daemon stops pinging.
    Daemon* raw = daemon->get();
    watchdog = std::make_unique<Watchdog>(notifier, **watchdog_interval, [raw] {
      v1::GetStatsResponse stats;
      return raw->GetStats(CallContext{}, v1::GetStatsRequest(), &stats).ok();
    });
  }

  int sig = 0;
  sigwait(&signals, &sig);
  LogInfo("draining", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  Notify(notifier, absl::StrCat("STOPPING=1\nSTATUS=draining (",
                                sig == SIGTERM ? "SIGTERM" : "SIGINT", ")"));
  metrics.set_serving(false);
  health.SetServing(false);  // every service, kvshuttle.v1.Shuttle included
  (*daemon)->BeginDrain();
  // Everything below ends within drain_timeout + 1 s: queued and running jobs get the drain
  // timeout, then are cancelled or stopped at a chunk boundary; streams and calls left get 1 s.
  const absl::Time drain_deadline = absl::Now() + options.drain_timeout;
  (*daemon)->Drain(drain_deadline);
  acceptor.Stop();
  fd_channel.reset();
  health.Shutdown();
  server->Shutdown(absl::ToChronoTime(std::max(absl::Now(), drain_deadline) + absl::Milliseconds(500)));
  unlink(socket_path.c_str());
  ::close(*listen_fd);
  watchdog.reset();
  metrics_server.reset();  // its handler reads the daemon
  server.reset();          // joins the RPC threads, which call into the daemon
  daemon->reset();
  LogInfo("stopped");
  return 0;
}

// Parses flags and the config layers, then runs. Exit status 2: bad configuration.
int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage;
  usage.contains_helpshort_flags = IsDaemonFlagFile;
  usage.contains_help_flags = IsDaemonFlagFile;
  usage.normalize_filename = [](absl::string_view file) {
    return IsDaemonFlagFile(file) ? std::string("server/main.cc") : std::string(file);
  };
  usage.version_string = [] { return VersionLine() + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  const auto fail = [](absl::string_view message) {
    std::fprintf(stderr, "kvshuttled: %s\n", std::string(message).c_str());
    return 2;
  };
  if (positional.size() > 1) {
    return fail(absl::StrCat("unexpected argument \"", positional[1], "\" (flags start with --)"));
  }

  ConfigInputs inputs;
  inputs.flags = DaemonFlags();
  inputs.on_command_line = FlagsOnCommandLine({argv, argv + argc}, inputs.flags);
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) inputs.environment.emplace_back(*e);
  absl::StatusOr<std::vector<EffectiveFlag>> config = ApplyConfigLayers(inputs);
  if (!config.ok()) return fail(config.status().message());
  Origins origins;
  for (const EffectiveFlag& flag : *config) origins[flag.name] = flag.origin;

  const std::string log_format = absl::GetFlag(FLAGS_log_format);
  absl::StatusOr<LogFormat> format = ParseLogFormat(log_format);
  if (!format.ok()) {
    return fail(FlagError(origins, "log_format", log_format, "one of text, json").message());
  }
  const std::string log_level = absl::GetFlag(FLAGS_log_level);
  absl::StatusOr<LogLevel> level = ParseLogLevel(log_level);
  if (!level.ok()) {
    return fail(FlagError(origins, "log_level", log_level, "one of debug, info, warning, error")
                    .message());
  }
  absl::StatusOr<DaemonOptions> options = OptionsFromFlags(origins);
  if (!options.ok()) return fail(options.status().message());
  // Printed only for a configuration that would start: --print_config doubles as a check.
  if (absl::GetFlag(FLAGS_print_config)) {
    std::fputs(FormatEffectiveConfig(*config).c_str(), stdout);
    return 0;
  }
  SetLogOptions(*format, *level);
  // Before any thread starts. glibc gives each thread that contends for malloc an arena of its
  // own (up to 8 per core) and keeps what those threads free; under 64 clients that held ~60-80
  // MiB more after each load round on an H100, where 2 arenas held 0.4 MiB (docs/load.md).
  if (const int arenas = absl::GetFlag(FLAGS_malloc_arena_max); arenas > 0) {
    if (mallopt(M_ARENA_MAX, arenas) != 1) {
      Log(LogLevel::kDebug, "mallopt(M_ARENA_MAX) not applied (not glibc's allocator)", {});
    }
  }
  gpr_set_log_function(GrpcLog);
  return Run(*options, {GetEnv("NOTIFY_SOCKET"), GetEnv("WATCHDOG_USEC"), GetEnv("WATCHDOG_PID")});
}

}  // namespace
}  // namespace kvshuttle

int main(int argc, char** argv) { return kvshuttle::Main(argc, argv); }
