// The bounded FIFO of JobTasks that feeds both executors, and the small pieces of task
// handling they share: submit with the documented error codes, the pre-launch
// cancel/deadline check, and completing a task.
#pragma once

#include <string>

#include <atomic>

#include <algorithm>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/runtime/executor.h"

namespace kvshuttle {

// Thread-safe FIFO holding at most `capacity` tasks. Any number of producers and consumers.
class TaskQueue {
 public:
  // Precondition: capacity ≥ 1.
  explicit TaskQueue(int capacity) : capacity_(capacity) {}
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  // Appends every task of `tasks` in order and clears `tasks`, or, when they don't all fit or
  // the queue is closed, returns false and leaves `tasks` untouched. `depth`, when given,
  // receives the number of queued tasks seen under the lock (for error messages).
  bool PushAll(std::vector<std::unique_ptr<JobTask>>& tasks, int* depth = nullptr);

  // Blocks until at least one task is queued or the queue is closed, then removes and returns
  // up to `max` (≥ 1) tasks from the front. Empty only once the queue is closed and empty.
  std::vector<std::unique_ptr<JobTask>> PopBatch(int max);

  // Rejects further pushes and wakes every blocked PopBatch; queued tasks can still be popped.
  // Idempotent.
  void Close();

  int size() const;
  int capacity() const { return capacity_; }
  bool closed() const;

 private:
  const int capacity_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::deque<std::unique_ptr<JobTask>> tasks_;
  bool closed_ = false;
};

// Executor::Submit on top of a queue: OK, or UNAVAILABLE once the queue is closed, or
// RESOURCE_EXHAUSTED "executor <name>: queue holds D of C tasks; N more do not fit". On error
// `tasks` is untouched.
absl::Status SubmitToQueue(TaskQueue& queue, absl::string_view executor_name,
                           std::vector<std::unique_ptr<JobTask>>& tasks);

// The outcome of a task that must not launch at `now`: CANCELLED when its cancel flag is set,
// DEADLINE_EXCEEDED when `now` is past its deadline, its injected_failure (a test-only stand-in
// for a failing launch) when set; nullopt when it may launch.
std::optional<JobOutcome> DropOutcome(const JobTask& task, absl::Time now);

// Calls task->done(outcome) (when set), then destroys the task, releasing its holds.
void CompleteTask(std::unique_ptr<JobTask> task, const JobOutcome& outcome);

// What every executor shares: its name, its queue and its completion counter. Subclasses own
// the threads that pop `queue_`, and complete each task through Finish().
class QueuedExecutor : public Executor {
 public:
  const std::string& name() const override { return name_; }
  absl::Status Submit(std::vector<std::unique_ptr<JobTask>>& tasks) override {
    return SubmitToQueue(queue_, name_, tasks);
  }
  int queue_depth() const override { return queue_.size(); }
  int capacity() const override { return queue_.capacity(); }
  uint64_t jobs_done() const override { return jobs_done_.load(std::memory_order_relaxed); }

 protected:
  QueuedExecutor(std::string name, int capacity)
      : name_(std::move(name)), queue_(std::max(capacity, 1)) {}

  // Completes `task` with `outcome` (CompleteTask) and counts it.
  void Finish(std::unique_ptr<JobTask> task, const JobOutcome& outcome) {
    CompleteTask(std::move(task), outcome);
    jobs_done_.fetch_add(1, std::memory_order_relaxed);
  }

  const std::string name_;
  TaskQueue queue_;
  std::mutex drain_mutex_;  // serializes Drain

 private:
  std::atomic<uint64_t> jobs_done_{0};
};

}  // namespace kvshuttle
