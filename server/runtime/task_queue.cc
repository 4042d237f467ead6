// TaskQueue and the task helpers shared by the CPU executor and the GPU workers.
#include "server/runtime/task_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvshuttle {

bool TaskQueue::PushAll(std::vector<std::unique_ptr<JobTask>>& tasks, int* depth) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth != nullptr) *depth = static_cast<int>(tasks_.size());
    if (closed_) return false;
    const size_t free_slots = static_cast<size_t>(capacity_) - tasks_.size();
    if (tasks.size() > free_slots) return false;
    for (std::unique_ptr<JobTask>& task : tasks) tasks_.push_back(std::move(task));
  }
  tasks.clear();
  not_empty_.notify_all();
  return true;
}

std::vector<std::unique_ptr<JobTask>> TaskQueue::PopBatch(int max) {
  std::vector<std::unique_ptr<JobTask>> batch;
  std::unique_lock<std::mutex> lock(mutex_);
  not_empty_.wait(lock, [this] { return closed_ || !tasks_.empty(); });
  const size_t n = std::min(tasks_.size(), static_cast<size_t>(std::max(max, 1)));
  batch.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    batch.push_back(std::move(tasks_.front()));
    tasks_.pop_front();
  }
  return batch;
}

void TaskQueue::Close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  not_empty_.notify_all();
}

int TaskQueue::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(tasks_.size());
}

bool TaskQueue::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

absl::Status SubmitToQueue(TaskQueue& queue, absl::string_view executor_name,
                           std::vector<std::unique_ptr<JobTask>>& tasks) {
  int depth = 0;
  if (queue.PushAll(tasks, &depth)) return absl::OkStatus();
  if (queue.closed()) {  // closing is permanent, so this is never a stale answer
    return absl::UnavailableError(
        absl::StrCat("executor ", executor_name, ": draining; no new tasks are accepted"));
  }
  return absl::ResourceExhaustedError(absl::StrCat("executor ", executor_name, ": queue holds ",
                                                   depth, " of ", queue.capacity(), " tasks; ",
                                                   tasks.size(), " more do not fit"));
}

std::optional<JobOutcome> DropOutcome(const JobTask& task, absl::Time now) {
  JobOutcome outcome;
  outcome.queued = now - task.submitted;
  if (task.cancelled != nullptr && !task.cancelled->Start()) {
    outcome.status =
        absl::CancelledError(absl::StrCat("job ", task.job_id, ": cancelled before launch"));
    return outcome;
  }
  if (now > task.deadline) {
    outcome.status = absl::DeadlineExceededError(
        absl::StrCat("job ", task.job_id, ": deadline passed ",
                     absl::FormatDuration(now - task.deadline), " before launch"));
    return outcome;
  }
  if (!task.injected_failure.ok()) {
    outcome.status = task.injected_failure;
    return outcome;
  }
  return std::nullopt;
}

void CompleteTask(std::unique_ptr<JobTask> task, const JobOutcome& outcome) {
  if (task->done) task->done(outcome);
  task.reset();  // drops the holds right after done, as JobTask promises
}

}  // namespace kvshuttle
