// A transfer plan: a validated spec plus block pairs, resolved into the chunk pointer tables
// that the kernels and copy backends consume. Building a plan is pure host work with no CUDA.
//
// Every job is a list of *chunk copies*, one per (pair, layer, outer chunk). A chunk copy moves
// outer_count × inner_count rows of row_bytes each; the row (o, i) starts at
// chunk.src + o * src_outer_stride + i * src_inner_stride on the source, likewise on the
// destination. Dimensions that are contiguous on both sides are folded into the row, so a
// HND → universal chunk is head_count rows of token_count*hd elements (one row when nh = 1).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/transfer.h"

namespace kvshuttle {

// Largest number of chunk copies (pairs × layers × outer chunks) one plan may hold.
inline constexpr int64_t kMaxPlanChunks = int64_t{1} << 24;

// Geometry shared by every chunk copy of one plan, in bytes.
struct ChunkGeometry {
  int64_t row_bytes = 0;
  int64_t inner_count = 1;
  int64_t outer_count = 1;
  int64_t src_inner_stride = 0;
  int64_t src_outer_stride = 0;
  int64_t dst_inner_stride = 0;
  int64_t dst_outer_stride = 0;

  int64_t chunk_bytes() const { return row_bytes * inner_count * outer_count; }
};

// Source and destination address of one chunk copy (the first row of each).
struct ChunkAddress {
  uint64_t src = 0;
  uint64_t dst = 0;
};

// One contiguous copy: `bytes` bytes from `src` to `dst`.
struct CopyRun {
  uint64_t src = 0;
  uint64_t dst = 0;
  uint64_t bytes = 0;
};

// Which allocation each address-table entry lies in (one id per entry, parallel to the
// table). Runs() merges the runs of two chunks only when both sides stay in one allocation:
// one cudaMemcpy may not span two allocations, even when they happen to be adjacent. An
// empty span means "unknown": on that side a run continues into the next chunk only when both
// come from the same table entry (one piece).
struct AddressSegments {
  absl::Span<const uint32_t> src;
  absl::Span<const uint32_t> dst;
};

// Which address-table entries TransferPlan::Build checks for null and 64-bit overflow: all of
// them (a table of unknown origin), or only those the pairs use (the daemon's block sets and
// pools, whose every address was checked against its regions at registration). Either way every
// entry the plan dereferences is checked, with the same errors; kUsed keeps a job's cost
// independent of the size of the tables it names.
enum class TableCheck { kAll, kUsed };

// One side of a strided plan: a block set or pool whose every block is block 0's address
// table shifted by block × block_stride (the daemon's strided block sets and its pools). A job
// between two strided sides is planned in O(pairs + layers × outer chunks), not O(chunks).
struct StridedSide {
  absl::Span<const uint64_t> bases;     // block 0's AddressesPerBlock entries
  uint64_t block_stride = 0;            // bytes from one block to the next, for every entry
  int64_t num_blocks = 0;
  absl::Span<const uint32_t> segments;  // per entry of `bases` (every block alike), or empty
};

// Immutable, validated description of one batch. Addresses are opaque 64-bit numbers: device
// pointers, pinned host pointers or plain host pointers, as the executor requires.
//
// The chunk table is held factored: chunk k is outer()[k / M] + steps()[k % M] (both fields
// added), M = steps().size(). Plans of strided sides have one outer entry per pair (its block
// and token offsets) and one step per (layer, outer chunk), so their size and build cost do not
// grow with the rows of a block; explicit tables have M = 1 and a zero step.
class TransferPlan {
 public:
  // Validates `spec` and every pair, then resolves chunk addresses.
  // `src_addresses` holds AddressesPerBlock(src) entries per block (nl*no chunk addresses in
  // (layer, outer) order for stacks, one base address otherwise); likewise for `dst_addresses`.
  // Errors: RESOURCE_EXHAUSTED over kMaxPlanChunks chunk copies; INVALID_ARGUMENT for a
  // malformed spec, a table whose size is not a multiple of the
  // per-block count, a null address or one whose block extent overflows 64 bits; OUT_OF_RANGE for
  // ranges, block ids or token offsets outside a side; INVALID_ARGUMENT for segment tables of
  // the wrong size.
  static absl::StatusOr<TransferPlan> Build(const TransferSpec& spec,
                                            absl::Span<const uint64_t> src_addresses,
                                            absl::Span<const uint64_t> dst_addresses,
                                            absl::Span<const BlockPair> pairs,
                                            const AddressSegments& segments = {},
                                            TableCheck check = TableCheck::kAll);

  // The same plan (same chunks in the same order, same runs, same errors for the same pairs)
  // between two strided sides, built in O(pairs + steps). Checks every base of both sides for
  // null and for its last block's extent overflowing 64 bits (INVALID_ARGUMENT naming
  // src_bases[e] / dst_bases[e]), `bases` of AddressesPerBlock entries and `segments` of as
  // many or none (INVALID_ARGUMENT), and every pair exactly like Build.
  static absl::StatusOr<TransferPlan> BuildStrided(const TransferSpec& spec,
                                                   const StridedSide& src,
                                                   const StridedSide& dst,
                                                   absl::Span<const BlockPair> pairs);

  const TransferSpec& spec() const { return spec_; }
  const ChunkGeometry& geometry() const { return geometry_; }
  int64_t num_pairs() const { return num_pairs_; }
  // Chunk copies (pairs × layers × outer chunks).
  int64_t num_chunks() const {
    return static_cast<int64_t>(outer_.size() * steps_.size());
  }
  // Chunk k (0 ≤ k < num_chunks()).
  ChunkAddress ChunkAt(int64_t k) const {
    const size_t m = steps_.size();
    const ChunkAddress& o = outer_[static_cast<size_t>(k) / m];
    const ChunkAddress& s = steps_[static_cast<size_t>(k) % m];
    return ChunkAddress{o.src + s.src, o.dst + s.dst};
  }
  // Every chunk, in order (a copy of num_chunks() entries: for tests and the staged backend).
  std::vector<ChunkAddress> Chunks() const;
  // The factored table (see the class comment); steps() is never empty.
  const std::vector<ChunkAddress>& outer() const { return outer_; }
  const std::vector<ChunkAddress>& steps() const { return steps_; }
  // Payload bytes moved (what each side reads or writes).
  int64_t bytes() const { return geometry_.chunk_bytes() * num_chunks(); }
  // Largest power of two ≤ 16 dividing every chunk address, stride and the row size (for
  // strided plans: every outer and step entry, so possibly less than the chunks' own).
  int alignment() const { return alignment_; }
  bool empty() const { return outer_.empty(); }

  // The plan as contiguous runs in chunk order, with runs that continue each other on both
  // sides merged — within a chunk always, across chunks only inside one allocation per side
  // (AddressSegments). Size at most chunks × rows.
  std::vector<CopyRun> Runs() const;
  // The same runs, in order, to `visit` until it returns false (then false). No allocation.
  bool VisitRuns(const std::function<bool(const CopyRun&)>& visit) const;
  // True when the plan is at most `max_runs` runs, each ≥ `min_run_bytes`. Stops at the first
  // run that breaks either bound (row-granular plans: after one run).
  // When true and `runs` is not null, the runs (what Runs() returns) are left in `runs`.
  bool FewLargeRuns(size_t max_runs, uint64_t min_run_bytes,
                    std::vector<CopyRun>* runs = nullptr) const;
  // The plan of pairs [begin, end) of this one (0 ≤ begin < end ≤ num_pairs()): the same spec
  // and geometry, their chunks in order, no run continuing across its start. Running the
  // slices of a plan one after another copies exactly what the plan copies. The GPU workers run
  // long jobs this way, so that others interleave and a running job can be stopped. Costs
  // O(outer entries of the slice + steps).
  TransferPlan PairSlice(int64_t begin, int64_t end) const;
  // Chunk copies per pair (layers × outer chunks).
  int64_t ChunksPerPair() const { return num_pairs_ > 0 ? num_chunks() / num_pairs_ : 0; }
  // Number of runs Runs() would return for the rows of one chunk (a lower bound on its
  // per-chunk cost, used by backend selection).
  int64_t RowsPerChunk() const { return geometry_.inner_count * geometry_.outer_count; }

 private:
  TransferPlan() = default;
  // Whether chunk k's first row may continue chunk k-1's run.
  bool Joins(size_t outer, size_t step) const {
    return step == 0 ? outer_joins_[outer] != 0 : step_joins_[step] != 0;
  }
  // Calls visit(chunk address, joins) for every chunk in order until it returns false.
  template <typename Visit>
  bool ForEachChunk(Visit&& visit) const;

  TransferSpec spec_;
  ChunkGeometry geometry_;
  std::vector<ChunkAddress> outer_;
  std::vector<ChunkAddress> steps_{ChunkAddress{}};
  std::vector<uint8_t> outer_joins_;  // per outer entry: its first chunk may join the previous
  std::vector<uint8_t> step_joins_{0};  // per step s > 0: chunk (o, s) may join chunk (o, s-1)
  int64_t num_pairs_ = 0;
  int alignment_ = 16;
};

// Upper bound of the memory TransferPlan::Build (`strided`: BuildStrided) allocates for
// `num_pairs` pairs of `spec` (the daemon charges it to the caller's budget before building).
// Unresolved specs count every source layer.
int64_t PlanMemoryBytes(const TransferSpec& spec, int64_t num_pairs, bool strided = false);

// Computes the chunk geometry for a resolved spec (exposed for tests).
ChunkGeometry MakeChunkGeometry(const TransferSpec& resolved);

// Executes `plan` with memcpy on host-addressable memory, splitting the chunks over
// `num_threads` threads (≤ 1 runs inline).
void ExecutePlanOnHost(const TransferPlan& plan, int num_threads);

// Where a sliced host execution of a plan stands: the next byte to copy is byte `offset` of row
// `row` (flat over outer × inner) of chunk `chunk`. A default cursor is at the start.
struct PlanCursor {
  uint64_t chunk = 0;
  int64_t row = 0;
  int64_t offset = 0;
  int64_t bytes_done = 0;  // payload bytes copied so far
};

// Copies the next at most `max_bytes` (≥ 1) payload bytes of `plan` from `cursor` on, with
// memcpy, and advances the cursor; rows longer than `max_bytes` are copied in pieces. Returns
// true when the plan is complete. Slicing keeps the result byte-identical to one
// ExecutePlanOnHost call. The daemon's CPU executor runs jobs this way, so that others can
// interleave and a running job can be stopped between slices.
bool ExecutePlanSliceOnHost(const TransferPlan& plan, PlanCursor& cursor, int64_t max_bytes);

}  // namespace kvshuttle
