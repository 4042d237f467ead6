// The CPU executor: a few threads running host-only plans with memcpy. It serves host shared
// memory regions on GPU-less machines, and stands in for the SM kernel there.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/plan.h"
#include "server/runtime/executor.h"
#include "server/runtime/task_queue.h"

namespace kvshuttle {
namespace {

class CpuExecutor : public QueuedExecutor {
 public:
  CpuExecutor(int threads, int capacity) : QueuedExecutor("cpu", capacity) {
    const int n = std::max(threads, 1);
    threads_.reserve(n);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~CpuExecutor() override { Drain(); }

  void Drain() override {
    std::lock_guard<std::mutex> lock(drain_mutex_);
    queue_.Close();
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

 private:
  void Loop() {
    while (true) {
      // One task at a time per thread, so the queue spreads work over every thread.
      std::vector<std::unique_ptr<JobTask>> batch = queue_.PopBatch(1);
      if (batch.empty()) return;  // closed and drained
      for (std::unique_ptr<JobTask>& task : batch) Run(std::move(task));
    }
  }

  void Run(std::unique_ptr<JobTask> task) {
    const absl::Time launch = absl::Now();
    if (std::optional<JobOutcome> dropped = DropOutcome(*task, launch)) {
      Finish(std::move(task), *dropped);
      return;
    }
    ExecutePlanOnHost(task->plan, 1);  // parallelism comes from the executor's threads
    JobOutcome outcome;
    outcome.backend = Backend::kKernel;
    outcome.queued = launch - task->submitted;
    outcome.run = absl::Now() - launch;
    Finish(std::move(task), outcome);
  }

  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<Executor> CreateCpuExecutor(int threads, int capacity) {
  return std::make_unique<CpuExecutor>(threads, capacity);
}

}  // namespace kvshuttle
