// The daemon's Prometheus metrics: the families (names and labels are an interface: deploy/
// dashboards and docs/operations-reference.md depend on them), the handles job completion
// updates, and the gauges computed from a DaemonSnapshot at scrape time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/ops/metrics.h"
#include "server/runtime/executor.h"

namespace kvshuttle {

// Upper bounds (seconds) of every kvshuttled histogram: 10 µs to 10 s in 1-2.5-5 steps
// (×2.5 then ×2): 1e-05, 2.5e-05, 5e-05, 0.0001, ..., 1, 2.5, 5, 10; then +Inf.
const std::vector<double>& LatencyBuckets();

// The `executor` label of GPU `ordinal` ("gpu0", "gpu1", ...); ordinal < 0 gives "cpu".
std::string ExecutorLabel(int ordinal);

// The daemon's state at one instant (Daemon::Snapshot), for the scrape-time gauges.
struct DaemonSnapshot {
  struct PoolState {
    std::string name;
    uint64_t used = 0;
    uint64_t free = 0;
  };
  struct QueueState {
    std::string executor;  // ExecutorLabel
    int depth = 0;
  };
  int64_t sessions = 0;
  int64_t block_sets = 0;
  int64_t regions_cuda_ipc = 0;
  int64_t regions_host_shm = 0;
  uint64_t mapped_cuda_ipc = 0;  // bytes
  uint64_t mapped_host_shm = 0;
  std::vector<PoolState> pools;
  std::vector<QueueState> queues;
  bool draining = false;
};

// The job metrics of one executor, resolved once.
class ExecutorMetrics {
 public:
  ExecutorMetrics(metrics::Counter& done, metrics::Counter& failed, metrics::Counter& cancelled,
                  metrics::Counter& bytes, metrics::Histogram& run, metrics::Histogram& latency)
      : done_(done),
        failed_(failed),
        cancelled_(cancelled),
        bytes_(bytes),
        run_(run),
        latency_(latency) {}

  // Counts a finished job by `state`; a done job adds `bytes` to bytes moved. Jobs that were
  // launched (done, failed) observe run time (launch → completion) and latency (submit →
  // completion); cancelled ones never ran and observe neither.
  void ObserveJob(v1::JobState state, const JobOutcome& outcome, uint64_t bytes);

 private:
  metrics::Counter& done_;
  metrics::Counter& failed_;
  metrics::Counter& cancelled_;
  metrics::Counter& bytes_;
  metrics::Histogram& run_;
  metrics::Histogram& latency_;
};

class DaemonMetrics {
 public:
  DaemonMetrics();
  DaemonMetrics(const DaemonMetrics&) = delete;
  DaemonMetrics& operator=(const DaemonMetrics&) = delete;

  metrics::Registry& registry() { return registry_; }

  // The job metrics of executor `label` (ExecutorLabel); created on first use (its series then
  // appear at 0), the same object afterwards.
  ExecutorMetrics& Executor(const std::string& label);
  // One CUDA IPC open of RegisterRegion (validation, cache lookup, cudaIpcOpenMemHandle on the
  // first use of an allocation, range check).
  void ObserveIpcOpen(absl::Duration elapsed);
  // One finished RPC: method name ("SubmitBatch") and the gRPC code it returned.
  void ObserveRpc(absl::string_view method, absl::StatusCode code, absl::Duration elapsed);

  // The scrape-time gauges (sessions, regions, pools, queues, draining) come from `snapshot`,
  // called once per scrape on the scraping thread.
  void SetSnapshotSource(std::function<DaemonSnapshot()> snapshot);
  // kvshuttle_up is 1 while serving is set and the snapshot says not draining.
  void set_serving(bool serving) { serving_.store(serving); }
  bool serving() const { return serving_.load(); }

 private:
  void CollectState(std::vector<metrics::FamilySnapshot>& out) const;

  metrics::Registry registry_;
  metrics::Family<metrics::Counter>& jobs_;
  metrics::Family<metrics::Counter>& bytes_moved_;
  metrics::Family<metrics::Histogram>& job_run_;
  metrics::Family<metrics::Histogram>& job_latency_;
  metrics::Histogram& ipc_open_;
  metrics::Family<metrics::Counter>& rpcs_;
  metrics::Family<metrics::Histogram>& rpc_seconds_;
  std::atomic<bool> serving_{false};

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<ExecutorMetrics>> executors_;
  std::function<DaemonSnapshot()> snapshot_;  // set once at startup, before serving
};

}  // namespace kvshuttle
