// Converter: backend selection, pointer-table staging and the memcpy backends.
#include "kernels/converter.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/convert_kernel.h"
#include "kernels/cuda_check.h"

namespace kvshuttle {
namespace {

constexpr int kThreads = 256;          // CTA size without an SM cap
constexpr int kCappedThreads = 1024;   // one big CTA per allowed SM under a cap
constexpr uint64_t kAsyncMinRunBytes = uint64_t{1} << 20;
constexpr size_t kAsyncMaxRuns = 256;

// Experiment switches of the staged backend, read once from the environment (A/B runs of
// kvs_kernel_bench, docs/performance.md; never set in production):
//   KVS_EXP_STAGED_PIECE_MIB=N  staging pieces of at least N MiB instead of 8
//   KVS_EXP_STAGED_SMS=N        the window kernels' SM cap instead of kStagedSms
//   KVS_EXP_STAGED_NO_KERNEL=1  leave the window kernels out: copies and events only (the job's
//                               result is wrong; it times the copy pipeline alone)
//   KVS_EXP_STAGED_PIECES=N     staging pieces (2..8) instead of kStagingPieces
//   KVS_EXP_STAGED_GROUP=N      host → device windows per copy-stream wait instead of
//                               kStagedH2DGroup (pieces / N ≥ 2 slots)
//   KVS_EXP_FACTORED=device|pinned|off  where the kernel reads a strided plan's outer table:
//                               a device copy (default), the pinned slot, or no factored
//                               table at all (the plan's chunks materialized, as explicit ones)
enum class FactoredMode { kDevice, kPinned, kOff };

struct StagedExperiment {
  uint64_t min_piece_bytes = kMinStagingPieceBytes;
  int sms = kStagedSms;
  bool no_kernel = false;
  int pieces = kStagingPieces;
  int group = kStagedH2DGroup;
  FactoredMode factored = FactoredMode::kDevice;
};

const StagedExperiment& Experiment() {
  static const StagedExperiment e = [] {
    StagedExperiment x;
    if (const char* v = std::getenv("KVS_EXP_STAGED_PIECE_MIB"); v != nullptr && std::atoi(v) > 0) {
      x.min_piece_bytes = static_cast<uint64_t>(std::atoi(v)) << 20;
    }
    if (const char* v = std::getenv("KVS_EXP_STAGED_SMS"); v != nullptr && std::atoi(v) > 0) {
      x.sms = std::atoi(v);
    }
    const char* nk = std::getenv("KVS_EXP_STAGED_NO_KERNEL");
    x.no_kernel = nk != nullptr && nk[0] == '1';
    if (const char* v = std::getenv("KVS_EXP_STAGED_PIECES"); v != nullptr) {
      x.pieces = std::clamp(std::atoi(v), 2, kMaxStagingPieces);
    }
    if (const char* v = std::getenv("KVS_EXP_STAGED_GROUP"); v != nullptr && std::atoi(v) > 0) {
      x.group = std::atoi(v);
    }
    if (x.pieces % x.group != 0 || x.pieces / x.group < 2) x.group = 1;
    if (const char* v = std::getenv("KVS_EXP_FACTORED"); v != nullptr) {
      if (std::strcmp(v, "pinned") == 0) x.factored = FactoredMode::kPinned;
      if (std::strcmp(v, "off") == 0) x.factored = FactoredMode::kOff;
    }
    return x;
  }();
  return e;
}

// Restores the caller's current device on scope exit.
class DeviceGuard {
 public:
  DeviceGuard() { cudaGetDevice(&previous_); }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

absl::StatusOr<std::vector<CopyRun>> RunsFor(const TransferPlan& plan, Backend backend) {
  const int64_t rows = plan.RowsPerChunk() * plan.num_chunks();
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

namespace {

// async when the whole plan is a few large contiguous runs (the copy engines win there):
// same-layout-family copies whose rows merge across chunks and blocks. The scan stops at the
// first small run, so row-granular plans cost one run, not a list of every row (materializing
// that list cost 90-150 µs on one-block jobs).
// The runs are kept (`runs`, when not null) so that `auto` does not scan the plan a second time
// to enqueue them: on small plans that second scan was the 1-2 µs per call by which auto
// trailed explicit async (docs/performance.md).
bool FewLargeRuns(const TransferPlan& plan, std::vector<CopyRun>* runs = nullptr) {
  // Huge plans go to the kernel without a scan: it runs them at ≥ 0.96 × memcpy anyway.
  constexpr int64_t kMaxRowsToInspect = int64_t{1} << 16;
  if (plan.RowsPerChunk() * plan.num_chunks() > kMaxRowsToInspect) {
    return false;
  }
  return plan.FewLargeRuns(kAsyncMaxRuns, kAsyncMinRunBytes, runs);
}

bool IsPinnedHost(uint64_t address) {
  cudaPointerAttributes attrs{};
  if (cudaPointerGetAttributes(&attrs, reinterpret_cast<const void*>(address)) != cudaSuccess) {
    cudaGetLastError();  // unregistered host memory: not ours to stage
    return false;
  }
  return attrs.type == cudaMemoryTypeHost;
}

// Device → device plans this large run faster on the kernel than on the copy engines, even
// as a few large runs (H100, cdc63cb: kernel best on 25/25 llama70b and 19/25 MLA pairs at
// 64 blocks, 50/50 at 256; docs/performance.md).
bool LargeDeviceToDevice(const TransferPlan& plan) {
  constexpr int64_t kKernelMinBytes = int64_t{64} << 20;
  if (plan.bytes() < kKernelMinBytes || plan.empty()) return false;
  const ChunkAddress first = plan.ChunkAt(0);
  return !IsPinnedHost(first.src) && !IsPinnedHost(first.dst);
}

}  // namespace

std::optional<Converter::StagedJob> Converter::StagedShape(const TransferPlan& plan) const {
  if (plan.empty() || plan.num_pairs() == 0) return std::nullopt;
  const ChunkAddress first = plan.ChunkAt(0);
  const bool src_host = IsPinnedHost(first.src);
  const bool dst_host = IsPinnedHost(first.dst);
  if (src_host == dst_host) return std::nullopt;
  const TransferSpec& r = plan.spec();
  const LayoutDesc& host = dst_host ? r.dst : r.src;
  if (IsStack(host.kind) || r.heads.count != host.shape.nh || r.layers.count != host.shape.nl ||
      r.token_count != host.shape.nt) {
    return std::nullopt;  // the host side is not written/read as whole contiguous blocks
  }
  const uint64_t block_bytes =
      static_cast<uint64_t>(BytesPerAddress(host.kind, host.shape, DTypeSize(host.dtype)));
  if (block_bytes > kMaxStagingPieceBytes) return std::nullopt;
  return StagedJob{dst_host, block_bytes, std::max(Experiment().min_piece_bytes, block_bytes)};
}

Backend Converter::Choose(const TransferPlan& plan, Backend requested) const {
  return ChooseKeepingRuns(plan, requested, nullptr);
}

Backend Converter::ChooseKeepingRuns(const TransferPlan& plan, Backend requested,
                                     std::vector<CopyRun>* async_runs) const {
  switch (requested) {
    case Backend::kAuto:
      if (!LargeDeviceToDevice(plan) && FewLargeRuns(plan, async_runs)) return Backend::kAsync;
      if (plan.bytes() >= (int64_t{8} << 20) && StagedShape(plan)) return Backend::kStaged;
      return Backend::kKernel;
    case Backend::kStaged:
      return StagedShape(plan) ? Backend::kStaged : Backend::kKernel;
    default:
      return requested;
  }
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
  if (copy_stream_ != nullptr) {
    cudaStreamSynchronize(copy_stream_);
    for (int i = 0; i < kMaxStagingPieces; ++i) {
      cudaEventSynchronize(piece_free_[i]);
      cudaEventSynchronize(slot_free_[i]);
      cudaEventDestroy(piece_free_[i]);
      cudaEventDestroy(piece_ready_[i]);
      cudaEventDestroy(slot_free_[i]);
    }
    cudaEventDestroy(copies_done_);
    cudaStreamDestroy(copy_stream_);
  }
}

absl::Status Converter::EnsureSlot(Slot& slot, size_t bytes) {
  if (slot.host.size() >= bytes) return absl::OkStatus();
  const size_t capacity = std::max<size_t>(bytes, size_t{64} << 10);
  ASSIGN_OR_RETURN(slot.host, PinnedBuffer::Create(capacity));
  slot.device = DeviceBuffer();
  ASSIGN_OR_RETURN(slot.device, DeviceBuffer::Create(device_, capacity));
  return absl::OkStatus();
}

absl::Status Converter::StageTable(absl::Span<const ChunkAddress> chunks, Slot*& slot) {
  slot = &slots_[next_slot_];
  next_slot_ = (next_slot_ + 1) % kSlots;
  // The slot's previous kernel must be done reading before its tables are overwritten.
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot->free));
  const size_t table_bytes = chunks.size() * sizeof(ChunkAddress);
  RETURN_IF_ERROR(EnsureSlot(*slot, table_bytes));
  std::memcpy(slot->host.data(), chunks.data(), table_bytes);
  return absl::OkStatus();
}

absl::Status Converter::EnqueueKernel(const TransferPlan& plan, const LaunchOptions& options,
                                      cudaStream_t stream) {
  const bool capped = options.max_sms > 0 && options.max_sms < sm_count_;
  // Uncapped: one CTA per tile and the hardware scheduler hands out tiles in address order.
  // A one-wave persistent grid striding over the tiles reached 0.94 × memcpy on an H100 where
  // this reached 0.99 (docs/performance.md, the launch sweep). Narrow vectors (rows not a
  // multiple of 16 bytes) do better with smaller CTAs.
  const int threads = capped ? kCappedThreads : (plan.alignment() == 16 ? kThreads : 128);
  const int grid_limit = capped ? options.max_sms : std::numeric_limits<int>::max();
  if (plan.num_chunks() <= kInlineChunks) {
    return LaunchChunkCopyInline(plan, grid_limit, threads, stream);
  }
  Slot* slot = nullptr;
  const bool explicit_table = plan.steps().size() == 1 && plan.steps()[0].src == 0 &&
                              plan.steps()[0].dst == 0;  // outer() is the chunk table
  const FactoredMode mode = Experiment().factored;
  if (!explicit_table && plan.steps().size() <= static_cast<size_t>(kInlineSteps) &&
      mode != FactoredMode::kOff) {
    // Strided: one table entry per pair, copied to device memory ahead of the kernel (reads
    // from L2, not one PCIe round trip per CTA), or read from the pinned slot (experiment).
    RETURN_IF_ERROR(StageTable(plan.outer(), slot));
    const size_t bytes = plan.outer().size() * sizeof(ChunkAddress);
    const ChunkAddress* outer = static_cast<const ChunkAddress*>(slot->host.data());
    if (mode == FactoredMode::kDevice) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(slot->device.data(), slot->host.data(), bytes,
                                           cudaMemcpyHostToDevice, stream));
      outer = static_cast<const ChunkAddress*>(slot->device.data());
    }
    RETURN_IF_ERROR(LaunchChunkCopyFactored(plan, outer, grid_limit, threads, stream));
  } else {  // explicit tables, and strided plans of more steps than the parameters hold
    RETURN_IF_ERROR(explicit_table ? StageTable(plan.outer(), slot)
                                   : StageTable(plan.Chunks(), slot));
    RETURN_IF_ERROR(LaunchChunkCopy(plan, static_cast<const ChunkAddress*>(slot->host.data()),
                                    grid_limit, threads, stream));
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(slot->free, stream));
  return absl::OkStatus();
}

absl::Status Converter::EnqueueStaged(const TransferPlan& plan, const StagedJob& job,
                                      const LaunchOptions& options, cudaStream_t stream) {
  const int pieces = Experiment().pieces;
  if (copy_stream_ == nullptr) {
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    for (int i = 0; i < kMaxStagingPieces; ++i) {
      CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&piece_free_[i], cudaEventDisableTiming));
      CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&piece_ready_[i], cudaEventDisableTiming));
      CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&slot_free_[i], cudaEventDisableTiming));
    }
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&copies_done_, cudaEventDisableTiming));
  }
  const uint64_t piece_bytes = job.piece_bytes;
  if (staging_.size() < pieces * piece_bytes) {
    // Grow the ring once every earlier staged job is done with it.
    for (int i = 0; i < kMaxStagingPieces; ++i) {
      CUDA_RETURN_IF_ERROR(cudaEventSynchronize(piece_free_[i]));
      CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot_free_[i]));
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy_stream_));
    staging_ = DeviceBuffer();
    ASSIGN_OR_RETURN(staging_, DeviceBuffer::Create(device_, pieces * piece_bytes));
  }
  // Pairs go through the pieces in windows of `per_window` whole host blocks. The host side of
  // each chunk is relocated into its block's slot of the window's piece.
  const std::vector<ChunkAddress> chunks = plan.Chunks();
  const uint64_t pairs = static_cast<uint64_t>(plan.num_pairs());
  const uint64_t per_pair = chunks.size() / pairs;
  const uint64_t per_window = std::max<uint64_t>(1, piece_bytes / job.block_bytes);
  const uint64_t windows = (pairs + per_window - 1) / per_window;
  std::vector<ChunkAddress> relocated = chunks;
  std::vector<uint64_t> host_blocks(pairs);
  uint64_t align_bits = job.block_bytes | piece_bytes;
  for (uint64_t p = 0; p < pairs; ++p) {
    const uint64_t piece = (p / per_window) % pieces;
    const uint64_t slot_base =
        staging_.address() + piece * piece_bytes + (p % per_window) * job.block_bytes;
    // Full ranges on the host side: the pair's first chunk starts its host block.
    host_blocks[p] = job.host_is_dst ? chunks[p * per_pair].dst : chunks[p * per_pair].src;
    for (uint64_t c = p * per_pair; c < (p + 1) * per_pair; ++c) {
      uint64_t& host = job.host_is_dst ? relocated[c].dst : relocated[c].src;
      host = slot_base + (host - host_blocks[p]);
      align_bits |= host;
    }
  }
  int alignment = plan.alignment();
  while (alignment > 1 && (align_bits & (alignment - 1)) != 0) alignment /= 2;

  Slot* slot = nullptr;
  RETURN_IF_ERROR(StageTable(relocated, slot));
  const ChunkAddress* table = static_cast<const ChunkAddress*>(slot->host.data());
  const int sms = options.max_sms > 0 ? std::min(options.max_sms, sm_count_)
                                      : std::min(Experiment().sms, sm_count_);
  // The copy stream starts after everything already queued on the caller's stream.
  CUDA_RETURN_IF_ERROR(cudaEventRecord(copies_done_, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_stream_, copies_done_));
  const cudaMemcpyKind to_host = cudaMemcpyDeviceToHost, to_device = cudaMemcpyHostToDevice;
  // Host → device: the copy stream waits for a slot of `group` pieces once per group.
  const uint64_t group = job.host_is_dst ? 1 : static_cast<uint64_t>(Experiment().group);
  const uint64_t slots = static_cast<uint64_t>(pieces) / group;
  for (uint64_t w = 0; w < windows; ++w) {
    const int piece = static_cast<int>(w % pieces);
    const int slot = static_cast<int>((w / group) % slots);
    const uint64_t first = w * per_window, last = std::min(pairs, first + per_window);
    const uint64_t piece_base = staging_.address() + piece * piece_bytes;
    auto launch = [&] {
      if (Experiment().no_kernel) return absl::OkStatus();
      return LaunchChunkCopy(plan.geometry(), alignment, table + first * per_pair,
                             (last - first) * per_pair, sms, kCappedThreads, stream);
    };
    if (job.host_is_dst) {  // kernel → piece, then copy engine → host blocks
      CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, piece_free_[piece]));
      RETURN_IF_ERROR(launch());
      CUDA_RETURN_IF_ERROR(cudaEventRecord(piece_ready_[piece], stream));
      CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_stream_, piece_ready_[piece]));
      for (uint64_t p = first; p < last; ++p) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
            reinterpret_cast<void*>(host_blocks[p]),
            reinterpret_cast<const void*>(piece_base + (p - first) * job.block_bytes),
            job.block_bytes, to_host, copy_stream_));
      }
      CUDA_RETURN_IF_ERROR(cudaEventRecord(piece_free_[piece], copy_stream_));
    } else {  // copy engine: host blocks → piece, then kernel → device
      if (w % group == 0) CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_stream_, slot_free_[slot]));
      for (uint64_t p = first; p < last; ++p) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
            reinterpret_cast<void*>(piece_base + (p - first) * job.block_bytes),
            reinterpret_cast<const void*>(host_blocks[p]), job.block_bytes, to_device,
            copy_stream_));
      }
      CUDA_RETURN_IF_ERROR(cudaEventRecord(piece_ready_[piece], copy_stream_));
      CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, piece_ready_[piece]));
      RETURN_IF_ERROR(launch());
      if (w % group == group - 1 || w + 1 == windows) {
        CUDA_RETURN_IF_ERROR(cudaEventRecord(slot_free_[slot], stream));
      }
    }
  }
  // The job is complete on the caller's stream only when the last copies are.
  CUDA_RETURN_IF_ERROR(cudaEventRecord(copies_done_, copy_stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, copies_done_));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(slot->free, stream));
  return absl::OkStatus();
}

absl::StatusOr<Backend> Converter::Enqueue(const TransferPlan& plan, const LaunchOptions& options,
                                           cudaStream_t stream) {
  if (options.max_sms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sms: ", options.max_sms, " is negative; use 0 for no cap"));
  }
  if (plan.empty()) return options.backend == Backend::kAuto ? Backend::kKernel : options.backend;
  std::vector<CopyRun> auto_runs;  // auto → async: the runs its decision already listed
  const Backend backend = ChooseKeepingRuns(plan, options.backend, &auto_runs);
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
      if (!auto_runs.empty()) {
        RETURN_IF_ERROR(EnqueueAsync(auto_runs, stream));
        break;
      }
      ASSIGN_OR_RETURN(const std::vector<CopyRun> runs, RunsFor(plan, backend));
      RETURN_IF_ERROR(EnqueueAsync(runs, stream));
      break;
    }
    case Backend::kStaged: {
      const std::optional<StagedJob> job = StagedShape(plan);
      if (!job) return absl::InternalError("staged backend chosen for a job that does not qualify");
      RETURN_IF_ERROR(EnqueueStaged(plan, *job, options, stream));
      break;
    }
    case Backend::kAuto:
      return absl::InternalError("Choose returned auto");
  }
  return backend;
}

}  // namespace kvshuttle
