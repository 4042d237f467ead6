// The in-process conversion API: run a TransferPlan on a CUDA stream with one of the backends.
// This is what the daemon's GPU workers call, and what programs without the daemon use
// (docs/kernels.md has a complete example).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>
#include "absl/strings/string_view.h"

#include <cuda_runtime_api.h>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/backend.h"
#include "core/plan.h"
#include "kernels/buffers.h"

namespace kvshuttle {

// Largest number of contiguous runs the batch and async backends accept for one plan.
inline constexpr int64_t kMaxCopyRuns = int64_t{1} << 20;

struct LaunchOptions {
  Backend backend = Backend::kAuto;
  // Kernel backend: use at most this many SMs (0 = no cap). Keeps an offload from starving a
  // concurrently running forward pass.
  int max_sms = 0;
};

// Device staging used by the staged backend: kStagingPieces pieces, each max(8 MiB, one host
// block) and at most kMaxStagingPieceBytes. Small pieces keep the pipeline's fill (the first
// window's conversion before the first copy) short.
inline constexpr int kStagingPieces = 4;
// Pinned host → device: windows per wait of the copy stream for pieces to be free again (the
// pieces form kStagingPieces / group slots used in turn). Waiting once per 2 or 4 windows
// (KVS_EXP_STAGED_GROUP, with 4 or 8 pieces) showed no gain over once per window on an H100
// (docs/performance.md), so it stays 1.
inline constexpr int kStagedH2DGroup = 1;
inline constexpr int kMaxStagingPieces = 8;  // experiment switches may raise the piece count
inline constexpr uint64_t kMinStagingPieceBytes = uint64_t{8} << 20;
inline constexpr uint64_t kMaxStagingPieceBytes = uint64_t{64} << 20;
// SMs the staged backend's kernel uses when LaunchOptions::max_sms is 0.
inline constexpr int kStagedSms = 8;

// Runs plans on one device. Owns a small ring of pinned + device staging buffers for the chunk
// pointer tables, so consecutive Enqueue calls overlap with the GPU work of earlier ones.
// Not thread-safe: one Converter per worker thread.
class Converter {
 public:
  // FAILED_PRECONDITION for an unknown device ordinal.
  static absl::StatusOr<std::unique_ptr<Converter>> Create(int device);
  ~Converter();
  Converter(const Converter&) = delete;
  Converter& operator=(const Converter&) = delete;

  // Enqueues `plan` on `stream` (which must belong to this converter's device) and returns the
  // backend used. Plan addresses must be device pointers or pinned/registered host pointers
  // visible to this device. An empty plan is a no-op returning the chosen backend. Errors:
  // INVALID_ARGUMENT for options out of range or a batch/async plan over kMaxCopyRuns runs;
  // CUDA failures with the failing call as context. The caller's current device is preserved.
  absl::StatusOr<Backend> Enqueue(const TransferPlan& plan, const LaunchOptions& options,
                                  cudaStream_t stream);

  // The backend Enqueue uses for `plan` when asked for `requested` (never kAuto):
  // - auto: staged when one side is pinned host memory holding whole blocks of a one-buffer
  //   layout (operational/universal, full head/layer/token ranges on that side), the other side
  //   device memory, and the plan moves ≥ 8 MiB — unless the plan is ≤ 256 contiguous runs of
  //   ≥ 1 MiB, which go to async (the copy engines directly); else kernel. Device → device
  //   plans of ≥ 64 MiB always take the kernel (faster than the copy engines there, and no
  //   scan of the plan's runs).
  // - staged: staged when the job qualifies as above (any size), else kernel.
  // - kernel, batch, async: themselves.
  Backend Choose(const TransferPlan& plan, Backend requested) const;

  int device() const { return device_; }
  int sm_count() const { return sm_count_; }

 private:
  // A chunk table in pinned (mapped) host memory that kernels read directly over PCIe: one
  // 16-byte read per CTA, where a device copy put a host-to-device copy (655 KB for 256
  // llama70b blocks) on the stream before every launch (0.94 → 0.97 × memcpy on an H100).
  // Strided plans' outer tables (one entry per pair) are copied on to `device` before the
  // kernel.
  struct Slot {
    PinnedBuffer host;
    DeviceBuffer device;
    cudaEvent_t free = nullptr;  // recorded after the last kernel that read this slot
  };
  static constexpr int kSlots = 4;

  explicit Converter(int device, int sm_count) : device_(device), sm_count_(sm_count) {}
  absl::Status EnqueueKernel(const TransferPlan& plan, const LaunchOptions& options,
                             cudaStream_t stream);
  absl::Status EnsureSlot(Slot& slot, size_t bytes);
  // A job the staged backend can take: which side is host, and its block size.
  struct StagedJob {
    bool host_is_dst = false;
    uint64_t block_bytes = 0;
    uint64_t piece_bytes = 0;  // staging piece: max(kMinStagingPieceBytes, block_bytes)
  };
  std::optional<StagedJob> StagedShape(const TransferPlan& plan) const;
  // Choose; when auto picks async, its scan's runs go to `async_runs` (if not null).
  Backend ChooseKeepingRuns(const TransferPlan& plan, Backend requested,
                            std::vector<CopyRun>* async_runs) const;
  absl::Status EnqueueStaged(const TransferPlan& plan, const StagedJob& job,
                             const LaunchOptions& options, cudaStream_t stream);
  // Copies `chunks` into the next slot once the slot's previous kernel is done with it.
  absl::Status StageTable(absl::Span<const ChunkAddress> chunks, Slot*& slot);


  int device_ = 0;
  int sm_count_ = 0;
  std::array<Slot, kSlots> slots_;
  int next_slot_ = 0;
  // Staged backend (created on first use).
  DeviceBuffer staging_;
  cudaStream_t copy_stream_ = nullptr;
  std::array<cudaEvent_t, kMaxStagingPieces> piece_free_{};  // piece no longer read or written
  std::array<cudaEvent_t, kMaxStagingPieces> piece_ready_{};  // piece filled, ready for next step
  // Host → device: a slot's pieces no longer read (recorded after its group's last kernel).
  std::array<cudaEvent_t, kMaxStagingPieces> slot_free_{};
  cudaEvent_t copies_done_ = nullptr;
};

}  // namespace kvshuttle
