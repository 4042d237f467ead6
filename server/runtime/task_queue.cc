// TaskQueue and the task helpers shared by the CPU executor and the GPU workers.
#include "server/runtime/task_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvshuttle {

bool TaskQueue::PushAll(std::vector<std::unique_ptr<JobTask>>& tasks, std::string* why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) {
      if (why != nullptr) *why = "closed";
      return false;
    }
    if (static_cast<int>(tasks.size()) > limits_.capacity - size_) {
      if (why != nullptr) {
        *why = absl::StrCat("queue holds ", size_, " of ", limits_.capacity, " tasks; ",
                            tasks.size(), " more do not fit");
      }
      return false;
    }
    std::map<uint64_t, int> adding;
    for (const auto& task : tasks) ++adding[task->session];
    for (const auto& [session, n] : adding) {
      auto it = by_session_.find(session);
      const int queued = it == by_session_.end() ? 0 : static_cast<int>(it->second.size());
      if (n > limits_.session_capacity - queued) {
        if (why != nullptr) {
          *why = absl::StrCat("the session has ", queued, " of at most ",
                              limits_.session_capacity, " tasks queued here; ", n,
                              " more do not fit");
        }
        return false;
      }
    }
    for (std::unique_ptr<JobTask>& task : tasks) {
      std::deque<std::unique_ptr<JobTask>>& fifo = by_session_[task->session];
      if (fifo.empty()) order_.push_back(task->session);
      fifo.push_back(std::move(task));
      ++size_;
    }
  }
  tasks.clear();
  not_empty_.notify_all();
  return true;
}

void TaskQueue::PushFront(std::unique_ptr<JobTask> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::deque<std::unique_ptr<JobTask>>& fifo = by_session_[task->session];
    if (fifo.empty()) order_.push_back(task->session);
    fifo.push_front(std::move(task));
    ++size_;
  }
  not_empty_.notify_one();
}

std::vector<std::unique_ptr<JobTask>> TaskQueue::PopLocked(int max) {
  std::vector<std::unique_ptr<JobTask>> batch;
  while (static_cast<int>(batch.size()) < std::max(max, 1) && !order_.empty()) {
    const uint64_t session = order_.front();
    order_.pop_front();
    auto it = by_session_.find(session);
    batch.push_back(std::move(it->second.front()));
    it->second.pop_front();
    --size_;
    if (it->second.empty()) {
      by_session_.erase(it);
    } else {
      order_.push_back(session);
    }
  }
  return batch;
}

std::vector<std::unique_ptr<JobTask>> TaskQueue::PopBatch(int max) {
  std::unique_lock<std::mutex> lock(mutex_);
  not_empty_.wait(lock, [this] { return closed_ || size_ > 0; });
  return PopLocked(max);
}

std::vector<std::unique_ptr<JobTask>> TaskQueue::TryPopBatch(int max) {
  std::lock_guard<std::mutex> lock(mutex_);
  return PopLocked(max);
}

bool TaskQueue::OthersWaiting(uint64_t session) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (uint64_t s : order_) {
    if (s != session) return true;
  }
  return false;
}

std::vector<std::unique_ptr<JobTask>> TaskQueue::TakeAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  return PopLocked(size_ > 0 ? size_ : 1);
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
  return size_;
}

bool TaskQueue::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

absl::Status SubmitToQueue(TaskQueue& queue, absl::string_view executor_name,
                           std::vector<std::unique_ptr<JobTask>>& tasks) {
  std::string why;
  if (queue.PushAll(tasks, &why)) return absl::OkStatus();
  if (queue.closed()) {  // closing is permanent, so this is never a stale answer
    return absl::UnavailableError(
        absl::StrCat("executor ", executor_name, ": draining; no new tasks are accepted"));
  }
  return absl::ResourceExhaustedError(absl::StrCat("executor ", executor_name, ": ", why));
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

JobOutcome StoppedOutcome(const JobTask& task, absl::Time launch) {
  JobOutcome outcome;
  outcome.queued = launch - task.submitted;
  outcome.status = absl::CancelledError(
      absl::StrCat("job ", task.job_id, ": stopped while running, after ",
                   task.cursor.bytes_done, " of ", task.plan.bytes(),
                   " bytes (what was copied stays copied)"));
  return outcome;
}

void CompleteTask(std::unique_ptr<JobTask> task, const JobOutcome& outcome) {
  // The job's memory is let go before anyone learns that it is done: a client that sees the
  // completion and then lists or unregisters its regions finds them free, not still releasing.
  task->holds.clear();
  if (task->done) task->done(outcome);
  task.reset();
}

void QueuedExecutor::AbortQueued() {
  aborting_.store(true, std::memory_order_release);
  for (std::unique_ptr<JobTask>& task : queue_.TakeAll()) {
    if (task->cancelled != nullptr) task->cancelled->CancelOrStop();
    JobOutcome outcome;
    outcome.queued = absl::Now() - task->submitted;
    outcome.status = absl::CancelledError(absl::StrCat(
        "job ", task->job_id, ": cancelled, the daemon is shutting down (drain timeout)"));
    Finish(std::move(task), outcome);
  }
}

}  // namespace kvshuttle
