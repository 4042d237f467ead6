// Strided plans (TransferPlan::BuildStrided, core/plan.h): for every layout pair, range and
// arrangement of the blocks, the O(pairs) plan is the explicit plan — the same chunks in the
// same order, the same runs, the same pair slices — and moves the reference's bytes on the
// host. Its refusals: malformed strided sides, and bad pairs exactly as Build words them.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/plan.h"
#include "core/reference.h"
#include "gtest/gtest.h"

namespace kvshuttle {
namespace {

BlockShape Shape(int64_t nh, int64_t nl, int64_t no, int64_t nt, int64_t hd) {
  return BlockShape{.nl = nl, .no = no, .nt = nt, .nh = nh, .hd = hd};
}

// How one side's blocks lie in its one arena.
enum class Arrangement {
  kBlockMajor,  // block b's entries one after another: stride = entries × extent
  kSlotMajor,   // one array of all blocks per entry (vLLM's per-layer tensors): stride = extent
};

// One side: an arena, its strided description and the equivalent explicit table.
struct Side {
  std::vector<uint8_t> arena;
  std::vector<uint64_t> bases;
  std::vector<uint32_t> segments;  // per entry
  uint64_t stride = 0;
  int64_t num_blocks = 0;
  std::vector<uint64_t> table;           // explicit: num_blocks × entries
  std::vector<uint32_t> table_segments;  // explicit, parallel to `table`

  Side(const LayoutDesc& d, int64_t blocks, Arrangement a, bool segment_per_entry)
      : num_blocks(blocks) {
    const int64_t entries = AddressesPerBlock(d.kind, d.shape);
    const uint64_t extent =
        static_cast<uint64_t>(BytesPerAddress(d.kind, d.shape, DTypeSize(d.dtype)));
    arena.assign(static_cast<size_t>(entries * blocks) * extent + 16, 0);
    // 16-byte aligned start, as a real allocation is.
    const uint64_t base = (reinterpret_cast<uint64_t>(arena.data()) + 15) & ~uint64_t{15};
    stride = a == Arrangement::kBlockMajor ? entries * extent : extent;
    for (int64_t e = 0; e < entries; ++e) {
      bases.push_back(base + static_cast<uint64_t>(e) *
                                 (a == Arrangement::kBlockMajor ? extent : blocks * extent));
      segments.push_back(segment_per_entry ? static_cast<uint32_t>(e) : 0);
    }
    for (int64_t b = 0; b < blocks; ++b) {
      for (int64_t e = 0; e < entries; ++e) {
        table.push_back(bases[e] + static_cast<uint64_t>(b) * stride);
        table_segments.push_back(segments[e]);
      }
    }
  }
  StridedSide strided() const { return StridedSide{bases, stride, num_blocks, segments}; }
};

bool SameChunks(const std::vector<ChunkAddress>& a, const std::vector<ChunkAddress>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](const ChunkAddress& x, const ChunkAddress& y) {
           return x.src == y.src && x.dst == y.dst;
         });
}

bool SameRuns(const std::vector<CopyRun>& a, const std::vector<CopyRun>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](const CopyRun& x, const CopyRun& y) {
           return x.src == y.src && x.dst == y.dst && x.bytes == y.bytes;
         });
}

struct Case {
  std::string name;
  BlockShape src, dst;
  AxisRange heads = {}, layers = {};
  int64_t token_count = 0;
};

std::vector<Case> Cases() {
  const BlockShape seed = Shape(3, 2, 2, 4, 5);
  return {
      {"full", seed, seed},
      {"heads_slice", seed, Shape(2, 2, 2, 4, 5), {.src_offset = 1, .dst_offset = 0, .count = 2}},
      {"layers_slice", Shape(3, 3, 2, 4, 5), seed, {}, {.src_offset = 1, .dst_offset = 0, .count = 2}},
      {"tokens", seed, Shape(3, 2, 2, 8, 5), {}, {}, 2},
      {"mla", Shape(1, 4, 1, 4, 8), Shape(1, 4, 1, 4, 8)},
  };
}

using Param = std::tuple<LayoutKind, LayoutKind, Case, Arrangement, bool>;

class StridedPlanTest : public ::testing::TestWithParam<Param> {};

TEST_P(StridedPlanTest, SameChunksRunsSlicesAndBytesAsTheExplicitPlan) {
  const auto& [src_kind, dst_kind, c, arrangement, segment_per_entry] = GetParam();
  TransferSpec spec;
  spec.src = {src_kind, c.src, DType::kBF16};
  spec.dst = {dst_kind, c.dst, DType::kBF16};
  spec.heads = c.heads;
  spec.layers = c.layers;
  spec.token_count = c.token_count;
  const absl::StatusOr<TransferSpec> resolved = ResolveSpec(spec);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  Side src(spec.src, 6, arrangement, segment_per_entry);
  Side dst(spec.dst, 12, arrangement, !segment_per_entry);
  std::mt19937 rng(static_cast<uint32_t>(static_cast<int>(src_kind) * 31 +
                                         static_cast<int>(dst_kind)));
  for (uint8_t& b : src.arena) b = static_cast<uint8_t>(rng());

  // Random pairs (distinct destinations: executions may run pairs in any order), then runs of
  // consecutive blocks (where runs may continue across pairs) and a repeated pair.
  const int64_t src_free = c.src.nt - resolved->token_count;
  const int64_t dst_free = c.dst.nt - resolved->token_count;
  std::vector<BlockPair> pairs;
  for (int i = 0; i < 5; ++i) {
    pairs.push_back({static_cast<int64_t>(rng() % 6), 7 + (i * 3) % 5,
                     static_cast<int64_t>(rng() % (src_free + 1)),
                     static_cast<int64_t>(rng() % (dst_free + 1))});
  }
  for (int64_t b = 0; b < 4; ++b) pairs.push_back({b + 2, b + 3, 0, 0});
  pairs.push_back(pairs.back());

  absl::StatusOr<TransferPlan> strided =
      TransferPlan::BuildStrided(spec, src.strided(), dst.strided(), pairs);
  ASSERT_TRUE(strided.ok()) << strided.status();
  absl::StatusOr<TransferPlan> expl = TransferPlan::Build(
      spec, src.table, dst.table, pairs, AddressSegments{src.table_segments, dst.table_segments});
  ASSERT_TRUE(expl.ok()) << expl.status();

  // Factored: one outer entry per pair, one step per (layer, outer chunk).
  EXPECT_EQ(strided->outer().size(), pairs.size());
  EXPECT_EQ(static_cast<int64_t>(strided->steps().size()),
            resolved->layers.count * resolved->src.shape.no);
  EXPECT_EQ(strided->num_chunks(), expl->num_chunks());
  EXPECT_EQ(strided->bytes(), expl->bytes());
  EXPECT_EQ(strided->ChunksPerPair(), expl->ChunksPerPair());
  EXPECT_EQ(strided->alignment(), expl->alignment());  // 16-aligned arenas: the same width
  EXPECT_TRUE(SameChunks(strided->Chunks(), expl->Chunks()));
  for (int64_t k = 0; k < expl->num_chunks(); k += 7) {
    EXPECT_EQ(strided->ChunkAt(k).src, expl->ChunkAt(k).src) << k;
    EXPECT_EQ(strided->ChunkAt(k).dst, expl->ChunkAt(k).dst) << k;
  }
  EXPECT_TRUE(SameRuns(strided->Runs(), expl->Runs()));
  const int64_t n = strided->num_pairs();
  for (int64_t begin = 0, step = 1; begin < n; begin += step, step = step % 4 + 1) {
    const int64_t end = std::min(n, begin + step);
    const TransferPlan s = strided->PairSlice(begin, end);
    const TransferPlan e = expl->PairSlice(begin, end);
    EXPECT_EQ(s.outer().size(), static_cast<size_t>(end - begin));
    EXPECT_TRUE(SameChunks(s.Chunks(), e.Chunks())) << begin << ".." << end;
    EXPECT_TRUE(SameRuns(s.Runs(), e.Runs())) << begin << ".." << end;
  }

  // Executed: the strided plan (whole, and in small host slices) writes the reference's bytes.
  Side by_reference(spec.dst, 12, arrangement, false);
  ASSERT_TRUE(ReferenceConvert(spec, src.table, by_reference.table, pairs, 1).ok());
  ExecutePlanOnHost(*strided, 2);
  const auto payload = [](const Side& s) {
    const size_t skip = static_cast<size_t>(s.bases[0] - reinterpret_cast<uint64_t>(s.arena.data()));
    return std::vector<uint8_t>(s.arena.begin() + skip, s.arena.end() - (16 - skip));
  };
  EXPECT_TRUE(payload(dst) == payload(by_reference));
  Side by_slices(spec.dst, 12, arrangement, false);
  absl::StatusOr<TransferPlan> sliced =
      TransferPlan::BuildStrided(spec, src.strided(), by_slices.strided(), pairs);
  ASSERT_TRUE(sliced.ok());
  PlanCursor cursor;
  int guard = 0;
  while (!ExecutePlanSliceOnHost(*sliced, cursor, 7) && ++guard < 1'000'000) {
  }
  EXPECT_EQ(cursor.bytes_done, sliced->bytes());
  EXPECT_TRUE(payload(by_slices) == payload(by_reference));
}

std::string Name(const ::testing::TestParamInfo<Param>& info) {
  const auto& [s, d, c, a, seg] = info.param;
  return std::string(LayoutKindName(s)) + "_to_" + std::string(LayoutKindName(d)) + "_" + c.name +
         (a == Arrangement::kBlockMajor ? "_blockmajor" : "_slotmajor") +
         (seg ? "_segsrc" : "_segdst");
}

INSTANTIATE_TEST_SUITE_P(
    AllPairs, StridedPlanTest,
    ::testing::Combine(::testing::Values(LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                         LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND,
                                         LayoutKind::kUniversal),
                       ::testing::Values(LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                         LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND,
                                         LayoutKind::kUniversal),
                       ::testing::ValuesIn(Cases()),
                       ::testing::Values(Arrangement::kBlockMajor, Arrangement::kSlotMajor),
                       ::testing::Bool()),
    Name);

TransferSpec StackSpec() {
  TransferSpec spec;
  spec.src = {LayoutKind::kNHDStack, Shape(3, 2, 2, 4, 5), DType::kBF16};
  spec.dst = {LayoutKind::kUniversal, Shape(3, 2, 2, 4, 5), DType::kBF16};
  return spec;
}

TEST(StridedPlanRejects, MalformedSides) {
  const std::vector<uint64_t> four = {0x10000, 0x20000, 0x30000, 0x40000};
  const std::vector<uint64_t> one = {0x900000};
  const StridedSide dst{one, 480, 4, {}};
  const std::vector<BlockPair> pairs = {{0, 0, 0, 0}};
  auto code = [&](const StridedSide& src) {
    return TransferPlan::BuildStrided(StackSpec(), src, dst, pairs).status();
  };
  EXPECT_TRUE(code(StridedSide{four, 0x100000, 4, {}}).ok());
  const absl::Status size = code(StridedSide{one, 0x100000, 4, {}});
  EXPECT_EQ(size.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(size.message().find("src_bases: 1 entries"), absl::string_view::npos) << size;
  const std::vector<uint32_t> three_segments = {0, 0, 0};
  const absl::Status segs = code(StridedSide{four, 0x100000, 4, three_segments});
  EXPECT_EQ(segs.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(segs.message().find("src_segments: 3 entries"), absl::string_view::npos) << segs;
  const std::vector<uint64_t> null_base = {0x10000, 0, 0x30000, 0x40000};
  const absl::Status null = code(StridedSide{null_base, 0x100000, 4, {}});
  EXPECT_EQ(null.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(null.message().find("src_bases[1]: null address"), absl::string_view::npos) << null;
  // The last block of entry 3 wraps around 2^64; block 0 alone would not.
  const std::vector<uint64_t> high = {0x10000, 0x20000, 0x30000, ~uint64_t{0} - 0x10000};
  const absl::Status wrap = code(StridedSide{high, 0x100000, 4, {}});
  EXPECT_EQ(wrap.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrap.message().find("src_bases[3]"), absl::string_view::npos) << wrap;
  const absl::Status stride = code(StridedSide{four, ~uint64_t{0} / 2, 4, {}});
  EXPECT_EQ(stride.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(stride.message().find("block_stride"), absl::string_view::npos) << stride;
}

TEST(StridedPlanRejects, BadPairsExactlyAsBuild) {
  const std::vector<uint64_t> bases = {0x10000, 0x20000, 0x30000, 0x40000};
  const std::vector<uint64_t> one = {0x900000};
  const StridedSide src{bases, 0x100000, 3, {}};
  const StridedSide dst{one, 480, 2, {}};
  std::vector<uint64_t> src_table, dst_table;
  for (uint64_t b = 0; b < 3; ++b) {
    for (uint64_t e : bases) src_table.push_back(e + b * 0x100000);
  }
  for (uint64_t b = 0; b < 2; ++b) dst_table.push_back(one[0] + b * 480);
  for (const BlockPair bad : {BlockPair{3, 0, 0, 0}, BlockPair{0, 2, 0, 0}, BlockPair{-1, 0, 0, 0},
                              BlockPair{0, 0, 1, 0}, BlockPair{0, 0, 0, 4}}) {
    const std::vector<BlockPair> pairs = {{0, 0, 0, 0}, bad};
    const absl::Status s = TransferPlan::BuildStrided(StackSpec(), src, dst, pairs).status();
    const absl::Status e = TransferPlan::Build(StackSpec(), src_table, dst_table, pairs).status();
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s, e);
  }
  TransferSpec too_many = StackSpec();
  too_many.heads = {.src_offset = 0, .dst_offset = 0, .count = 4};
  EXPECT_EQ(TransferPlan::BuildStrided(too_many, src, dst, {}).status(),
            TransferPlan::Build(too_many, src_table, dst_table, {}).status());
}

TEST(StridedPlanMemory, GrowsWithPairsNotChunks) {
  TransferSpec spec = StackSpec();
  spec.src.shape.nl = 80;
  spec.dst.shape.nl = 80;
  const int64_t explicit_bytes = PlanMemoryBytes(spec, 256, false);
  const int64_t strided_bytes = PlanMemoryBytes(spec, 256, true);
  EXPECT_GT(explicit_bytes, 256 * 160 * 16);
  EXPECT_LT(strided_bytes, (256 + 160) * 17 + 256 * static_cast<int64_t>(sizeof(BlockPair)) + 1);
}

}  // namespace
}  // namespace kvshuttle
