// The bounded queue of JobTasks that feeds both executors, fair across sessions, and the small
// pieces of task handling they share: submit with the documented error codes, the pre-launch
// cancel/deadline check, and completing a task.
//
// Fairness: each session has its own FIFO; sessions are served in turn (one task each per
// round), so a session's small job waits for at most one task (or one slice of a long one) of
// every other session, not for everything they queued. A session may queue at most
// `session_capacity` tasks, all sessions together `capacity`.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/runtime/executor.h"

namespace kvshuttle {

// Thread-safe fair queue (see the file comment). Any number of producers and consumers.
class TaskQueue {
 public:
  // Precondition: both limits ≥ 1.
  explicit TaskQueue(QueueLimits limits) : limits_(limits) {}
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  // Appends every task of `tasks` (in order, each to its session's FIFO) and clears `tasks`,
  // or, when they don't all fit or the queue is closed, returns false and leaves `tasks`
  // untouched. `why`, when given, receives what did not fit (for error messages).
  bool PushAll(std::vector<std::unique_ptr<JobTask>>& tasks, std::string* why = nullptr);

  // Puts back the rest of a task that ran one slice: first in its session's FIFO, its session
  // last in the round. Never refused (the task was admitted), also once closed.
  void PushFront(std::unique_ptr<JobTask> task);

  // Blocks until at least one task is queued or the queue is closed, then removes and returns
  // up to `max` (≥ 1) tasks, taking sessions in turn. Empty only once closed and empty.
  std::vector<std::unique_ptr<JobTask>> PopBatch(int max);
  // Like PopBatch but returns at once (maybe empty).
  std::vector<std::unique_ptr<JobTask>> TryPopBatch(int max);

  // True when a session other than `session` has queued tasks.
  bool OthersWaiting(uint64_t session) const;

  // Removes and returns everything queued (drain past its deadline).
  std::vector<std::unique_ptr<JobTask>> TakeAll();

  // Rejects further pushes and wakes every blocked PopBatch; queued tasks can still be popped.
  // Idempotent.
  void Close();

  int size() const;
  int capacity() const { return limits_.capacity; }
  bool closed() const;

 private:
  std::vector<std::unique_ptr<JobTask>> PopLocked(int max);

  const QueueLimits limits_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::map<uint64_t, std::deque<std::unique_ptr<JobTask>>> by_session_;
  std::deque<uint64_t> order_;  // sessions with queued tasks, next to serve first
  int size_ = 0;
  bool closed_ = false;
};

// Executor::Submit on top of a queue: OK, or UNAVAILABLE once the queue is closed, or
// RESOURCE_EXHAUSTED "executor <name>: ..." saying which bound was hit. On error `tasks` is
// untouched.
absl::Status SubmitToQueue(TaskQueue& queue, absl::string_view executor_name,
                           std::vector<std::unique_ptr<JobTask>>& tasks);

// The outcome of a task that must not launch at `now`: CANCELLED when its cancel flag is set,
// DEADLINE_EXCEEDED when `now` is past its deadline, its injected_failure (a test-only stand-in
// for a failing launch) when set; nullopt when it may launch.
std::optional<JobOutcome> DropOutcome(const JobTask& task, absl::Time now);

// The outcome of a task stopped between slices (CancelJobs or a drain past its deadline).
JobOutcome StoppedOutcome(const JobTask& task, absl::Time launch);

// Releases the task's holds, then calls task->done(outcome) (when set), then destroys the task.
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
  QueuedExecutor(std::string name, QueueLimits limits)
      : name_(std::move(name)),
        queue_(QueueLimits(std::max(limits.capacity, 1), std::max(limits.session_capacity, 1))) {}

  // Completes `task` with `outcome` (CompleteTask) and counts it.
  void Finish(std::unique_ptr<JobTask> task, const JobOutcome& outcome) {
    CompleteTask(std::move(task), outcome);
    jobs_done_.fetch_add(1, std::memory_order_relaxed);
  }

  // Drain's deadline step: cancels every queued task (completing it CANCELLED) and sets
  // `aborting_`, which the running loops check between slices.
  void AbortQueued();
  bool aborting() const { return aborting_.load(std::memory_order_acquire); }

  const std::string name_;
  TaskQueue queue_;
  std::mutex drain_mutex_;  // serializes Drain

 private:
  std::atomic<uint64_t> jobs_done_{0};
  std::atomic<bool> aborting_{false};
};

}  // namespace kvshuttle
