// Executors run jobs: one GPU worker per device (thread + stream + Converter) and one CPU
// executor for host-only jobs. Both take tasks through a bounded queue.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/backend.h"
#include "core/plan.h"

namespace kvshuttle {

// What happened to one task. `status` is OK when the copy completed; CANCELLED when the task
// was cancelled before launch; DEADLINE_EXCEEDED when its deadline passed before launch.
struct JobOutcome {
  absl::Status status;
  Backend backend = Backend::kAuto;  // backend used (kAuto when nothing ran)
  absl::Duration queued;             // submit → launch (or → drop)
  absl::Duration run;                // launch → completion
};

// Decides once whether a queued job runs, and lets a running one be stopped: Cancel()
// (CancelJobs, a closing session, a drain past its deadline) and Start() (the executor, right
// before launch) race, and exactly one of them wins; RequestStop() asks a started job to stop at
// its next chunk boundary (executors check stop_requested() between slices).
class CancelToken {
 public:
  explicit CancelToken(bool cancelled = false) : state_(cancelled ? kCancelled : kQueued) {}
  // True when this call stopped a job that had not started.
  bool Cancel() {
    int expected = kQueued;
    return state_.compare_exchange_strong(expected, kCancelled, std::memory_order_acq_rel);
  }
  // True when the job may run (it was not cancelled first).
  bool Start() {
    int expected = kQueued;
    return state_.compare_exchange_strong(expected, kStarted, std::memory_order_acq_rel) ||
           expected == kStarted || expected == kStopping;
  }
  // Cancels a queued job or asks a running one to stop; true when it was queued or running.
  bool CancelOrStop() {
    if (Cancel()) return true;
    int expected = kStarted;
    return state_.compare_exchange_strong(expected, kStopping, std::memory_order_acq_rel) ||
           expected == kStopping;
  }
  bool cancelled() const { return state_.load(std::memory_order_acquire) == kCancelled; }
  bool started() const {
    const int s = state_.load(std::memory_order_acquire);
    return s == kStarted || s == kStopping;
  }
  bool stop_requested() const { return state_.load(std::memory_order_acquire) == kStopping; }

 private:
  static constexpr int kQueued = 0, kCancelled = 1, kStarted = 2, kStopping = 3;
  std::atomic<int> state_;
};

// One job handed to an executor. The plan's addresses are valid while `holds` is alive.
struct JobTask {
  explicit JobTask(TransferPlan p) : plan(std::move(p)) {}

  uint64_t job_id = 0;
  uint64_t session = 0;  // the submitting session's serial: the unit of fair scheduling
  TransferPlan plan;
  // Sliced execution (CPU executor: cursor; GPU workers: next_pair and cursor.bytes_done): how
  // far the copy got, whether it started and when.
  PlanCursor cursor;
  int64_t next_pair = 0;
  Backend slice_backend = Backend::kAuto;  // GPU: the backend its launched slices used
  bool running = false;
  absl::Time launched_at;
  Backend backend = Backend::kAuto;
  int max_sms = 0;
  // Keeps the memory of both sides (regions, pools) alive until the task is done.
  std::vector<std::shared_ptr<const void>> holds;
  // Set by CancelJobs or a closing session; checked right before launch.
  std::shared_ptr<CancelToken> cancelled;
  absl::Time submitted = absl::Now();
  absl::Time deadline = absl::InfiniteFuture();  // not launched after this
  // Test-only fault injection (--fault_fail_jobs_of_client): when not OK, the executor fails the
  // task with this status where it would launch it, running nothing.
  absl::Status injected_failure;
  // GPU tasks: a client's CUDA IPC event handle (64 bytes, checked at submit) that the worker
  // records on its stream right after the copy; empty for none.
  std::string completion_event;
  // GPU tasks: a client's CUDA IPC event handle (64 bytes, checked at submit) the job starts
  // after; empty for none. Not yet complete when the job's turn comes: the worker sets the job
  // aside (off its stream) until it is, or until `deadline` (then DEADLINE_EXCEEDED).
  std::string start_event;
  // Called at most once from a GPU worker's thread once the copy (and the completion event's
  // record) is on the stream, before `done`.
  std::function<void()> launched;
  // Called exactly once from one of the executor's threads, after the copy is complete (or
  // dropped). `holds` are released just before it runs: nothing reads the memory any more, and
  // whoever learns of the completion finds the memory free.
  std::function<void(const JobOutcome&)> done;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // "gpu:<uuid>" or "cpu".
  virtual const std::string& name() const = 0;
  // Queues all `tasks` or none. RESOURCE_EXHAUSTED naming the executor, the queue depth and
  // its capacity when they don't fit; UNAVAILABLE once draining. On error `tasks` is untouched.
  virtual absl::Status Submit(std::vector<std::unique_ptr<JobTask>>& tasks) = 0;
  virtual int queue_depth() const = 0;
  virtual int capacity() const = 0;
  virtual uint64_t jobs_done() const = 0;
  // Stops accepting tasks and runs everything already queued until `deadline`; then cancels
  // what is still queued and stops running jobs at their next chunk boundary (they complete
  // CANCELLED); waits for in-flight work and joins the thread(s). Idempotent.
  virtual void Drain(absl::Time deadline = absl::InfiniteFuture()) = 0;
};

// Bytes a CPU-executor thread copies of one job before it looks at the queue again (others
// interleave, a stop request is seen): about a millisecond of memcpy.
inline constexpr int64_t kCpuSliceBytes = int64_t{4} << 20;

// Queue bounds of one executor: tasks in all, and tasks of one session.
struct QueueLimits {
  QueueLimits() = default;
  // One number: a queue whose sessions may each fill all of it (tests, tools).
  QueueLimits(int total) : capacity(total), session_capacity(total) {}  // NOLINT: implicit
  QueueLimits(int total, int per_session) : capacity(total), session_capacity(per_session) {}
  int capacity = 8192;
  int session_capacity = 2048;
  // GPU workers: a job moving more than this runs in slices of whole pairs of about this many
  // bytes, so that other sessions' jobs interleave and a running job can be stopped.
  int64_t gpu_slice_bytes = int64_t{256} << 20;
};

// The CPU executor: `threads` threads (≥ 1) running plans with memcpy in slices of
// kCpuSliceBytes (ExecutePlanSliceOnHost) under a SIGBUS guard, sessions served in turn.
// Backend reported: kernel (the CPU stands in for the SM kernel).
std::unique_ptr<Executor> CreateCpuExecutor(int threads, QueueLimits limits);

}  // namespace kvshuttle
