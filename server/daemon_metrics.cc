// kvshuttled's metric families and their scrape-time gauges.
#include "server/daemon_metrics.h"

#include "absl/strings/str_cat.h"
#include "server/ops/build_info.h"
#include "server/ops/process_stats.h"

namespace kvshuttle {

using metrics::FamilySnapshot;
using metrics::MetricType;

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> buckets = {
      10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
      25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10};
  return buckets;
}

std::string ExecutorLabel(int ordinal) {
  return ordinal < 0 ? std::string("cpu") : absl::StrCat("gpu", ordinal);
}

void ExecutorMetrics::ObserveJob(v1::JobState state, const JobOutcome& outcome, uint64_t bytes) {
  switch (state) {
    case v1::JOB_DONE:
      done_.Increment();
      bytes_.Increment(static_cast<double>(bytes));
      break;
    case v1::JOB_CANCELLED:
      cancelled_.Increment();
      return;
    default:
      failed_.Increment();
      break;
  }
  run_.Observe(absl::ToDoubleSeconds(outcome.run));
  latency_.Observe(absl::ToDoubleSeconds(outcome.queued + outcome.run));
}

DaemonMetrics::DaemonMetrics()
    : jobs_(registry_.AddCounter("kvshuttle_jobs_total",
                                 "Jobs finished, by executor and final status.",
                                 {"executor", "status"})),
      bytes_moved_(registry_.AddCounter("kvshuttle_bytes_moved_total",
                                        "Bytes written by jobs that completed, by executor.",
                                        {"executor"})),
      job_run_(registry_.AddHistogram(
          "kvshuttle_job_run_seconds",
          "Job run time, launch to completion (the kernel or copy time), by executor.",
          {"executor"}, LatencyBuckets())),
      job_latency_(registry_.AddHistogram(
          "kvshuttle_job_latency_seconds",
          "Job latency, submit to completion (queueing included), by executor.", {"executor"},
          LatencyBuckets())),
      ipc_open_(registry_
                    .AddHistogram("kvshuttle_ipc_open_seconds",
                                  "Time to open a CUDA IPC region in RegisterRegion.", {},
                                  LatencyBuckets())
                    .Get()),
      rpcs_(registry_.AddCounter("kvshuttle_rpc_total",
                                 "kvshuttle.v1 RPCs finished, by method and gRPC status code.",
                                 {"method", "code"})),
      rpc_seconds_(registry_.AddHistogram("kvshuttle_rpc_seconds",
                                          "kvshuttle.v1 RPC handling time, by method (Attach: "
                                          "the life of the stream).",
                                          {"method"}, LatencyBuckets())) {
  registry_
      .AddGauge("kvshuttle_build_info", "Always 1; the labels identify the build.",
                {"version", "commit"})
      .Labels({BuildVersion(), BuildCommit()})
      .Set(1);
  registry_.AddCollector([this](std::vector<FamilySnapshot>& out) { CollectState(out); });
}

ExecutorMetrics& DaemonMetrics::Executor(const std::string& label) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::unique_ptr<ExecutorMetrics>& m = executors_[label];
  if (m == nullptr) {
    m = std::make_unique<ExecutorMetrics>(
        jobs_.Labels({label, "done"}), jobs_.Labels({label, "failed"}),
        jobs_.Labels({label, "cancelled"}), bytes_moved_.Labels({label}),
        job_run_.Labels({label}), job_latency_.Labels({label}));
  }
  return *m;
}

void DaemonMetrics::ObserveIpcOpen(absl::Duration elapsed) {
  ipc_open_.Observe(absl::ToDoubleSeconds(elapsed));
}

void DaemonMetrics::ObserveRpc(absl::string_view method, absl::StatusCode code,
                               absl::Duration elapsed) {
  const std::string name(method);
  rpcs_.Labels({name, absl::StatusCodeToString(code)}).Increment();
  rpc_seconds_.Labels({name}).Observe(absl::ToDoubleSeconds(elapsed));
}

void DaemonMetrics::SetSnapshotSource(std::function<DaemonSnapshot()> snapshot) {
  std::lock_guard<std::mutex> lock(mutex_);
  snapshot_ = std::move(snapshot);
}

void DaemonMetrics::CollectState(std::vector<FamilySnapshot>& out) const {
  const auto gauge = [&out](const char* name, const char* help,
                            std::vector<std::string> labels = {}) -> FamilySnapshot& {
    FamilySnapshot& f = out.emplace_back();
    f.name = name;
    f.help = help;
    f.type = MetricType::kGauge;
    f.label_names = std::move(labels);
    return f;
  };
  std::function<DaemonSnapshot()> source;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    source = snapshot_;
  }
  const DaemonSnapshot s = source ? source() : DaemonSnapshot();
  gauge("kvshuttle_up", "1 while the daemon serves (gRPC up, not draining), else 0.")
      .Add({}, serving_.load() && !s.draining ? 1 : 0);
  gauge("kvshuttle_draining", "1 once SIGTERM started the drain, else 0.")
      .Add({}, s.draining ? 1 : 0);
  gauge("kvshuttle_sessions", "Open sessions.").Add({}, static_cast<double>(s.sessions));
  gauge("kvshuttle_block_sets", "Registered block sets, all sessions.")
      .Add({}, static_cast<double>(s.block_sets));
  FamilySnapshot& regions = gauge("kvshuttle_regions", "Registered regions, by kind.", {"kind"});
  regions.Add({"cuda_ipc"}, static_cast<double>(s.regions_cuda_ipc));
  regions.Add({"host_shm"}, static_cast<double>(s.regions_host_shm));
  FamilySnapshot& mapped =
      gauge("kvshuttle_mapped_bytes", "Bytes of registered regions, by kind.", {"kind"});
  mapped.Add({"cuda_ipc"}, static_cast<double>(s.mapped_cuda_ipc));
  mapped.Add({"host_shm"}, static_cast<double>(s.mapped_host_shm));
  gauge("kvshuttle_pools", "Pools.").Add({}, static_cast<double>(s.pools.size()));
  FamilySnapshot& blocks =
      gauge("kvshuttle_pool_blocks", "Pool blocks, by pool and state.", {"pool", "state"});
  for (const DaemonSnapshot::PoolState& pool : s.pools) {
    blocks.Add({pool.name, "used"}, static_cast<double>(pool.used));
    blocks.Add({pool.name, "free"}, static_cast<double>(pool.free));
  }
  FamilySnapshot& queues =
      gauge("kvshuttle_queue_depth", "Jobs waiting in the queue of each executor.", {"executor"});
  for (const DaemonSnapshot::QueueState& q : s.queues) queues.Add({q.executor}, q.depth);

  const ProcessStats process = ReadProcessStats();
  gauge("kvshuttle_process_open_fds", "Open file descriptors of kvshuttled.")
      .Add({}, static_cast<double>(process.open_fds));
  gauge("kvshuttle_process_threads", "Threads of kvshuttled.")
      .Add({}, static_cast<double>(process.threads));
  gauge("kvshuttle_process_resident_bytes", "Resident memory of kvshuttled, bytes.")
      .Add({}, static_cast<double>(process.resident_bytes));
}

}  // namespace kvshuttle
