// The CPU executor: a few threads running host-only plans with memcpy. It serves host memory
// regions on GPU-less machines, and stands in for the SM kernel there. Jobs run in slices of
// kCpuSliceBytes; after a slice, a job whose session is not alone in the queue goes back to it
// (first in its session's FIFO, its session last in the round), so sessions interleave. Every
// slice runs under the SIGBUS guard: a client that truncates a named shm object it lent fails
// its own job, not the daemon.
#include <algorithm>
#include <condition_variable>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/plan.h"
#include "server/runtime/executor.h"
#include "server/runtime/sigbus_guard.h"
#include "server/runtime/task_queue.h"

namespace kvshuttle {
namespace {

class CpuExecutor : public QueuedExecutor {
 public:
  CpuExecutor(int threads, QueueLimits limits) : QueuedExecutor("cpu", limits) {
    InstallSigbusGuard();
    const int n = std::max(threads, 1);
    threads_.reserve(n);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~CpuExecutor() override { Drain(absl::InfiniteFuture()); }

  void Drain(absl::Time deadline) override {
    std::lock_guard<std::mutex> lock(drain_mutex_);
    queue_.Close();
    {
      std::unique_lock<std::mutex> idle_lock(idle_mutex_);
      idle_.wait_until(idle_lock, absl::ToChronoTime(deadline), [this] {
        return exited_ == static_cast<int>(threads_.size());
      });
    }
    if (exited_ != static_cast<int>(threads_.size())) AbortQueued();
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

 private:
  void Loop() {
    while (true) {
      std::vector<std::unique_ptr<JobTask>> batch = queue_.PopBatch(1);
      if (batch.empty()) break;  // closed and drained
      for (std::unique_ptr<JobTask>& task : batch) Run(std::move(task));
    }
    {
      std::lock_guard<std::mutex> lock(idle_mutex_);
      ++exited_;
    }
    idle_.notify_all();
  }

  void Run(std::unique_ptr<JobTask> task) {
    const absl::Time now = absl::Now();
    if (!task->running) {
      if (std::optional<JobOutcome> dropped = DropOutcome(*task, now)) {
        Finish(std::move(task), *dropped);
        return;
      }
      task->running = true;
      task->launched_at = now;
    }
    while (true) {
      if (aborting() || (task->cancelled != nullptr && task->cancelled->stop_requested())) {
        Finish(std::move(task), StoppedOutcome(*task, task->launched_at));
        return;
      }
      bool complete = false;
      uint64_t fault = 0;
      JobTask* raw = task.get();
      const bool survived = RunGuarded(
          [raw, &complete] {
            complete = ExecutePlanSliceOnHost(raw->plan, raw->cursor, kCpuSliceBytes);
          },
          &fault);
      if (!survived) {
        JobOutcome failed;
        failed.queued = task->launched_at - task->submitted;
        failed.run = absl::Now() - task->launched_at;
        failed.status = absl::FailedPreconditionError(absl::StrCat(
            "job ", task->job_id, ": host memory vanished under the copy (SIGBUS at 0x",
            absl::Hex(fault), " after ", task->cursor.bytes_done,
            " bytes): a shm object it uses was truncated by its owner"));
        Finish(std::move(task), failed);
        return;
      }
      if (complete) break;
      if (queue_.OthersWaiting(task->session)) {
        queue_.PushFront(std::move(task));
        return;
      }
    }
    JobOutcome outcome;
    outcome.backend = Backend::kKernel;
    outcome.queued = task->launched_at - task->submitted;
    outcome.run = absl::Now() - task->launched_at;
    Finish(std::move(task), outcome);
  }

  std::vector<std::thread> threads_;
  std::mutex idle_mutex_;
  std::condition_variable idle_;
  int exited_ = 0;
};

}  // namespace

std::unique_ptr<Executor> CreateCpuExecutor(int threads, QueueLimits limits) {
  return std::make_unique<CpuExecutor>(threads, limits);
}

}  // namespace kvshuttle
