// Converter: backend selection, pointer-table staging and the memcpy backends.
#include "kernels/converter.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/convert_kernel.h"
#include "kernels/cuda_check.h"

namespace kvshuttle {
namespace {

constexpr int kThreads = 256;          // CTA size without an SM cap
constexpr int kCtasPerSm = 8;          // 8 × 256 threads fill an SM
constexpr int kCappedThreads = 1024;   // one big CTA per allowed SM under a cap
constexpr uint64_t kAsyncMinRunBytes = uint64_t{1} << 20;
constexpr size_t kAsyncMaxRuns = 256;

// Restores the caller's current device on scope exit.
class DeviceGuard {
 public:
  DeviceGuard() { cudaGetDevice(&previous_); }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

absl::StatusOr<std::vector<CopyRun>> RunsFor(const TransferPlan& plan, Backend backend) {
  const int64_t rows = plan.RowsPerChunk() * static_cast<int64_t>(plan.chunks().size());
  std::vector<CopyRun> runs = plan.Runs();
  if (static_cast<int64_t>(runs.size()) > kMaxCopyRuns) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend ", BackendName(backend), ": the plan has ", runs.size(), " contiguous runs (",
        rows, " rows of ", plan.geometry().row_bytes, " bytes); at most ", kMaxCopyRuns,
        " are allowed; use backend kernel"));
  }
  return runs;
}

absl::Status EnqueueAsync(const std::vector<CopyRun>& runs, cudaStream_t stream) {
  for (const CopyRun& r : runs) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(reinterpret_cast<void*>(r.dst),
                                         reinterpret_cast<const void*>(r.src), r.bytes,
                                         cudaMemcpyDefault, stream));
  }
  return absl::OkStatus();
}

absl::Status EnqueueBatch(const std::vector<CopyRun>& runs, cudaStream_t stream) {
  std::vector<void*> dsts(runs.size());
  std::vector<const void*> srcs(runs.size());
  std::vector<size_t> sizes(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    dsts[i] = reinterpret_cast<void*>(runs[i].dst);
    srcs[i] = reinterpret_cast<const void*>(runs[i].src);
    sizes[i] = runs[i].bytes;
  }
  cudaMemcpyAttributes attrs{};
  attrs.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  size_t attr_index = 0;
  CUDA_RETURN_IF_ERROR(cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), runs.size(),
                                            &attrs, &attr_index, 1, stream));
  return absl::OkStatus();
}

}  // namespace

Backend ChooseBackend(const TransferPlan& plan) {
  // Only whole-chunk runs can be few and large; anything row-granular goes to the kernel.
  if (plan.RowsPerChunk() != 1 || plan.chunks().size() > 4 * kAsyncMaxRuns) {
    return Backend::kKernel;
  }
  const std::vector<CopyRun> runs = plan.Runs();
  if (runs.size() > kAsyncMaxRuns) return Backend::kKernel;
  uint64_t smallest = UINT64_MAX;
  for (const CopyRun& r : runs) smallest = std::min(smallest, r.bytes);
  return smallest >= kAsyncMinRunBytes ? Backend::kAsync : Backend::kKernel;
}

absl::StatusOr<std::unique_ptr<Converter>> Converter::Create(int device) {
  int count = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("device: ordinal ", device, " is outside [0, ", count - 1, "]"));
  }
  int sm_count = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  std::unique_ptr<Converter> converter(new Converter(device, sm_count));
  DeviceGuard guard;
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  for (Slot& slot : converter->slots_) {
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&slot.free, cudaEventDisableTiming));
  }
  return converter;
}

Converter::~Converter() {
  for (Slot& slot : slots_) {
    if (slot.free != nullptr) {
      cudaEventSynchronize(slot.free);
      cudaEventDestroy(slot.free);
    }
  }
}

absl::Status Converter::EnsureSlot(Slot& slot, size_t bytes) {
  if (slot.host.size() >= bytes) return absl::OkStatus();
  const size_t capacity = std::max<size_t>(bytes, size_t{64} << 10);
  ASSIGN_OR_RETURN(slot.host, PinnedBuffer::Create(capacity));
  ASSIGN_OR_RETURN(slot.device, DeviceBuffer::Create(device_, capacity));
  return absl::OkStatus();
}

absl::Status Converter::EnqueueKernel(const TransferPlan& plan, const LaunchOptions& options,
                                      cudaStream_t stream) {
  Slot& slot = slots_[next_slot_];
  next_slot_ = (next_slot_ + 1) % kSlots;
  // The slot's previous kernel must be done reading before its tables are overwritten.
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot.free));
  const size_t table_bytes = plan.chunks().size() * sizeof(ChunkAddress);
  RETURN_IF_ERROR(EnsureSlot(slot, table_bytes));
  std::memcpy(slot.host.data(), plan.chunks().data(), table_bytes);
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(slot.device.data(), slot.host.data(), table_bytes,
                                       cudaMemcpyHostToDevice, stream));
  const bool capped = options.max_sms > 0 && options.max_sms < sm_count_;
  const int threads = capped ? kCappedThreads : kThreads;
  const int grid_limit = capped ? options.max_sms : sm_count_ * kCtasPerSm;
  RETURN_IF_ERROR(LaunchChunkCopy(plan, static_cast<const ChunkAddress*>(slot.device.data()),
                                  grid_limit, threads, stream));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.free, stream));
  return absl::OkStatus();
}

absl::StatusOr<Backend> Converter::Enqueue(const TransferPlan& plan, const LaunchOptions& options,
                                           cudaStream_t stream) {
  if (options.max_sms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sms: ", options.max_sms, " is negative; use 0 for no cap"));
  }
  const Backend backend =
      options.backend == Backend::kAuto ? ChooseBackend(plan) : options.backend;
  if (plan.empty()) return backend;
  DeviceGuard guard;
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  switch (backend) {
    case Backend::kKernel:
      RETURN_IF_ERROR(EnqueueKernel(plan, options, stream));
      break;
    case Backend::kBatch: {
      ASSIGN_OR_RETURN(const std::vector<CopyRun> runs, RunsFor(plan, backend));
      RETURN_IF_ERROR(EnqueueBatch(runs, stream));
      break;
    }
    case Backend::kAsync: {
      ASSIGN_OR_RETURN(const std::vector<CopyRun> runs, RunsFor(plan, backend));
      RETURN_IF_ERROR(EnqueueAsync(runs, stream));
      break;
    }
    case Backend::kAuto:
      return absl::InternalError("ChooseBackend returned auto");
  }
  return backend;
}

}  // namespace kvshuttle
