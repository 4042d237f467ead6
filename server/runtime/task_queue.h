// The bounded FIFO of JobTasks that feeds both executors, and the small pieces of task
// handling they share: submit with the documented error codes, the pre-launch
// cancel/deadline check, and completing a task.
#pragma once

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
// DEADLINE_EXCEEDED when `now` is past its deadline; nullopt when it may launch.
std::optional<JobOutcome> DropOutcome(const JobTask& task, absl::Time now);

// Calls task->done(outcome) (when set), then destroys the task, releasing its holds.
void CompleteTask(std::unique_ptr<JobTask> task, const JobOutcome& outcome);

}  // namespace kvshuttle
