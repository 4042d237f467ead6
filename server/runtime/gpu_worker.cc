// The worker of one GPU: a launch thread takes tasks from the queue and puts each on its one
// non-blocking stream through the Converter, with an event recorded after it; a completion
// thread waits for those events in launch order and reports each job done. The launch thread
// never waits for the GPU (only for a free slot of kMaxInFlight), so the next job is on the
// stream while the previous one runs. Once the device is in a sticky error state every later
// task fails fast with INTERNAL.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
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

// A client's CUDA IPC event (JobTask::completion_event), opened for one record. Opening per
// job keeps nothing of a client alive past its job; the driver keeps a destroyed event valid
// until its pending record completes.
class ClientEvent {
 public:
  // An empty handle is "no event". FAILED_PRECONDITION when the driver refuses the handle.
  static absl::StatusOr<ClientEvent> Open(const std::string& handle_bytes) {
    ClientEvent out;
    if (handle_bytes.empty()) return out;
    cudaIpcEventHandle_t handle;
    static_assert(sizeof(handle) == 64);
    if (handle_bytes.size() != sizeof(handle)) {  // checked at submit; defence in depth
      return absl::InvalidArgumentError(absl::StrCat(
          "completion_event.handle: ", handle_bytes.size(), " bytes; expected 64"));
    }
    std::memcpy(&handle, handle_bytes.data(), sizeof(handle));
    const cudaError_t error = cudaIpcOpenEventHandle(&out.event_, handle);
    if (error != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it so the next launch does not see it
      return absl::FailedPreconditionError(absl::StrCat(
          "completion_event: cudaIpcOpenEventHandle failed: ", cudaGetErrorName(error), " (",
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
      : QueuedExecutor(absl::StrCat("gpu:", uuid), limits), ordinal_(ordinal) {}

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
  };

  void Loop() {
    const cudaError_t set = cudaSetDevice(ordinal_);
    if (set != cudaSuccess) MarkSticky(set, "cudaSetDevice in the worker thread");
    std::thread completer([this] { CompleteLoop(); });
    while (true) {
      std::vector<std::unique_ptr<JobTask>> batch = queue_.PopBatch(kMaxBatch);
      if (batch.empty()) break;  // closed and drained
      for (std::unique_ptr<JobTask>& task : batch) {
        std::optional<Launched> l = Launch(std::move(task));
        if (!l.has_value()) continue;
        std::unique_lock<std::mutex> lock(mu_);
        slot_free_.wait(lock, [this] { return in_flight_.size() < kMaxInFlight; });
        in_flight_.push_back(std::move(*l));
        launched_.notify_one();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      launcher_done_ = true;
    }
    launched_.notify_one();
    completer.join();
    {
      std::lock_guard<std::mutex> lock(exit_mutex_);
      exited_ = true;
    }
    exited_cv_.notify_all();
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

  // Launches `task` and returns it as launched, or completes it right away (and returns
  // nothing) when it is dropped, fails to launch, or the device is unusable.
  std::optional<Launched> Launch(std::unique_ptr<JobTask> task) {
    const absl::Time launch = absl::Now();
    if (std::optional<JobOutcome> dropped = DropOutcome(*task, launch)) {
      Finish(std::move(task), *dropped);
      return std::nullopt;
    }
    if (aborting() || (task->cancelled != nullptr && task->cancelled->stop_requested())) {
      Finish(std::move(task), StoppedOutcome(*task, launch));
      return std::nullopt;
    }
    JobOutcome failed;
    failed.queued = launch - task->submitted;
    if (absl::Status sticky = Sticky(); !sticky.ok()) {
      failed.status = sticky;
      Finish(std::move(task), failed);
      return std::nullopt;
    }
    // The client's event is opened before anything goes on the stream: a bad handle fails
    // the job without running it.
    absl::StatusOr<ClientEvent> client_event = ClientEvent::Open(task->completion_event);
    if (!client_event.ok()) {
      failed.status = absl::Status(client_event.status().code(),
                                   absl::StrCat("job ", task->job_id, ": ",
                                                client_event.status().message()));
      Finish(std::move(task), failed);
      return std::nullopt;
    }
    const absl::StatusOr<Backend> backend =
        converter_->Enqueue(task->plan, LaunchOptions{task->backend, task->max_sms}, stream_);
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
    return Launched{std::move(task), event, *backend, launch};
  }

  // Waits for a launched task's event and completes it.
  void FinishLaunched(Launched& l) {
    const cudaError_t error = cudaEventSynchronize(l.event);
    JobOutcome outcome;
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
};

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> CreateGpuWorker(int ordinal, const std::string& uuid,
                                                          QueueLimits limits) {
  auto worker = std::make_unique<GpuWorker>(ordinal, uuid, limits);
  RETURN_IF_ERROR(worker->Start());
  return worker;
}

}  // namespace kvshuttle
