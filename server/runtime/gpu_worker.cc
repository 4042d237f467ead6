// The worker of one GPU: a launch thread takes tasks from the queue and puts each on its one
// non-blocking stream through the Converter, with an event recorded after it; a completion
// thread waits for those events in launch order and reports each job done. The launch thread
// never waits for the GPU (only for a free slot of kMaxInFlight), so the next job is on the
// stream while the previous one runs. Once the device is in a sticky error state every later
// task fails fast with INTERNAL.
//
// Start events (JobTask::start_event): a job whose client event is not complete when its turn
// comes is set aside ("parked") instead of being put on the stream behind a
// cudaStreamWaitEvent. Work queued on a stream cannot be withdrawn, so a GPU-side wait on an
// event that never completes would either stall every later job on the stream or, on a
// stream of its own, leave a copy that could still run after the job was reported
// DEADLINE_EXCEEDED and its memory released. Instead a third thread, the start watcher, looks
// at parked events (cudaEventQuery: every kStartPollFast while a job was parked within
// kStartFastFor, every kStartPollSlow after) and hands a job whose event completed back to
// the queue, first in its session's FIFO; at its deadline, on cancel or at a drain past its
// deadline it ends having touched nothing. The launch thread never queries parked events, so
// however many jobs wait, the other jobs' launches do not wait for those queries.
#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"
#include "kernels/converter.h"
#include "kernels/cuda_check.h"
#include "server/ops/logging.h"
#include "server/runtime/cuda_runtime.h"
#include "server/runtime/task_queue.h"

namespace kvshuttle {
namespace {

// Most tasks taken from the queue at once, and most launched but not yet completed.
constexpr int kMaxBatch = 64;
constexpr size_t kMaxInFlight = 64;

// Parked jobs (start events): how often the start watcher looks at them, and how many may wait
// per worker and per session.
constexpr absl::Duration kStartPollFast = absl::Microseconds(10);
constexpr absl::Duration kStartFastFor = absl::Milliseconds(20);
constexpr absl::Duration kStartPollSlow = absl::Microseconds(500);
constexpr size_t kMaxParked = 1024;
constexpr size_t kMaxParkedPerSession = 256;

// A client's CUDA IPC event (JobTask::completion_event), opened for one record. Opening per
// job keeps nothing of a client alive past its job; the driver keeps a destroyed event valid
// until its pending record completes.
class ClientEvent {
 public:
  // An empty handle is "no event". FAILED_PRECONDITION when the driver refuses the handle;
  // `what` names the field in errors.
  static absl::StatusOr<ClientEvent> Open(const std::string& handle_bytes,
                                          absl::string_view what) {
    ClientEvent out;
    if (handle_bytes.empty()) return out;
    cudaIpcEventHandle_t handle;
    static_assert(sizeof(handle) == 64);
    if (handle_bytes.size() != sizeof(handle)) {  // checked at submit; defence in depth
      return absl::InvalidArgumentError(
          absl::StrCat(what, ".handle: ", handle_bytes.size(), " bytes; expected 64"));
    }
    std::memcpy(&handle, handle_bytes.data(), sizeof(handle));
    const cudaError_t error = cudaIpcOpenEventHandle(&out.event_, handle);
    if (error != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it so the next launch does not see it
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": cudaIpcOpenEventHandle failed: ", cudaGetErrorName(error), " (",
          cudaGetErrorString(error), "); the event must be created by a live process with "
          "cudaEventInterprocess | cudaEventDisableTiming"));
    }
    return out;
  }
  ClientEvent() = default;
  ClientEvent(ClientEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  ClientEvent& operator=(ClientEvent&&) = delete;
  ~ClientEvent() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }

  // The event's state: cudaSuccess once complete (or never recorded), cudaErrorNotReady while
  // work before its record is pending, else an error.
  cudaError_t Query() const { return event_ == nullptr ? cudaSuccess : cudaEventQuery(event_); }

  // Records the event on `stream` (no-op without an event).
  absl::Status Record(cudaStream_t stream, const std::string& worker) const {
    if (event_ == nullptr) return absl::OkStatus();
    const cudaError_t error = cudaEventRecord(event_, stream);
    if (error == cudaSuccess) return absl::OkStatus();
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "completion_event: cudaEventRecord on ", worker, " failed: ", cudaGetErrorName(error),
        " (", cudaGetErrorString(error), "); create the event on this GPU"));
  }

 private:
  cudaEvent_t event_ = nullptr;
};

class GpuWorker : public QueuedExecutor {
 public:
  GpuWorker(int ordinal, const std::string& uuid, QueueLimits limits)
      : QueuedExecutor(absl::StrCat("gpu:", uuid), limits),
        ordinal_(ordinal),
        slice_bytes_(limits.gpu_slice_bytes) {}

  ~GpuWorker() override {
    Drain(absl::InfiniteFuture());
    int previous = -1;
    const bool restore = cudaGetDevice(&previous) == cudaSuccess;
    cudaSetDevice(ordinal_);
    for (cudaEvent_t event : free_events_) cudaEventDestroy(event);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    converter_.reset();
    if (restore) cudaSetDevice(previous);
  }

  // Creates the stream and the converter on the caller's thread (its device is preserved),
  // then starts the worker thread.
  absl::Status Start() {
    ASSIGN_OR_RETURN(converter_, Converter::Create(ordinal_));
    int previous = 0;
    CUDA_RETURN_IF_ERROR(cudaGetDevice(&previous));
    CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal_));
    const cudaError_t error = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    CUDA_RETURN_IF_ERROR(cudaSetDevice(previous));
    if (error != cudaSuccess) {
      return CudaStatus(error, absl::StrCat("cudaStreamCreateWithFlags on ", name_));
    }
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }

  void Drain(absl::Time deadline) override {
    std::lock_guard<std::mutex> lock(drain_mutex_);
    queue_.Close();
    {
      std::unique_lock<std::mutex> exit_lock(exit_mutex_);
      exited_cv_.wait_until(exit_lock, absl::ToChronoTime(deadline), [this] { return exited_; });
    }
    AbortQueued();  // nothing left once the thread exited by itself
    if (thread_.joinable()) thread_.join();
  }

 private:
  // A task whose copy is on the stream, with the event recorded after it.
  struct Launched {
    std::unique_ptr<JobTask> task;
    cudaEvent_t event = nullptr;
    Backend backend = Backend::kAuto;
    absl::Time launch;
    std::optional<JobOutcome> outcome;  // set: the job ends with this once the event is done
  };

  // A task waiting for its start event (launch thread only).
  struct Parked {
    std::unique_ptr<JobTask> task;
    ClientEvent event;
  };

  void Loop() {
    const cudaError_t set = cudaSetDevice(ordinal_);
    if (set != cudaSuccess) MarkSticky(set, "cudaSetDevice in the worker thread");
    std::thread completer([this] { CompleteLoop(); });
    std::thread watcher([this] { WatchLoop(); });
    // Long jobs partly launched (this thread only, never back in the shared queue: their
    // memory must stay held until their last slice is on the stream). One slice of each, then
    // whatever others queued meanwhile, in turn.
    std::deque<std::unique_ptr<JobTask>> resume;
    while (true) {
      std::vector<std::unique_ptr<JobTask>> batch;
      if (!resume.empty()) {
        batch = queue_.TryPopBatch(kMaxBatch);
      } else {
        batch = queue_.PopBatch(kMaxBatch);
      }
      if (batch.empty() && resume.empty()) {
        // Closed and drained, unless jobs still wait for their start events: the watcher puts
        // them back into the queue (before it stops counting them) or ends them.
        if (ParkedCount() == 0 && queue_.size() == 0) break;
        absl::SleepFor(absl::Microseconds(100));
        continue;
      }
      for (std::unique_ptr<JobTask>& task : batch) Step(std::move(task), resume);
      for (size_t n = resume.size(); n > 0; --n) {
        std::unique_ptr<JobTask> task = std::move(resume.front());
        resume.pop_front();
        Step(std::move(task), resume);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      launcher_done_ = true;
    }
    launched_.notify_one();
    {
      std::lock_guard<std::mutex> lock(park_mu_);
      watcher_stop_ = true;
    }
    park_cv_.notify_one();
    watcher.join();
    completer.join();
    {
      std::lock_guard<std::mutex> lock(exit_mutex_);
      exited_ = true;
    }
    exited_cv_.notify_all();
  }

  // Launches the next slice of `task` (all of it when small): a task with slices left goes to
  // `resume`, a launched one to the completion thread.
  void Step(std::unique_ptr<JobTask> task, std::deque<std::unique_ptr<JobTask>>& resume) {
    std::optional<Launched> l = Launch(std::move(task), &resume);
    if (!l.has_value()) return;
    std::unique_lock<std::mutex> lock(mu_);
    slot_free_.wait(lock, [this] { return in_flight_.size() < kMaxInFlight; });
    in_flight_.push_back(std::move(*l));
    launched_.notify_one();
  }

  // The completion thread: finishes launched tasks in launch order as their events complete.
  void CompleteLoop() {
    const cudaError_t set = cudaSetDevice(ordinal_);
    if (set != cudaSuccess) MarkSticky(set, "cudaSetDevice in the completion thread");
    while (true) {
      Launched l;
      {
        std::unique_lock<std::mutex> lock(mu_);
        launched_.wait(lock, [this] { return !in_flight_.empty() || launcher_done_; });
        if (in_flight_.empty()) return;  // the launcher is done and nothing is left
        l = std::move(in_flight_.front());
        in_flight_.pop_front();
      }
      slot_free_.notify_one();
      FinishLaunched(l);
    }
  }

  // Launches `task` (or its next slice) and returns it as launched once its last part is on the
  // stream; a task with slices left goes to `resume` (nothing returned). Completes it right
  // away (nothing returned) when it is dropped, fails to launch, or the device is unusable; a
  // task stopped after some of its slices went on the stream is returned with `stopped` set,
  // so that it completes once those are done.
  std::optional<Launched> Launch(std::unique_ptr<JobTask> task,
                                 std::deque<std::unique_ptr<JobTask>>* resume) {
    const absl::Time now = absl::Now();
    if (!task->running) {
      if (!task->start_event.empty() &&
          (task->cancelled == nullptr || !task->cancelled->cancelled()) && SetAside(task, now)) {
        return std::nullopt;
      }
      if (std::optional<JobOutcome> dropped = DropOutcome(*task, now)) {
        Finish(std::move(task), *dropped);
        return std::nullopt;
      }
      task->running = true;
      task->launched_at = now;
    }
    const absl::Time launch = task->launched_at;
    const bool started = task->next_pair > 0;  // slices of it are on the stream
    if (aborting() || (task->cancelled != nullptr && task->cancelled->stop_requested())) {
      JobOutcome stopped = StoppedOutcome(*task, launch);
      if (!started) {
        Finish(std::move(task), stopped);
        return std::nullopt;
      }
      return AfterLaunched(std::move(task), std::move(stopped));
    }
    JobOutcome failed;
    failed.queued = launch - task->submitted;
    if (absl::Status sticky = Sticky(); !sticky.ok()) {
      failed.status = sticky;
      Finish(std::move(task), failed);
      return std::nullopt;
    }
    // Which pairs this step launches: all of them, or a slice of about slice_bytes_.
    const int64_t pairs = task->plan.num_pairs();
    int64_t end = pairs;
    if (slice_bytes_ > 0 && pairs > 1 && task->plan.bytes() > slice_bytes_) {
      const int64_t per_pair = std::max<int64_t>(1, task->plan.bytes() / pairs);
      end = std::min(pairs, task->next_pair + std::max<int64_t>(1, slice_bytes_ / per_pair));
    }
    const bool last = end == pairs;
    // The client's event is opened before the job's last part goes on the stream: a bad handle
    // fails the job (an unsliced one without running it).
    absl::StatusOr<ClientEvent> client_event =
        last ? ClientEvent::Open(task->completion_event, "completion_event") : ClientEvent();
    if (!client_event.ok()) {
      failed.status = absl::Status(client_event.status().code(),
                                   absl::StrCat("job ", task->job_id, ": ",
                                                client_event.status().message()));
      if (started) return AfterLaunched(std::move(task), std::move(failed));
      Finish(std::move(task), failed);
      return std::nullopt;
    }
    const bool whole = task->next_pair == 0 && last;
    std::optional<TransferPlan> slice;
    if (!whole) slice = task->plan.PairSlice(task->next_pair, end);
    const TransferPlan& part = whole ? task->plan : *slice;
    const absl::StatusOr<Backend> backend =
        converter_->Enqueue(part, LaunchOptions{task->backend, task->max_sms}, stream_);
    if (backend.ok() && !last) {
      task->next_pair = end;
      task->cursor.bytes_done += part.bytes();
      task->slice_backend = *backend;
      resume->push_back(std::move(task));
      return std::nullopt;
    }
    cudaEvent_t event = nullptr;
    absl::Status status = backend.status();
    if (status.ok()) status = RecordEvent(&event);
    if (status.ok()) status = client_event->Record(stream_, name_);
    if (!status.ok()) {
      // Part of the copy may be on the stream: wait before the task's memory is released.
      const cudaError_t sync = cudaStreamSynchronize(stream_);
      if (sync != cudaSuccess) MarkSticky(sync, "cudaStreamSynchronize after a failed launch");
      ProbeSticky();
      failed.status = absl::Status(
          status.code(), absl::StrCat("job ", task->job_id, " on ", name_, ": ", status.message()));
      failed.run = absl::Now() - launch;
      if (event != nullptr) {  // recorded, and complete after the synchronize: reusable
        std::lock_guard<std::mutex> lock(mu_);
        free_events_.push_back(event);
      }
      Finish(std::move(task), failed);
      return std::nullopt;
    }
    if (task->launched) task->launched();
    return Launched{std::move(task), event, *backend, launch, std::nullopt};
  }

  // A task with a start event, before its launch: false when the event is complete (the task
  // launches now); true when the task was taken — parked until its event completes, or
  // completed with an error (a handle the driver refuses, a failed query, too many parked).
  bool SetAside(std::unique_ptr<JobTask>& task, absl::Time now) {
    absl::StatusOr<ClientEvent> event = ClientEvent::Open(task->start_event, "start_event");
    cudaError_t state = cudaSuccess;
    if (event.ok()) state = event->Query();
    if (event.ok() && state == cudaSuccess) {
      task->start_event.clear();
      return false;
    }
    JobOutcome failed;
    failed.queued = now - task->submitted;
    const std::string job = absl::StrCat("job ", task->job_id, ": ");
    std::unique_lock<std::mutex> lock(park_mu_);
    size_t& of_session = parked_per_session_[task->session];
    if (!event.ok()) {
      failed.status =
          absl::Status(event.status().code(), absl::StrCat(job, event.status().message()));
    } else if (state != cudaErrorNotReady) {
      failed.status = StartQueryError(*task, state);
    } else if (parked_total_ >= kMaxParked || of_session >= kMaxParkedPerSession) {
      failed.status = absl::ResourceExhaustedError(absl::StrCat(
          job, "its start event is not complete and ", of_session, " jobs of this session (",
          parked_total_, " in all) already wait for theirs on ", name_, "; at most ",
          kMaxParkedPerSession, " per session, ", kMaxParked, " in all"));
    } else {
      ++of_session;
      ++parked_total_;
      last_parked_ = now;
      parked_.push_back(Parked{std::move(task), *std::move(event)});
      lock.unlock();
      park_cv_.notify_one();
      return true;
    }
    if (of_session == 0) parked_per_session_.erase(task->session);
    lock.unlock();
    Finish(std::move(task), failed);
    return true;
  }

  absl::Status StartQueryError(const JobTask& task, cudaError_t error) {
    cudaGetLastError();  // not sticky for an event of another process: clear it
    ProbeSticky();
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", task.job_id, ": start_event: cudaEventQuery failed: ", cudaGetErrorName(error),
        " (", cudaGetErrorString(error), ")"));
  }

  // Jobs parked or being looked at by the watcher.
  size_t ParkedCount() {
    std::lock_guard<std::mutex> lock(park_mu_);
    return parked_total_;
  }

  // The start watcher: while jobs are parked, looks at each in turn — a job whose event
  // completed goes back to the queue, first in its session's FIFO (the launch thread then
  // launches it like any other); a job cancelled, past its deadline, of a drain past its
  // deadline or whose event query fails completes having run nothing; the rest wait on.
  void WatchLoop() {
    const cudaError_t set = cudaSetDevice(ordinal_);
    if (set != cudaSuccess) MarkSticky(set, "cudaSetDevice in the start watcher");
    // Its short sleeps end close to their time, not 50 µs late.
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    std::unique_lock<std::mutex> lock(park_mu_);
    while (true) {
      park_cv_.wait(lock, [this] { return watcher_stop_ || !parked_.empty(); });
      if (parked_.empty()) return;  // stopping, and nothing waits
      // One look at every parked job, the lock released for the CUDA calls and completions.
      std::deque<Parked> looking;
      looking.swap(parked_);
      lock.unlock();
      const absl::Time now = absl::Now();
      std::deque<Parked> still;
      std::vector<uint64_t> left;  // sessions of the jobs that left
      for (Parked& p : looking) {
        JobTask& task = *p.task;
        const cudaError_t state = p.event.Query();
        JobOutcome ended;
        ended.queued = now - task.submitted;
        if (state == cudaSuccess && !aborting()) {
          ended.status = absl::OkStatus();
        } else if (state != cudaSuccess && state != cudaErrorNotReady) {
          ended.status = StartQueryError(task, state);
        } else if (aborting()) {
          ended.status = absl::CancelledError(absl::StrCat(
              "job ", task.job_id, ": cancelled while waiting for its start event, the daemon "
              "is shutting down (drain timeout)"));
        } else if (task.cancelled != nullptr && task.cancelled->cancelled()) {
          ended.status = absl::CancelledError(
              absl::StrCat("job ", task.job_id, ": cancelled while waiting for its start event"));
        } else if (now > task.deadline) {
          ended.status = absl::DeadlineExceededError(absl::StrCat(
              "job ", task.job_id, ": its start event was not complete by the job's deadline (",
              absl::FormatDuration(now - task.submitted), " after submit); nothing was copied"));
        } else {
          still.push_back(std::move(p));
          continue;
        }
        left.push_back(task.session);
        if (ended.status.ok()) {
          p.task->start_event.clear();
          queue_.PushFront(std::move(p.task));  // never refused: the task was admitted
        } else {
          Finish(std::move(p.task), ended);
        }
      }
      lock.lock();
      for (uint64_t session : left) {
        if (--parked_per_session_[session] == 0) parked_per_session_.erase(session);
      }
      parked_total_ -= left.size();
      // Jobs parked meanwhile stay behind the ones looked at (oldest first).
      for (Parked& p : parked_) still.push_back(std::move(p));
      parked_.swap(still);
      if (parked_.empty()) continue;
      const absl::Duration poll =
          absl::Now() - last_parked_ < kStartFastFor ? kStartPollFast : kStartPollSlow;
      park_cv_.wait_for(lock, absl::ToChronoNanoseconds(poll), [this] { return watcher_stop_; });
      if (watcher_stop_) {
        // Stopping with jobs parked only happens when the launch thread gave up on them
        // (never: it waits for ParkedCount() == 0); end them rather than leak them.
        std::deque<Parked> rest;
        rest.swap(parked_);
        parked_per_session_.clear();
        parked_total_ = 0;
        lock.unlock();
        for (Parked& p : rest) {
          JobOutcome ended;
          ended.queued = absl::Now() - p.task->submitted;
          ended.status = absl::CancelledError(absl::StrCat(
              "job ", p.task->job_id, ": cancelled while waiting for its start event (worker "
              "stopped)"));
          Finish(std::move(p.task), ended);
        }
        return;
      }
    }
  }

  // A task with parts on the stream that ends early (stopped, or its client event refused):
  // an event after its launched parts, and it completes with `outcome` once they are done.
  std::optional<Launched> AfterLaunched(std::unique_ptr<JobTask> task, JobOutcome outcome) {
    cudaEvent_t event = nullptr;
    absl::Status recorded = RecordEvent(&event);
    if (!recorded.ok()) {
      const cudaError_t sync = cudaStreamSynchronize(stream_);
      if (sync != cudaSuccess) MarkSticky(sync, "cudaStreamSynchronize for a stopped job");
      Finish(std::move(task), outcome);
      return std::nullopt;
    }
    const Backend backend = task->slice_backend;
    const absl::Time launch = task->launched_at;
    return Launched{std::move(task), event, backend, launch, std::move(outcome)};
  }

  // Waits for a launched task's event and completes it.
  void FinishLaunched(Launched& l) {
    const cudaError_t error = cudaEventSynchronize(l.event);
    JobOutcome outcome = l.outcome.value_or(JobOutcome{});
    outcome.backend = l.backend;
    outcome.queued = l.launch - l.task->submitted;
    outcome.run = absl::Now() - l.launch;
    if (error == cudaSuccess) {
      std::lock_guard<std::mutex> lock(mu_);
      free_events_.push_back(l.event);
    } else {
      // Errors of asynchronous work are sticky: the context is unusable from now on.
      MarkSticky(error, absl::StrCat("job ", l.task->job_id));
      outcome.status = Sticky();
      cudaEventDestroy(l.event);
    }
    Finish(std::move(l.task), outcome);
  }

  absl::Status RecordEvent(cudaEvent_t* event) {
    *event = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_events_.empty()) {
        *event = free_events_.back();
        free_events_.pop_back();
      }
    }
    if (*event == nullptr) {
      CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(event, cudaEventDisableTiming));
    }
    const cudaError_t error = cudaEventRecord(*event, stream_);
    if (error != cudaSuccess) {
      std::lock_guard<std::mutex> lock(mu_);
      free_events_.push_back(*event);
      *event = nullptr;
      return CudaStatus(error, "cudaEventRecord after the copy");
    }
    return absl::OkStatus();
  }

  // Checks the stream for an error left by earlier work (a sticky error shows up here).
  void ProbeSticky() {
    const cudaError_t error = cudaStreamQuery(stream_);
    if (error != cudaSuccess && error != cudaErrorNotReady) MarkSticky(error, "cudaStreamQuery");
    cudaGetLastError();  // clears a non-sticky launch error; a sticky one stays
  }

  absl::Status Sticky() {
    std::lock_guard<std::mutex> lock(mu_);
    return sticky_;
  }

  void MarkSticky(cudaError_t error, absl::string_view context) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sticky_.ok()) return;
    sticky_ = absl::InternalError(absl::StrCat(
        name_, " is in a CUDA error state since ", context, ": ", cudaGetErrorName(error), " (",
        cudaGetErrorString(error), "); every later job on this GPU fails; restart the daemon"));
    LogError("GPU in a CUDA error state; restart the daemon",
             {{"executor", name_}, {"error", sticky_.ToString()}});
  }

  const int ordinal_;
  const int64_t slice_bytes_;
  std::unique_ptr<Converter> converter_;
  cudaStream_t stream_ = nullptr;
  std::thread thread_;
  std::mutex exit_mutex_;
  std::condition_variable exited_cv_;
  bool exited_ = false;
  // Shared by the launch and the completion thread.
  std::mutex mu_;
  std::condition_variable launched_;   // in_flight_ grew, or the launcher is done
  std::condition_variable slot_free_;  // in_flight_ shrank
  std::deque<Launched> in_flight_;     // launch order
  bool launcher_done_ = false;
  std::vector<cudaEvent_t> free_events_;
  absl::Status sticky_;
  // Jobs waiting for their start events (SetAside on the launch thread adds, the start watcher
  // looks and removes), oldest first.
  std::mutex park_mu_;
  std::condition_variable park_cv_;  // a job was parked, or the watcher should stop
  bool watcher_stop_ = false;
  std::deque<Parked> parked_;
  size_t parked_total_ = 0;  // parked_ and the jobs the watcher is looking at
  std::map<uint64_t, size_t> parked_per_session_;  // session serial → parked jobs
  absl::Time last_parked_ = absl::InfinitePast();
};

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> CreateGpuWorker(int ordinal, const std::string& uuid,
                                                          QueueLimits limits) {
  auto worker = std::make_unique<GpuWorker>(ordinal, uuid, limits);
  RETURN_IF_ERROR(worker->Start());
  return worker;
}

}  // namespace kvshuttle
