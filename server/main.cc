// kvshuttled: parses flags into DaemonOptions, starts the gRPC server (kvshuttle.v1 API,
// grpc.health.v1, reflection) on a unix socket (and optionally TCP), and drains on SIGTERM.
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/daemon.h"
#include "server/listener.h"
#include "server/service.h"

ABSL_FLAG(std::string, listen, "unix:/run/kvshuttle/kvshuttle.sock",
          "unix socket to serve on: unix:PATH or an absolute path");
ABSL_FLAG(std::string, tcp, "", "also serve on this host:port (no TLS; keep it on loopback)");
ABSL_FLAG(std::string, socket_mode, "0660", "permissions of the unix socket, octal");
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

namespace kvshuttle {
namespace {

absl::StatusOr<DaemonOptions> OptionsFromFlags() {
  DaemonOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.tcp_listen = absl::GetFlag(FLAGS_tcp);
  if (!absl::numbers_internal::safe_strtou32_base(absl::GetFlag(FLAGS_socket_mode),
                                                   &o.socket_mode, 8) ||
      o.socket_mode > 0777) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--socket_mode: \"", absl::GetFlag(FLAGS_socket_mode), "\" is not an octal mode"));
  }
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
  for (int v : {l.max_sessions, l.max_regions_per_session, l.max_block_sets_per_session,
                l.max_pools, l.max_jobs_per_batch, l.max_pairs_per_job, l.queue_capacity,
                o.cpu_threads, absl::GetFlag(FLAGS_lease_seconds),
                absl::GetFlag(FLAGS_max_message_mib)}) {
    if (v < 1) return absl::InvalidArgumentError("limits, threads and lease must be ≥ 1");
  }
  return o;
}

int Run(const DaemonOptions& options) {
  const std::string socket_path = UnixSocketPath(options.listen);
  if (socket_path.empty()) {
    std::fprintf(stderr, "kvshuttled: --listen %s is not a unix socket address\n",
                 options.listen.c_str());
    return 2;
  }
  if (absl::Status s = PrepareSocketPath(socket_path); !s.ok()) {
    std::fprintf(stderr, "kvshuttled: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  // SIGTERM/SIGINT are taken by a dedicated thread (sigwait); block them everywhere first.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Create(options, CreateGpuRuntime());
  if (!daemon.ok()) {
    std::fprintf(stderr, "kvshuttled: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  ShuttleService service(**daemon);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  if (!options.tcp_listen.empty()) {
    builder.AddListeningPort(options.tcp_listen, grpc::InsecureServerCredentials());
  }
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.limits.max_message_bytes));
  const mode_t old_umask = umask(0777 & ~options.socket_mode);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (server == nullptr) {
    std::fprintf(stderr, "kvshuttled: cannot listen on %s%s%s\n", options.listen.c_str(),
                 options.tcp_listen.empty() ? "" : " / ", options.tcp_listen.c_str());
    return 1;
  }
  chmod(socket_path.c_str(), options.socket_mode);
  (*daemon)->set_listen_address("unix:" + socket_path);
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kvshuttle::v1::Shuttle::service_full_name(), true);
  std::fprintf(stderr, "kvshuttled: serving on unix:%s%s%s (socket mode %04o)\n",
               socket_path.c_str(), options.tcp_listen.empty() ? "" : " and ",
               options.tcp_listen.c_str(), options.socket_mode);

  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "kvshuttled: %s: draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  health->SetServingStatus(false);  // every service, kvshuttle.v1.Shuttle included
  (*daemon)->BeginDrain();
  std::thread drain([&] { (*daemon)->Drain(); });
  drain.join();
  server->Shutdown(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(options.drain_timeout));
  daemon->reset();
  unlink(socket_path.c_str());
  std::fprintf(stderr, "kvshuttled: stopped\n");
  return 0;
}

}  // namespace
}  // namespace kvshuttle

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kvshuttled: KV-cache block conversion daemon.\n  kvshuttled [--listen unix:PATH] "
      "[--tcp host:port] [flags]");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<kvshuttle::DaemonOptions> options = kvshuttle::OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "kvshuttled: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  return kvshuttle::Run(*options);
}
