// kvs_load: N clients × M jobs against a running kvshuttled over its socket. Reports jobs/s,
// payload GB/s, latency percentiles and errors by gRPC code, checks sampled destinations byte
// for byte against the CPU reference, and compares the daemon's resident memory, open
// descriptors and threads before and after (both measured idle, after a warm-up round), so
// growth means a leak rather than first use. Exit status: 0 pass, 1 errors or growth beyond the
// thresholds, 2 bad flags or no daemon. docs/load.md describes flags and output.
//   kvs_load --target=unix:/run/kvshuttle/kvshuttle.sock --clients=8 --jobs=200
//            --daemon_pid=$(pidof kvshuttled) --out=load.json
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/load_client.h"
#include "bench/load_memory.h"
#include "bench/load_probe.h"
#include "bench/load_report.h"
#include "bench/load_round.h"
#include "bench/load_watch.h"
#include "client/client.h"
#include "core/status_macros.h"

#ifndef KVS_LOAD_COMMIT
#define KVS_LOAD_COMMIT "unknown"
#endif

ABSL_FLAG(std::string, target, "unix:/run/kvshuttle/kvshuttle.sock",
          "the daemon: unix:PATH (or a path, or host:port for its --tcp address)");
ABSL_FLAG(int, clients, 8, "concurrent clients, each with its own channel, session and memory");
ABSL_FLAG(bool, processes, false,
          "one process per client (own connection, own CUDA context) instead of one thread");
ABSL_FLAG(int64_t, jobs, 200, "measured jobs per client");
ABSL_FLAG(int64_t, warmup_jobs, 20,
          "jobs per client of a warm-up round before the 'before' sample (0: none)");
ABSL_FLAG(int, warmup_rounds, 3,
          "at most this many warm-up rounds: repeated until one leaves the daemon's idle fd and "
          "thread counts unchanged");
ABSL_FLAG(int64_t, batch, 4, "jobs per SubmitBatch");
ABSL_FLAG(int64_t, pairs, 1, "block pairs per job");
ABSL_FLAG(int64_t, blocks, 16, "blocks of each side's block set, per client (>= batch * pairs)");
ABSL_FLAG(std::string, memory, "host", "host (shared memory) or device (CUDA IPC)");
ABSL_FLAG(std::string, shape, "4,2,16,8,128", "block shape nl,no,nt,nh,hd (both sides)");
ABSL_FLAG(std::string, dtype, "bf16", "element type");
ABSL_FLAG(std::string, layouts, "nhd:universal", "source:destination layouts");
ABSL_FLAG(int64_t, verify_every, 10,
          "check job k's destination against the CPU reference when k % N == 0 (0: never)");
ABSL_FLAG(std::string, completion, "wait",
          "wait (a Wait RPC per batch) or events (job_done events on the Attach stream)");
ABSL_FLAG(int, job_timeout_s, 60, "longest wait for one batch to complete");
ABSL_FLAG(uint64_t, seed, 1, "random seed (client i uses seed + i)");
ABSL_FLAG(std::string, out, "", "write the JSON report here (it also goes to stdout)");
ABSL_FLAG(std::string, daemon_metrics, "",
          "the daemon's metrics URL, e.g. http://127.0.0.1:9461/metrics: sample its "
          "kvshuttle_process_* gauges before and after");
ABSL_FLAG(int, daemon_pid, 0, "the daemon's pid: sample /proc/PID before and after");
ABSL_FLAG(int, settle_ms, 1000, "idle time after the sessions closed before sampling");
ABSL_FLAG(int, settle_timeout_s, 15, "longest wait for sessions to close and figures to settle");
ABSL_FLAG(int64_t, max_fd_growth, 0, "fail when the daemon's open fds grew by more");
ABSL_FLAG(int64_t, max_thread_growth, 0,
          "fail when the daemon's threads grew by more (with --daemon_pid, threads of gRPC's "
          "internal pools, which grow lazily and shrink late or never, do not count)");
ABSL_FLAG(int64_t, max_rss_growth_mib, 64, "fail when the daemon's resident memory grew by more");
ABSL_FLAG(std::string, commit, KVS_LOAD_COMMIT, "commit recorded in the report");
ABSL_FLAG(bool, progress, true, "a progress line on stderr every second");
// Internal: the tool starts itself with these in --processes mode.
ABSL_FLAG(int, worker_index, -1, "internal: run as worker process N");
ABSL_FLAG(int64_t, worker_jobs, 0, "internal: jobs of the worker");
ABSL_FLAG(int, worker_gpu, -1, "internal: CUDA ordinal of the worker");

namespace kvshuttle::load {
namespace {

using Clock = std::chrono::steady_clock;

absl::StatusOr<BlockShape> ParseShape(const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  int64_t v[5];
  if (parts.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat("--shape=", text, ": expected nl,no,nt,nh,hd"));
  }
  for (int i = 0; i < 5; ++i) {
    if (!absl::SimpleAtoi(parts[i], &v[i]) || v[i] < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--shape=", text, ": \"", parts[i], "\" is not a positive integer"));
    }
  }
  return BlockShape{v[0], v[1], v[2], v[3], v[4]};
}

absl::StatusOr<Workload> WorkloadFromFlags() {
  Workload w;
  w.target = absl::GetFlag(FLAGS_target);
  const std::string memory = absl::GetFlag(FLAGS_memory);
  if (memory != "host" && memory != "device") {
    return absl::InvalidArgumentError(absl::StrCat("--memory=", memory, ": not host or device"));
  }
  w.device_memory = memory == "device";
  ASSIGN_OR_RETURN(const BlockShape shape, ParseShape(absl::GetFlag(FLAGS_shape)));
  ASSIGN_OR_RETURN(const DType dtype, ParseDType(absl::GetFlag(FLAGS_dtype)));
  const std::vector<std::string> kinds = absl::StrSplit(absl::GetFlag(FLAGS_layouts), ':');
  if (kinds.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--layouts=", absl::GetFlag(FLAGS_layouts), ": expected source:destination"));
  }
  ASSIGN_OR_RETURN(const LayoutKind src, ParseLayoutKind(kinds[0]));
  ASSIGN_OR_RETURN(const LayoutKind dst, ParseLayoutKind(kinds[1]));
  w.src = LayoutDesc{src, shape, dtype};
  w.dst = LayoutDesc{dst, shape, dtype};
  w.blocks = absl::GetFlag(FLAGS_blocks);
  w.batch = absl::GetFlag(FLAGS_batch);
  w.pairs = absl::GetFlag(FLAGS_pairs);
  w.verify_every = absl::GetFlag(FLAGS_verify_every);
  const std::string completion = absl::GetFlag(FLAGS_completion);
  if (completion != "wait" && completion != "events") {
    return absl::InvalidArgumentError(
        absl::StrCat("--completion=", completion, ": not wait or events"));
  }
  w.completion = completion == "wait" ? Completion::kWait : Completion::kEvents;
  w.job_timeout = absl::Seconds(absl::GetFlag(FLAGS_job_timeout_s));
  w.seed = absl::GetFlag(FLAGS_seed);
  RETURN_IF_ERROR(ValidateWorkload(w));
  return w;
}

absl::StatusOr<RunOptions> RunOptionsFromFlags() {
  RunOptions o;
  o.clients = absl::GetFlag(FLAGS_clients);
  o.processes = absl::GetFlag(FLAGS_processes);
  o.jobs = absl::GetFlag(FLAGS_jobs);
  o.warmup_jobs = absl::GetFlag(FLAGS_warmup_jobs);
  o.warmup_rounds = absl::GetFlag(FLAGS_warmup_rounds);
  o.out = absl::GetFlag(FLAGS_out);
  o.daemon_metrics_url = absl::GetFlag(FLAGS_daemon_metrics);
  o.daemon_pid = absl::GetFlag(FLAGS_daemon_pid);
  o.settle = absl::Milliseconds(absl::GetFlag(FLAGS_settle_ms));
  o.settle_timeout = absl::Seconds(absl::GetFlag(FLAGS_settle_timeout_s));
  o.max_fd_growth = absl::GetFlag(FLAGS_max_fd_growth);
  o.max_thread_growth = absl::GetFlag(FLAGS_max_thread_growth);
  o.max_rss_growth_mib = absl::GetFlag(FLAGS_max_rss_growth_mib);
  o.commit = absl::GetFlag(FLAGS_commit);
  if (o.clients < 1 || o.clients > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("--clients=", o.clients, ": not in [1, 4096]"));
  }
  if (o.jobs < 1 || o.warmup_jobs < 0 || o.warmup_rounds < 1) {
    return absl::InvalidArgumentError(
        "--jobs and --warmup_rounds must be >= 1, --warmup_jobs >= 0");
  }
  if (!o.daemon_metrics_url.empty()) RETURN_IF_ERROR(ParseHttpUrl(o.daemon_metrics_url).status());
  return o;
}

std::string UtcNow() {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return date;
}

std::string ErrorsJson(const ClientResult& r) {
  std::vector<std::string> items;
  for (const auto& [key, count] : r.errors)
    items.push_back(absl::StrCat(JsonString(key), ": ", count));
  return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
}

std::string DeviceName(const v1::GetInfoResponse& info, const std::string& uuid) {
  for (const v1::DeviceInfo& d : info.devices()) {
    if (d.uuid() == uuid) return d.name();
  }
  return "";
}

// The whole run; returns the exit status.
absl::StatusOr<int> Coordinate(const Workload& w, const RunOptions& o,
                               const std::vector<std::string>& worker_args) {
  ASSIGN_OR_RETURN(std::unique_ptr<Client> control, Client::Connect(w.target, absl::Seconds(10)));
  ASSIGN_OR_RETURN(const v1::GetInfoResponse info, control->GetInfo());
  ASSIGN_OR_RETURN(const v1::GetStatsResponse idle, control->GetStats());
  std::vector<int> gpus;
  if (w.device_memory) {
    ASSIGN_OR_RETURN(gpus, SharedGpuOrdinals(info));
  }
  std::string daemon_commit;
  if (!o.daemon_metrics_url.empty()) {
    absl::StatusOr<std::string> text = HttpGet(o.daemon_metrics_url, absl::Seconds(5));
    if (text.ok()) daemon_commit = MetricLabel(*text, "kvshuttle_build_info", "commit");
  }
  const DaemonWatch watch(o);
  const bool probing = watch.enabled();
  if (!probing) {
    std::fprintf(stderr,
                 "kvs_load: neither --daemon_pid nor --daemon_metrics: daemon "
                 "resources are not checked\n");
  }
  const std::string description = absl::StrFormat(
      "%d clients x %d jobs (%s, %s memory, %s -> %s %s %s, batch %d, %d pair(s)/job)", o.clients,
      o.jobs, o.processes ? "processes" : "threads", w.device_memory ? "device" : "host",
      LayoutKindName(w.src.kind), LayoutKindName(w.dst.kind), absl::GetFlag(FLAGS_shape),
      DTypeName(w.src.dtype), w.batch, w.pairs);
  std::fprintf(stderr, "kvs_load: %s against %s (kvshuttled %s)\n", description.c_str(),
               control->target().c_str(), info.version().c_str());

  RoundSpec spec;
  spec.clients = o.clients;
  spec.processes = o.processes;
  spec.gpu_ordinals = gpus;
  spec.worker_args = worker_args;
  spec.progress = absl::GetFlag(FLAGS_progress);
  std::vector<std::string> failures;
  // Warm-up: the same clients at the same concurrency, so that "before" already includes
  // what the daemon allocates on first use; repeated while its idle fd/thread counts move.
  RoundResult warmup;
  int warmup_rounds = 0;
  Samples before;
  for (bool stable = o.warmup_jobs == 0; !stable && warmup_rounds < o.warmup_rounds;) {
    spec.label = absl::StrCat("warm-up ", ++warmup_rounds);
    spec.jobs = o.warmup_jobs;
    const RoundResult round = RunRound(w, spec);
    warmup.total.Merge(round.total);
    warmup.wall_seconds += round.wall_seconds;
    if (!watch.WaitIdle(*control, idle)) {
      failures.push_back("warm-up sessions did not close in time");
    }
    const Samples sample = watch.StableSample();
    if (const std::optional<DaemonSample>& any = sample.proc ? sample.proc : sample.metrics) {
      std::fprintf(stderr, "kvs_load: %s: daemon idle at %lld fds, %lld threads, %.1f MiB\n",
                   spec.label.c_str(), static_cast<long long>(any->open_fds),
                   static_cast<long long>(any->threads), any->rss_bytes / 1048576.0);
    }
    stable = !probing || (warmup_rounds > 1 && SameCounts(before, sample));
    before = sample;
  }
  if (warmup.total.error_count() > 0) {
    failures.push_back(absl::StrCat("warm-up: ", warmup.total.error_count(), " errors"));
  }
  if (warmup_rounds == 0) {
    if (!watch.WaitIdle(*control, idle)) failures.push_back("sessions open before the run");
    before = watch.StableSample();
  }

  spec.label = "measure";
  spec.jobs = o.jobs;
  const RoundResult round = RunRound(w, spec);
  if (!watch.WaitIdle(*control, idle)) failures.push_back("sessions did not close in time");
  const Samples after = watch.SettledSample(before);

  const ClientResult& r = round.total;
  const double wall = std::max(round.wall_seconds, 1e-9);
  const LatencySummary latency = Summarize(r.latency_ns);
  const LatencySummary daemon_latency = Summarize(r.daemon_ns);
  if (r.error_count() > 0) failures.push_back(absl::StrCat(r.error_count(), " errors"));
  if (r.jobs_done != o.clients * o.jobs) {
    failures.push_back(absl::StrCat(r.jobs_done, " of ", o.clients * o.jobs, " jobs done"));
  }
  std::fprintf(stderr,
               "kvs_load: %s\n  jobs: %lld done, %lld verified, %lld errors in %.2f s: "
               "%.0f jobs/s, %.3f GB/s payload\n  latency us (submit -> done seen): p50 %.0f, "
               "p90 %.0f, p99 %.0f, max %.0f; daemon queue+run p50 %.0f, p99 %.0f\n",
               description.c_str(), static_cast<long long>(r.jobs_done),
               static_cast<long long>(r.jobs_verified), static_cast<long long>(r.error_count()),
               wall, r.jobs_done / wall, r.payload_bytes / wall / 1e9, latency.p50_us,
               latency.p90_us, latency.p99_us, latency.max_us, daemon_latency.p50_us,
               daemon_latency.p99_us);
  for (const auto& [key, count] : r.errors) {
    std::fprintf(stderr, "  error %s: %lld\n", key.c_str(), static_cast<long long>(count));
  }
  const std::string resources_json = watch.Judge(before, after, failures);

  std::vector<std::string> devices, used;
  for (const v1::DeviceInfo& d : info.devices()) {
    devices.push_back(absl::StrCat("{\"uuid\": ", JsonString(d.uuid()),
                                   ", \"name\": ", JsonString(d.name()), "}"));
  }
  for (const auto& [uuid, clients] : round.clients_per_gpu) {
    used.push_back(absl::StrCat("{\"uuid\": ", JsonString(uuid),
                                ", \"name\": ", JsonString(DeviceName(info, uuid)),
                                ", \"clients\": ", clients, "}"));
  }
  char host[256] = "";
  ::gethostname(host, sizeof(host) - 1);
  std::vector<std::string> failure_items;
  for (const std::string& f : failures) failure_items.push_back(JsonString(f));
  const std::string json = absl::StrCat(
      "{\n  \"benchmark\": \"kvs_load\",\n  \"commit\": ", JsonString(o.commit),
      ",\n  \"date\": ", JsonString(UtcNow()), ",\n  \"host\": ", JsonString(host),
      ",\n  \"target\": ", JsonString(control->target()),
      ",\n  \"daemon\": {\"version\": ", JsonString(info.version()),
      ", \"commit\": ", JsonString(daemon_commit), ", \"pid\": ", o.daemon_pid,
      ", \"metrics_url\": ", JsonString(o.daemon_metrics_url),
      ", \"cpu_executor\": ", info.cpu_executor() ? "true" : "false", ", \"devices\": [",
      absl::StrJoin(devices, ", "), "]}", ",\n  \"config\": {\"clients\": ", o.clients,
      ", \"processes\": ", o.processes ? "true" : "false", ", \"jobs_per_client\": ", o.jobs,
      ", \"warmup_jobs_per_client\": ", o.warmup_jobs, ", \"batch\": ", w.batch,
      ", \"pairs_per_job\": ", w.pairs, ", \"blocks\": ", w.blocks,
      ", \"memory\": ", w.device_memory ? "\"device\"" : "\"host\"",
      ", \"src\": ", JsonString(LayoutKindName(w.src.kind)),
      ", \"dst\": ", JsonString(LayoutKindName(w.dst.kind)),
      ", \"shape\": ", JsonString(absl::GetFlag(FLAGS_shape)),
      ", \"dtype\": ", JsonString(DTypeName(w.src.dtype)), ", \"verify_every\": ", w.verify_every,
      ", \"completion\": ", JsonString(absl::GetFlag(FLAGS_completion)), "}",
      ",\n  \"devices_used\": [", absl::StrJoin(used, ", "), "]",
      ",\n  \"warmup\": {\"rounds\": ", warmup_rounds, ", \"jobs_done\": ", warmup.total.jobs_done,
      ", \"errors_total\": ", warmup.total.error_count(),
      ", \"wall_seconds\": ", absl::StrFormat("%.3f", warmup.wall_seconds), "}",
      ",\n  \"result\": {\"jobs_planned\": ", r.jobs_planned,
      ", \"jobs_submitted\": ", r.jobs_submitted, ", \"jobs_done\": ", r.jobs_done,
      ", \"jobs_verified\": ", r.jobs_verified,
      ", \"wall_seconds\": ", absl::StrFormat("%.3f", wall),
      ", \"jobs_per_second\": ", absl::StrFormat("%.1f", r.jobs_done / wall),
      ", \"payload_bytes\": ", r.payload_bytes,
      ", \"payload_gb_per_second\": ", absl::StrFormat("%.4f", r.payload_bytes / wall / 1e9),
      ",\n             \"latency_us\": ", ToJson(latency),
      ",\n             \"daemon_latency_us\": ", ToJson(daemon_latency),
      ",\n             \"errors\": ", ErrorsJson(r), ", \"errors_total\": ", r.error_count(), "}",
      ",\n  \"daemon_resources\": ", resources_json,
      ",\n  \"thresholds\": {\"max_fd_growth\": ", o.max_fd_growth,
      ", \"max_thread_growth\": ", o.max_thread_growth,
      ", \"max_rss_growth_mib\": ", o.max_rss_growth_mib, "}",
      ",\n  \"pass\": ", failures.empty() ? "true" : "false", ", \"failures\": [",
      absl::StrJoin(failure_items, ", "), "]\n}\n");
  std::fputs(json.c_str(), stdout);
  if (!o.out.empty()) {
    std::ofstream file(o.out);
    file << json;
    if (!file) return absl::UnavailableError(absl::StrCat("--out=", o.out, ": cannot write"));
    std::fprintf(stderr, "kvs_load: wrote %s\n", o.out.c_str());
  }
  for (const std::string& f : failures) std::fprintf(stderr, "kvs_load: FAIL: %s\n", f.c_str());
  std::fprintf(stderr, "kvs_load: %s\n", failures.empty() ? "PASS" : "FAIL");
  return failures.empty() ? 0 : 1;
}

// "--verify-every=10" → "--verify_every=10": flags may be spelled with dashes.
std::vector<std::string> NormalizeFlags(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i > 0 && a.size() > 2 && a.rfind("--", 0) == 0) {
      const size_t end = std::min(a.find('='), a.size());
      for (size_t k = 2; k < end; ++k) {
        if (a[k] == '-') a[k] = '_';
      }
    }
    args.push_back(std::move(a));
  }
  return args;
}

}  // namespace
}  // namespace kvshuttle::load

int main(int argc, char** argv) {
  using namespace kvshuttle::load;
  std::signal(SIGPIPE, SIG_IGN);  // a worker or the daemon going away is an error, not a kill
  absl::FlagsUsageConfig usage;   // --help lists this file's flags (not the libraries')
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "load_tool.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "N clients x M conversion jobs against kvshuttled; throughput, latency, errors, "
      "and the daemon's memory/fds/threads before and after. See docs/load.md.\n"
      "  kvs_load --target=unix:PATH [--clients=8] [--jobs=200] [--memory=host|device] "
      "[--daemon_pid=PID] [--daemon_metrics=http://HOST:PORT/metrics] [--out=FILE]");
  std::vector<std::string> args = NormalizeFlags(argc, argv);
  std::vector<char*> normalized;
  for (std::string& a : args) normalized.push_back(a.data());
  normalized.push_back(nullptr);
  const std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), normalized.data());
  if (positional.size() > 1) {
    std::fprintf(stderr, "kvs_load: unexpected argument \"%s\" (see --help)\n", positional[1]);
    return 2;
  }
  absl::StatusOr<Workload> workload = WorkloadFromFlags();
  if (!workload.ok()) {
    std::fprintf(stderr, "kvs_load: %s\n", workload.status().ToString().c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_worker_index) >= 0) {
    return RunWorker(*workload, absl::GetFlag(FLAGS_worker_index), absl::GetFlag(FLAGS_worker_jobs),
                     absl::GetFlag(FLAGS_worker_gpu));
  }
  absl::StatusOr<RunOptions> options = RunOptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "kvs_load: %s\n", options.status().ToString().c_str());
    return 2;
  }
  // Workers get the same flags (they parse the workload from them); progress is ours.
  std::vector<std::string> worker_args(args.begin() + 1, args.end());
  worker_args.push_back("--noprogress");
  absl::StatusOr<int> status = Coordinate(*workload, *options, worker_args);
  if (!status.ok()) {
    std::fprintf(stderr, "kvs_load: %s\n", status.status().ToString().c_str());
    return 2;
  }
  return *status;
}
