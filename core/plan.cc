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

}  // namespace

int64_t PlanMemoryBytes(const TransferSpec& spec, int64_t num_pairs) {
  const int64_t layers = spec.layers.count > 0 ? spec.layers.count : spec.src.shape.nl;
  const int64_t per_pair = std::max<int64_t>(layers, 1) * std::max<int64_t>(spec.src.shape.no, 1);
  // A chunk address (16 bytes) and its join bit per chunk copy, plus the pairs themselves.
  const int64_t chunks = std::min<int64_t>(num_pairs * per_pair, kMaxPlanChunks + 1);
  return chunks * static_cast<int64_t>(sizeof(ChunkAddress)) + chunks / 8 +
         num_pairs * static_cast<int64_t>(sizeof(BlockPair));
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
  const int64_t no = r.src.shape.no;
  int64_t num_chunks = 0;
  if (__builtin_mul_overflow(static_cast<int64_t>(pairs.size()), r.layers.count * no,
                             &num_chunks) ||
      num_chunks > kMaxPlanChunks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pairs: ", pairs.size(), " pairs x ", r.layers.count, " layers x ", no,
        " outer chunks exceeds ", kMaxPlanChunks, " chunk copies per plan"));
  }
  // Per (layer, outer) of the plan: the table entry within a block (stacks: one per chunk;
  // buffers: the block's one entry) and the byte offset from it (buffers: the chunk's place
  // in the block), computed once; the loop below is then a few adds per chunk.
  const int64_t per_pair = r.layers.count * no;
  struct Step {
    int64_t src_entry = 0, dst_entry = 0;
    uint64_t src_offset = 0, dst_offset = 0;
  };
  std::vector<Step> steps(static_cast<size_t>(per_pair));
  for (int64_t l = 0; l < r.layers.count; ++l) {
    for (int64_t o = 0; o < no; ++o) {
      Step& st = steps[static_cast<size_t>(l * no + o)];
      st.src_entry = ChunkEntry(r.src, 0, r.layers.src_offset + l, o);
      st.dst_entry = ChunkEntry(r.dst, 0, r.layers.dst_offset + l, o);
      st.src_offset = ChunkOffset(r.src, ss, r.layers.src_offset + l, o);
      st.dst_offset = ChunkOffset(r.dst, ds, r.layers.dst_offset + l, o);
    }
  }
  const int64_t src_per_block = AddressesPerBlock(r.src.kind, r.src.shape);
  const int64_t dst_per_block = AddressesPerBlock(r.dst.kind, r.dst.shape);
  const uint64_t src_extent = EntryExtent(r.src);
  const uint64_t dst_extent = EntryExtent(r.dst);
  plan.chunks_.reserve(static_cast<size_t>(num_chunks));
  plan.joins_.reserve(static_cast<size_t>(num_chunks));
  int64_t prev_src_entry = 0, prev_dst_entry = 0;
  uint64_t align_bits = static_cast<uint64_t>(plan.geometry_.row_bytes);
  const ChunkGeometry& g = plan.geometry_;
  if (g.inner_count > 1) align_bits |= g.src_inner_stride | g.dst_inner_stride;
  if (g.outer_count > 1) align_bits |= g.src_outer_stride | g.dst_outer_stride;
  // Runs() may continue the previous chunk's run only inside one allocation per side. A side
  // stays in one allocation when both chunks come from the same table entry (one piece) or
  // from entries of the same segment.
  auto same = [](absl::Span<const uint32_t> seg, int64_t a, int64_t b) {
    return a == b || (!seg.empty() && seg[a] == seg[b]);
  };
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
      plan.chunks_.push_back(c);
      plan.joins_.push_back(k > 0 && same(segments.src, se, prev_src_entry) &&
                            same(segments.dst, de, prev_dst_entry));
      prev_src_entry = se;
      prev_dst_entry = de;
      ++k;
    }
  }
  plan.alignment_ = LowestAlignment(align_bits);
  return plan;
}

TransferPlan TransferPlan::PairSlice(int64_t begin, int64_t end) const {
  const int64_t per_pair = ChunksPerPair();
  TransferPlan slice;
  slice.spec_ = spec_;
  slice.geometry_ = geometry_;
  slice.alignment_ = alignment_;  // a subset's alignment is at least the whole plan's
  slice.num_pairs_ = end - begin;
  const auto first = static_cast<size_t>(begin * per_pair);
  const auto last = static_cast<size_t>(end * per_pair);
  slice.chunks_.assign(chunks_.begin() + first, chunks_.begin() + last);
  slice.joins_.assign(joins_.begin() + first, joins_.begin() + last);
  if (!slice.joins_.empty()) slice.joins_[0] = 0;
  return slice;
}

bool TransferPlan::VisitRuns(const std::function<bool(const CopyRun&)>& visit) const {
  const ChunkGeometry& g = geometry_;
  const uint64_t row = static_cast<uint64_t>(g.row_bytes);
  CopyRun run{};
  bool open = false;  // `run` holds rows not yet visited
  for (size_t k = 0; k < chunks_.size(); ++k) {
    const ChunkAddress& c = chunks_[k];
    bool first_row = true;
    for (int64_t o = 0; o < g.outer_count; ++o) {
      for (int64_t i = 0; i < g.inner_count; ++i) {
        const uint64_t src = c.src + o * g.src_outer_stride + i * g.src_inner_stride;
        const uint64_t dst = c.dst + o * g.dst_outer_stride + i * g.dst_inner_stride;
        // Rows of one chunk may always merge; a chunk's first row only where joins_ allows.
        const bool may_join = !first_row || joins_[k];
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
  }
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
  const std::vector<ChunkAddress>& chunks = plan.chunks();
  auto work = [&](size_t begin, size_t end) {
    for (size_t k = begin; k < end; ++k) {
      for (int64_t o = 0; o < g.outer_count; ++o) {
        for (int64_t i = 0; i < g.inner_count; ++i) {
          const uint64_t src = chunks[k].src + o * g.src_outer_stride + i * g.src_inner_stride;
          const uint64_t dst = chunks[k].dst + o * g.dst_outer_stride + i * g.dst_inner_stride;
          std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                      static_cast<size_t>(g.row_bytes));
        }
      }
    }
  };
  const size_t n = chunks.size();
  const size_t threads =
      num_threads <= 1 ? 1 : std::min<size_t>(num_threads, std::max<size_t>(n, 1));
  if (threads <= 1) {
    work(0, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back(work, n * t / threads, n * (t + 1) / threads);
  }
  for (std::thread& th : pool) th.join();
}

bool ExecutePlanSliceOnHost(const TransferPlan& plan, PlanCursor& cursor, int64_t max_bytes) {
  const ChunkGeometry& g = plan.geometry();
  const std::vector<ChunkAddress>& chunks = plan.chunks();
  const int64_t rows = g.inner_count * g.outer_count;
  int64_t budget = std::max<int64_t>(max_bytes, 1);
  while (cursor.chunk < chunks.size() && budget > 0) {
    const ChunkAddress& c = chunks[cursor.chunk];
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
  return cursor.chunk >= chunks.size();
}

}  // namespace kvshuttle
