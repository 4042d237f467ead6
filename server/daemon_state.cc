// Daemon::Snapshot and Daemon::InitMetrics: the daemon's state as the scrape-time gauges see it
// (server/daemon_metrics.h), kept apart from the RPC logic of daemon.cc.
#include "server/daemon.h"

namespace kvshuttle {

void Daemon::InitMetrics() {
  // Every executor's series exist from the start (at 0), not from its first job.
  for (size_t ordinal = 0; ordinal < gpu_workers_.size(); ++ordinal) {
    if (gpu_workers_[ordinal]) metrics_->Executor(ExecutorLabel(static_cast<int>(ordinal)));
  }
  metrics_->Executor(ExecutorLabel(-1));
  metrics_->SetSnapshotSource([this] { return Snapshot(); });
}

DaemonSnapshot Daemon::Snapshot() const {
  DaemonSnapshot s;
  s.draining = draining_.load();
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.sessions = static_cast<int64_t>(sessions_.size());
    for (const auto& [id, session] : sessions_) {
      s.block_sets += static_cast<int64_t>(session->ListBlockSets().size());
      for (const v1::Region& region : session->ListRegions()) {
        if (region.memory() == v1::MEMORY_DEVICE) {
          ++s.regions_cuda_ipc;
          s.mapped_cuda_ipc += region.size();
        } else {
          ++s.regions_host_shm;
          s.mapped_host_shm += region.size();
        }
      }
    }
  }
  for (const auto& pool : pools_.List()) {
    const v1::Pool p = pool->ToProto();
    s.pools.push_back({p.name(), p.blocks_in_use(), p.num_blocks() - p.blocks_in_use()});
  }
  for (size_t ordinal = 0; ordinal < gpu_workers_.size(); ++ordinal) {
    if (gpu_workers_[ordinal]) {
      s.queues.push_back({ExecutorLabel(static_cast<int>(ordinal)),
                          gpu_workers_[ordinal]->queue_depth()});
    }
  }
  if (cpu_executor_) s.queues.push_back({ExecutorLabel(-1), cpu_executor_->queue_depth()});
  return s;
}

}  // namespace kvshuttle
