// Resolution of a spec and block pairs into chunk pointer tables, contiguous runs, and the
// host (memcpy) executor.
#include "core/plan.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace kvshuttle {
namespace {

struct Dim {
  int64_t count;
  int64_t src_stride;
  int64_t dst_stride;
};

// Bytes one table entry of `desc` spans.
uint64_t EntryExtent(const LayoutDesc& desc) {
  return static_cast<uint64_t>(BytesPerAddress(desc.kind, desc.shape, DTypeSize(desc.dtype)));
}

// The error for table entry `i` when it is null or its extent wraps around 2^64, else OK.
absl::Status CheckEntry(absl::string_view side, size_t i, uint64_t address, uint64_t extent) {
  if (address == 0) {
    return absl::InvalidArgumentError(absl::StrCat(side, "_addresses[", i, "]: null address"));
  }
  if (address > std::numeric_limits<uint64_t>::max() - extent) {
    return absl::InvalidArgumentError(absl::StrCat(side, "_addresses[", i, "]: ", address, " + ",
                                                   extent, " bytes overflows 64 bits"));
  }
  return absl::OkStatus();
}

// True when `address` is null or its extent wraps around 2^64 (one compare: address - 1 wraps
// for 0).
inline bool BadEntry(uint64_t address, uint64_t extent) {
  return address - 1 >= std::numeric_limits<uint64_t>::max() - extent;
}

// Checks a block address table: size a multiple of the per-block count, and with kAll no null
// entry and no entry whose extent wraps around 2^64. Returns the number of blocks.
absl::StatusOr<int64_t> CheckTable(absl::string_view side, const LayoutDesc& desc,
                                   absl::Span<const uint64_t> addresses, TableCheck check) {
  const int64_t per_block = AddressesPerBlock(desc.kind, desc.shape);
  if (addresses.size() % per_block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(side, "_addresses: size ", addresses.size(), " is not a multiple of ",
                     per_block, " addresses per block (", LayoutKindName(desc.kind), ")"));
  }
  if (check == TableCheck::kAll) {
    const uint64_t extent = EntryExtent(desc);
    for (size_t i = 0; i < addresses.size(); ++i) {
      if (BadEntry(addresses[i], extent)) [[unlikely]] {
        return CheckEntry(side, i, addresses[i], extent);
      }
    }
  }
  return static_cast<int64_t>(addresses.size()) / per_block;
}

// Table entry holding chunk (layer, outer) of block `block`.
int64_t ChunkEntry(const LayoutDesc& desc, int64_t block, int64_t layer, int64_t outer) {
  const BlockShape& s = desc.shape;
  return IsStack(desc.kind) ? block * s.nl * s.no + layer * s.no + outer : block;
}

// Byte offset of chunk (layer, outer) from its table entry (ChunkEntry), before head and
// token offsets: 0 for stacks (one entry per chunk), its place in the block for buffers.
uint64_t ChunkOffset(const LayoutDesc& desc, const RowStrides& strides, int64_t layer,
                     int64_t outer) {
  if (IsStack(desc.kind)) return 0;
  return static_cast<uint64_t>(layer * strides.layer_stride + outer * strides.outer_stride);
}

absl::Status CheckSegments(absl::string_view side, absl::Span<const uint32_t> segments,
                           absl::Span<const uint64_t> addresses) {
  if (segments.empty() || segments.size() == addresses.size()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(side, "_segments: ", segments.size(),
                                                 " entries for ", addresses.size(),
                                                 " addresses (give one per address or none)"));
}

int LowestAlignment(uint64_t bits) {
  int alignment = 1;
  while (alignment < 16 && (bits & alignment) == 0) alignment *= 2;
  return alignment;
}

// The bits every chunk address must share with the geometry for a vector width: the row size
// and the strides of dimensions that have more than one row.
uint64_t GeometryAlignBits(const ChunkGeometry& g) {
  uint64_t bits = static_cast<uint64_t>(g.row_bytes);
  if (g.inner_count > 1) bits |= g.src_inner_stride | g.dst_inner_stride;
  if (g.outer_count > 1) bits |= g.src_outer_stride | g.dst_outer_stride;
  return bits;
}

// Runs() may continue the previous chunk's run only inside one allocation per side. A side
// stays in one allocation when both chunks come from the same table entry `a` == `b` (one
// piece) or from entries of the same segment.
bool SameSegment(absl::Span<const uint32_t> seg, int64_t a, int64_t b) {
  return a == b ||
         (!seg.empty() && seg[static_cast<size_t>(a)] == seg[static_cast<size_t>(b)]);
}

absl::Status CheckChunkCount(const TransferSpec& r, int64_t num_pairs) {
  const int64_t no = r.src.shape.no;
  int64_t num_chunks = 0;
  if (__builtin_mul_overflow(num_pairs, r.layers.count * no, &num_chunks) ||
      num_chunks > kMaxPlanChunks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pairs: ", num_pairs, " pairs x ", r.layers.count, " layers x ", no,
        " outer chunks exceeds ", kMaxPlanChunks, " chunk copies per plan"));
  }
  return absl::OkStatus();
}

// Per (layer, outer) of a plan: the table entry within a block (stacks: one per chunk;
// buffers: the block's one entry) and the byte offset from it (buffers: the chunk's place in
// the block), computed once; the per-pair loops are then a few adds per chunk.
struct Step {
  int64_t src_entry = 0, dst_entry = 0;
  uint64_t src_offset = 0, dst_offset = 0;
};

std::vector<Step> MakeSteps(const TransferSpec& r, const RowStrides& ss, const RowStrides& ds) {
  const int64_t no = r.src.shape.no;
  std::vector<Step> steps(static_cast<size_t>(r.layers.count * no));
  for (int64_t l = 0; l < r.layers.count; ++l) {
    for (int64_t o = 0; o < no; ++o) {
      Step& st = steps[static_cast<size_t>(l * no + o)];
      st.src_entry = ChunkEntry(r.src, 0, r.layers.src_offset + l, o);
      st.dst_entry = ChunkEntry(r.dst, 0, r.layers.dst_offset + l, o);
      st.src_offset = ChunkOffset(r.src, ss, r.layers.src_offset + l, o);
      st.dst_offset = ChunkOffset(r.dst, ds, r.layers.dst_offset + l, o);
    }
  }
  return steps;
}

// Checks one strided side: block 0's table of AddressesPerBlock entries, segments for each or
// none, and (when it has blocks) no null base and no base whose last block's extent wraps
// around 2^64.
absl::Status CheckStridedSide(absl::string_view side, const LayoutDesc& desc,
                              const StridedSide& s) {
  const int64_t per_block = AddressesPerBlock(desc.kind, desc.shape);
  if (static_cast<int64_t>(s.bases.size()) != per_block) {
    return absl::InvalidArgumentError(
        absl::StrCat(side, "_bases: ", s.bases.size(), " entries; ", LayoutKindName(desc.kind),
                     " needs ", per_block, " per block"));
  }
  if (!s.segments.empty() && s.segments.size() != s.bases.size()) {
    return absl::InvalidArgumentError(absl::StrCat(side, "_segments: ", s.segments.size(),
                                                   " entries for ", s.bases.size(),
                                                   " bases (give one per base or none)"));
  }
  if (s.num_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat(side, ": num_blocks ", s.num_blocks, " < 0"));
  }
  if (s.num_blocks == 0) return absl::OkStatus();  // no pair can name a block
  const uint64_t extent = EntryExtent(desc);
  const uint64_t last = static_cast<uint64_t>(s.num_blocks - 1);
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  if (last > 0 && s.block_stride > (kMax - extent) / last) {
    return absl::InvalidArgumentError(absl::StrCat(side, ": block_stride ", s.block_stride,
                                                   " × ", last, " blocks overflows 64 bits"));
  }
  const uint64_t span = last * s.block_stride + extent;
  for (size_t e = 0; e < s.bases.size(); ++e) {
    if (s.bases[e] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(side, "_bases[", e, "]: null address"));
    }
    if (s.bases[e] > kMax - span) {
      return absl::InvalidArgumentError(absl::StrCat(side, "_bases[", e, "]: ", s.bases[e],
                                                     " + ", span, " bytes overflows 64 bits"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int64_t PlanMemoryBytes(const TransferSpec& spec, int64_t num_pairs, bool strided) {
  const int64_t layers = spec.layers.count > 0 ? spec.layers.count : spec.src.shape.nl;
  const int64_t per_pair = std::max<int64_t>(layers, 1) * std::max<int64_t>(spec.src.shape.no, 1);
  // A table entry (16 bytes) and its join byte per outer entry and per step, plus the pairs:
  // explicit plans have an outer entry per chunk copy and one step, strided plans one outer
  // entry per pair and a step per (layer, outer chunk).
  const int64_t entry = static_cast<int64_t>(sizeof(ChunkAddress)) + 1;
  const int64_t pairs_bytes = num_pairs * static_cast<int64_t>(sizeof(BlockPair));
  if (strided) return (num_pairs + per_pair) * entry + pairs_bytes;
  const int64_t chunks = std::min<int64_t>(num_pairs * per_pair, kMaxPlanChunks + 1);
  return (chunks + 1) * entry + pairs_bytes;
}

ChunkGeometry MakeChunkGeometry(const TransferSpec& resolved) {
  const int64_t es = DTypeSize(resolved.src.dtype);
  const RowStrides ss = StridesOf(resolved.src.kind, resolved.src.shape, es);
  const RowStrides ds = StridesOf(resolved.dst.kind, resolved.dst.shape, es);
  std::vector<Dim> dims;
  for (const Dim& d : {Dim{resolved.heads.count, ss.head_stride, ds.head_stride},
                       Dim{resolved.token_count, ss.token_stride, ds.token_stride}}) {
    if (d.count > 1) dims.push_back(d);
  }
  // Innermost first: the dimension that is densest on the destination (coalesced writes).
  std::sort(dims.begin(), dims.end(), [](const Dim& a, const Dim& b) {
    return a.dst_stride != b.dst_stride ? a.dst_stride < b.dst_stride
                                        : a.src_stride < b.src_stride;
  });
  ChunkGeometry g;
  g.row_bytes = ss.row_bytes;
  // Fold dimensions that continue the row on both sides into the row.
  while (!dims.empty() && dims.front().src_stride == g.row_bytes &&
         dims.front().dst_stride == g.row_bytes) {
    g.row_bytes *= dims.front().count;
    dims.erase(dims.begin());
  }
  if (!dims.empty()) {
    g.inner_count = dims[0].count;
    g.src_inner_stride = dims[0].src_stride;
    g.dst_inner_stride = dims[0].dst_stride;
  }
  if (dims.size() > 1) {
    g.outer_count = dims[1].count;
    g.src_outer_stride = dims[1].src_stride;
    g.dst_outer_stride = dims[1].dst_stride;
  }
  return g;
}

absl::StatusOr<TransferPlan> TransferPlan::Build(const TransferSpec& spec,
                                                 absl::Span<const uint64_t> src_addresses,
                                                 absl::Span<const uint64_t> dst_addresses,
                                                 absl::Span<const BlockPair> pairs,
                                                 const AddressSegments& segments,
                                                 TableCheck check) {
  TransferPlan plan;
  ASSIGN_OR_RETURN(plan.spec_, ResolveSpec(spec));
  const TransferSpec& r = plan.spec_;
  ASSIGN_OR_RETURN(const int64_t src_blocks, CheckTable("src", r.src, src_addresses, check));
  ASSIGN_OR_RETURN(const int64_t dst_blocks, CheckTable("dst", r.dst, dst_addresses, check));
  RETURN_IF_ERROR(CheckSegments("src", segments.src, src_addresses));
  RETURN_IF_ERROR(CheckSegments("dst", segments.dst, dst_addresses));
  for (size_t i = 0; i < pairs.size(); ++i) {
    RETURN_IF_ERROR(ValidatePair(r, pairs[i], static_cast<int64_t>(i), src_blocks, dst_blocks));
  }
  plan.num_pairs_ = static_cast<int64_t>(pairs.size());
  plan.geometry_ = MakeChunkGeometry(r);

  const int64_t es = DTypeSize(r.src.dtype);
  const RowStrides ss = StridesOf(r.src.kind, r.src.shape, es);
  const RowStrides ds = StridesOf(r.dst.kind, r.dst.shape, es);
  RETURN_IF_ERROR(CheckChunkCount(r, static_cast<int64_t>(pairs.size())));
  const int64_t num_chunks = static_cast<int64_t>(pairs.size()) * r.layers.count * r.src.shape.no;
  const std::vector<Step> steps = MakeSteps(r, ss, ds);
  const int64_t src_per_block = AddressesPerBlock(r.src.kind, r.src.shape);
  const int64_t dst_per_block = AddressesPerBlock(r.dst.kind, r.dst.shape);
  const uint64_t src_extent = EntryExtent(r.src);
  const uint64_t dst_extent = EntryExtent(r.dst);
  plan.outer_.reserve(static_cast<size_t>(num_chunks));
  plan.outer_joins_.reserve(static_cast<size_t>(num_chunks));
  int64_t prev_src_entry = 0, prev_dst_entry = 0;
  uint64_t align_bits = GeometryAlignBits(plan.geometry_);
  size_t k = 0;
  for (const BlockPair& p : pairs) {
    const uint64_t src_shift = static_cast<uint64_t>(r.heads.src_offset * ss.head_stride +
                                                     p.src_token_offset * ss.token_stride);
    const uint64_t dst_shift = static_cast<uint64_t>(r.heads.dst_offset * ds.head_stride +
                                                     p.dst_token_offset * ds.token_stride);
    const int64_t src_first = p.src_block * src_per_block;
    const int64_t dst_first = p.dst_block * dst_per_block;
    for (const Step& st : steps) {
      const int64_t se = src_first + st.src_entry;
      const int64_t de = dst_first + st.dst_entry;
      const uint64_t src_base = src_addresses[static_cast<size_t>(se)];
      const uint64_t dst_base = dst_addresses[static_cast<size_t>(de)];
      if (BadEntry(src_base, src_extent)) [[unlikely]] {
        return CheckEntry("src", static_cast<size_t>(se), src_base, src_extent);
      }
      if (BadEntry(dst_base, dst_extent)) [[unlikely]] {
        return CheckEntry("dst", static_cast<size_t>(de), dst_base, dst_extent);
      }
      const ChunkAddress c{src_base + st.src_offset + src_shift,
                           dst_base + st.dst_offset + dst_shift};
      align_bits |= c.src | c.dst;
      plan.outer_.push_back(c);
      plan.outer_joins_.push_back(k > 0 && SameSegment(segments.src, se, prev_src_entry) &&
                                  SameSegment(segments.dst, de, prev_dst_entry));
      prev_src_entry = se;
      prev_dst_entry = de;
      ++k;
    }
  }
  plan.alignment_ = LowestAlignment(align_bits);
  return plan;
}

absl::StatusOr<TransferPlan> TransferPlan::BuildStrided(const TransferSpec& spec,
                                                        const StridedSide& src,
                                                        const StridedSide& dst,
                                                        absl::Span<const BlockPair> pairs) {
  TransferPlan plan;
  ASSIGN_OR_RETURN(plan.spec_, ResolveSpec(spec));
  const TransferSpec& r = plan.spec_;
  RETURN_IF_ERROR(CheckStridedSide("src", r.src, src));
  RETURN_IF_ERROR(CheckStridedSide("dst", r.dst, dst));
  for (size_t i = 0; i < pairs.size(); ++i) {
    RETURN_IF_ERROR(ValidatePair(r, pairs[i], static_cast<int64_t>(i), src.num_blocks,
                                 dst.num_blocks));
  }
  RETURN_IF_ERROR(CheckChunkCount(r, static_cast<int64_t>(pairs.size())));
  plan.num_pairs_ = static_cast<int64_t>(pairs.size());
  plan.geometry_ = MakeChunkGeometry(r);
  const int64_t es = DTypeSize(r.src.dtype);
  const RowStrides ss = StridesOf(r.src.kind, r.src.shape, es);
  const RowStrides ds = StridesOf(r.dst.kind, r.dst.shape, es);
  uint64_t align_bits = GeometryAlignBits(plan.geometry_);
  // Steps: block 0's chunk addresses with the head offset; the same for every pair.
  const std::vector<Step> steps = MakeSteps(r, ss, ds);
  const uint64_t src_heads = static_cast<uint64_t>(r.heads.src_offset * ss.head_stride);
  const uint64_t dst_heads = static_cast<uint64_t>(r.heads.dst_offset * ds.head_stride);
  plan.steps_.clear();
  plan.step_joins_.clear();
  plan.steps_.reserve(steps.size());
  plan.step_joins_.reserve(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = steps[i];
    const ChunkAddress c{src.bases[static_cast<size_t>(st.src_entry)] + st.src_offset + src_heads,
                         dst.bases[static_cast<size_t>(st.dst_entry)] + st.dst_offset + dst_heads};
    align_bits |= c.src | c.dst;
    plan.steps_.push_back(c);
    // Within one pair both sides stay in one block: entries join as Build's do.
    plan.step_joins_.push_back(
        i > 0 && SameSegment(src.segments, st.src_entry, steps[i - 1].src_entry) &&
        SameSegment(dst.segments, st.dst_entry, steps[i - 1].dst_entry));
  }
  // Outer entries: per pair, its block and token offsets. Its first chunk continues the previous
  // pair's last one on a side when both are one table entry (same block and entry) or the
  // entries share a segment (segments are the same for every block).
  const Step first = steps.empty() ? Step{} : steps.front();
  const Step last = steps.empty() ? Step{} : steps.back();
  auto joins = [](const StridedSide& side, int64_t block, int64_t prev_block, int64_t entry,
                  int64_t prev_entry) {
    return (block == prev_block && entry == prev_entry) ||
           (!side.segments.empty() && side.segments[static_cast<size_t>(entry)] ==
                                          side.segments[static_cast<size_t>(prev_entry)]);
  };
  plan.outer_.reserve(pairs.size());
  plan.outer_joins_.reserve(pairs.size());
  for (size_t p = 0; p < pairs.size(); ++p) {
    const BlockPair& bp = pairs[p];
    const ChunkAddress o{
        static_cast<uint64_t>(bp.src_block) * src.block_stride +
            static_cast<uint64_t>(bp.src_token_offset * ss.token_stride),
        static_cast<uint64_t>(bp.dst_block) * dst.block_stride +
            static_cast<uint64_t>(bp.dst_token_offset * ds.token_stride)};
    align_bits |= o.src | o.dst;
    plan.outer_.push_back(o);
    plan.outer_joins_.push_back(
        p > 0 &&
        joins(src, bp.src_block, pairs[p - 1].src_block, first.src_entry, last.src_entry) &&
        joins(dst, bp.dst_block, pairs[p - 1].dst_block, first.dst_entry, last.dst_entry));
  }
  plan.alignment_ = LowestAlignment(align_bits);
  return plan;
}

template <typename Visit>
bool TransferPlan::ForEachChunk(Visit&& visit) const {
  for (size_t o = 0; o < outer_.size(); ++o) {
    const ChunkAddress base = outer_[o];
    for (size_t s = 0; s < steps_.size(); ++s) {
      const ChunkAddress c{base.src + steps_[s].src, base.dst + steps_[s].dst};
      if (!visit(c, Joins(o, s))) return false;
    }
  }
  return true;
}

std::vector<ChunkAddress> TransferPlan::Chunks() const {
  std::vector<ChunkAddress> chunks;
  chunks.reserve(static_cast<size_t>(num_chunks()));
  ForEachChunk([&chunks](const ChunkAddress& c, bool) {
    chunks.push_back(c);
    return true;
  });
  return chunks;
}

TransferPlan TransferPlan::PairSlice(int64_t begin, int64_t end) const {
  const size_t per_pair = num_pairs_ > 0 ? outer_.size() / static_cast<size_t>(num_pairs_) : 0;
  TransferPlan slice;
  slice.spec_ = spec_;
  slice.geometry_ = geometry_;
  slice.alignment_ = alignment_;  // a subset's alignment is at least the whole plan's
  slice.num_pairs_ = end - begin;
  slice.steps_ = steps_;
  slice.step_joins_ = step_joins_;
  const size_t first = static_cast<size_t>(begin) * per_pair;
  const size_t last = static_cast<size_t>(end) * per_pair;
  slice.outer_.assign(outer_.begin() + first, outer_.begin() + last);
  slice.outer_joins_.assign(outer_joins_.begin() + first, outer_joins_.begin() + last);
  if (!slice.outer_joins_.empty()) slice.outer_joins_[0] = 0;
  return slice;
}

bool TransferPlan::VisitRuns(const std::function<bool(const CopyRun&)>& visit) const {
  const ChunkGeometry& g = geometry_;
  const uint64_t row = static_cast<uint64_t>(g.row_bytes);
  CopyRun run{};
  bool open = false;  // `run` holds rows not yet visited
  const bool all = ForEachChunk([&](const ChunkAddress& c, bool joins) {
    bool first_row = true;
    for (int64_t o = 0; o < g.outer_count; ++o) {
      for (int64_t i = 0; i < g.inner_count; ++i) {
        const uint64_t src = c.src + o * g.src_outer_stride + i * g.src_inner_stride;
        const uint64_t dst = c.dst + o * g.dst_outer_stride + i * g.dst_inner_stride;
        // Rows of one chunk may always merge; a chunk's first row only where it joins.
        const bool may_join = !first_row || joins;
        first_row = false;
        if (open && may_join && run.src + run.bytes == src && run.dst + run.bytes == dst) {
          run.bytes += row;
          continue;
        }
        if (open && !visit(run)) return false;
        run = CopyRun{src, dst, row};
        open = true;
      }
    }
    return true;
  });
  if (!all) return false;
  return !open || visit(run);
}

std::vector<CopyRun> TransferPlan::Runs() const {
  std::vector<CopyRun> runs;
  VisitRuns([&runs](const CopyRun& r) {
    runs.push_back(r);
    return true;
  });
  return runs;
}

bool TransferPlan::FewLargeRuns(size_t max_runs, uint64_t min_run_bytes,
                                std::vector<CopyRun>* runs) const {
  if (empty()) return false;
  size_t count = 0;
  const bool few = VisitRuns([&](const CopyRun& r) {
    if (++count > max_runs || r.bytes < min_run_bytes) return false;
    if (runs != nullptr) runs->push_back(r);
    return true;
  });
  if (!few && runs != nullptr) runs->clear();
  return few;
}

void ExecutePlanOnHost(const TransferPlan& plan, int num_threads) {
  const ChunkGeometry& g = plan.geometry();
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const ChunkAddress c = plan.ChunkAt(k);
      for (int64_t o = 0; o < g.outer_count; ++o) {
        for (int64_t i = 0; i < g.inner_count; ++i) {
          const uint64_t src = c.src + o * g.src_outer_stride + i * g.src_inner_stride;
          const uint64_t dst = c.dst + o * g.dst_outer_stride + i * g.dst_inner_stride;
          std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                      static_cast<size_t>(g.row_bytes));
        }
      }
    }
  };
  const int64_t n = plan.num_chunks();
  const int64_t threads =
      num_threads <= 1 ? 1 : std::min<int64_t>(num_threads, std::max<int64_t>(n, 1));
  if (threads <= 1) {
    work(0, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int64_t t = 0; t < threads; ++t) {
    pool.emplace_back(work, n * t / threads, n * (t + 1) / threads);
  }
  for (std::thread& th : pool) th.join();
}

bool ExecutePlanSliceOnHost(const TransferPlan& plan, PlanCursor& cursor, int64_t max_bytes) {
  const ChunkGeometry& g = plan.geometry();
  const uint64_t num_chunks = static_cast<uint64_t>(plan.num_chunks());
  const int64_t rows = g.inner_count * g.outer_count;
  int64_t budget = std::max<int64_t>(max_bytes, 1);
  while (cursor.chunk < num_chunks && budget > 0) {
    const ChunkAddress c = plan.ChunkAt(static_cast<int64_t>(cursor.chunk));
    const int64_t o = cursor.row / g.inner_count;
    const int64_t i = cursor.row - o * g.inner_count;
    const uint64_t src = c.src + o * g.src_outer_stride + i * g.src_inner_stride + cursor.offset;
    const uint64_t dst = c.dst + o * g.dst_outer_stride + i * g.dst_inner_stride + cursor.offset;
    const int64_t n = std::min(budget, g.row_bytes - cursor.offset);
    std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                static_cast<size_t>(n));
    budget -= n;
    cursor.bytes_done += n;
    cursor.offset += n;
    if (cursor.offset == g.row_bytes) {
      cursor.offset = 0;
      if (++cursor.row == rows) {
        cursor.row = 0;
        ++cursor.chunk;
      }
    }
  }
  return cursor.chunk >= num_chunks;
}

}  // namespace kvshuttle
