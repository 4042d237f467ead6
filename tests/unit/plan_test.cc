// Plan resolution (core/plan.h): chunk geometry for known layout pairs, chunk addresses, byte
// counts, alignment and contiguous runs. Addresses here are fake and never dereferenced.
#include "core/plan.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace kvshuttle {
namespace {

// (nh, nl, no, nt, hd) in the seed's order.
BlockShape Shape(int64_t nh, int64_t nl, int64_t no, int64_t nt, int64_t hd) {
  return BlockShape{.nl = nl, .no = no, .nt = nt, .nh = nh, .hd = hd};
}
const BlockShape kSeed = Shape(3, 2, 2, 4, 5);  // bf16: row 10, chunk 120, block 480 bytes

TransferSpec Spec(LayoutKind src, BlockShape src_shape, LayoutKind dst, BlockShape dst_shape,
                  DType dtype = DType::kBF16) {
  TransferSpec spec;
  spec.src = {src, src_shape, dtype};
  spec.dst = {dst, dst_shape, dtype};
  return spec;
}

ChunkGeometry Geometry(const TransferSpec& spec) {
  absl::StatusOr<TransferSpec> resolved = ResolveSpec(spec);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  return MakeChunkGeometry(*resolved);
}

void ExpectGeometry(const ChunkGeometry& g, int64_t row, int64_t inner, int64_t src_inner,
                    int64_t dst_inner, int64_t outer, int64_t src_outer, int64_t dst_outer) {
  EXPECT_EQ(g.row_bytes, row);
  EXPECT_EQ(g.inner_count, inner);
  EXPECT_EQ(g.src_inner_stride, src_inner);
  EXPECT_EQ(g.dst_inner_stride, dst_inner);
  EXPECT_EQ(g.outer_count, outer);
  EXPECT_EQ(g.src_outer_stride, src_outer);
  EXPECT_EQ(g.dst_outer_stride, dst_outer);
}

// Table of `entries` addresses, `spacing` bytes apart from `base`.
std::vector<uint64_t> Table(int64_t entries, uint64_t base, uint64_t spacing) {
  std::vector<uint64_t> t(entries);
  for (int64_t i = 0; i < entries; ++i) t[i] = base + spacing * static_cast<uint64_t>(i);
  return t;
}

// Each side's table lies in one allocation (segment 0) unless `segments` says otherwise.
TransferPlan Build(const TransferSpec& spec, const std::vector<uint64_t>& src,
                   const std::vector<uint64_t>& dst, const std::vector<BlockPair>& pairs,
                   std::vector<uint32_t> src_segments = {},
                   std::vector<uint32_t> dst_segments = {}) {
  if (src_segments.empty()) src_segments.assign(src.size(), 0);
  if (dst_segments.empty()) dst_segments.assign(dst.size(), 0);
  absl::StatusOr<TransferPlan> plan =
      TransferPlan::Build(spec, src, dst, pairs, AddressSegments{src_segments, dst_segments});
  EXPECT_TRUE(plan.ok()) << plan.status();
  return *std::move(plan);
}

TEST(ChunkGeometryTest, SameStackFoldsWholeChunkIntoOneRow) {
  // NHD: heads stride 10 = row on both sides → row 30; tokens stride 30 on both → row 120.
  ExpectGeometry(Geometry(Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kNHDStack, kSeed)), 120, 1,
                 0, 0, 1, 0, 0);
  ExpectGeometry(Geometry(Spec(LayoutKind::kOperationalHND, kSeed, LayoutKind::kHNDStack, kSeed)),
                 120, 1, 0, 0, 1, 0, 0);
}

TEST(ChunkGeometryTest, HndToUniversalFoldsTokensNotHeads) {
  // Tokens are contiguous on both sides (stride 10) → row 40; universal's head stride is
  // nl*no*nt*row = 160 but HND's is 40, so heads stay a dimension.
  ExpectGeometry(Geometry(Spec(LayoutKind::kHNDStack, kSeed, LayoutKind::kUniversal, kSeed)), 40, 3,
                 40, 160, 1, 0, 0);
  // With nl*no = 1 the universal head stride is nt*row as well: one row of nh*nt*hd elements.
  const BlockShape flat = Shape(3, 1, 1, 4, 5);
  ExpectGeometry(Geometry(Spec(LayoutKind::kHNDStack, flat, LayoutKind::kUniversal, flat)), 120, 1,
                 0, 0, 1, 0, 0);
}

TEST(ChunkGeometryTest, TransposesKeepBothDimsDensestDestinationInnermost) {
  // NHD → universal: dst token stride 10 < dst head stride 160.
  ExpectGeometry(Geometry(Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kUniversal, kSeed)), 10, 4,
                 30, 10, 3, 10, 160);
  // NHD → HND: tokens (src 30, dst 10) inside heads (src 10, dst 40).
  ExpectGeometry(Geometry(Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kHNDStack, kSeed)), 10, 4,
                 30, 10, 3, 10, 40);
  // universal → operational NHD: heads (src 160, dst 10) inside tokens (src 10, dst 30).
  ExpectGeometry(Geometry(Spec(LayoutKind::kUniversal, kSeed, LayoutKind::kOperationalNHD, kSeed)),
                 10, 3, 160, 10, 4, 10, 30);
}

TEST(ChunkGeometryTest, RangesAndUnitCounts) {
  // 2 of 8 source heads into a 2-head NHD chunk: heads fold (stride 10 both) → row 20; tokens
  // have stride 80 on the source and 20 on the destination.
  TransferSpec spec = Spec(LayoutKind::kNHDStack, Shape(8, 2, 2, 4, 5), LayoutKind::kNHDStack,
                           Shape(2, 2, 2, 4, 5));
  spec.heads = {.src_offset = 4, .dst_offset = 0, .count = 2};
  ExpectGeometry(Geometry(spec), 20, 4, 80, 20, 1, 0, 0);
  // One head, one token: a single row.
  spec = Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kUniversal, kSeed);
  spec.heads = {.src_offset = 1, .dst_offset = 2, .count = 1};
  spec.token_count = 1;
  ExpectGeometry(Geometry(spec), 10, 1, 0, 0, 1, 0, 0);
  // nt 1: only heads remain, NHD → universal (src 10, dst nl*no*1*row = 40).
  const BlockShape nt1 = Shape(3, 2, 2, 1, 5);
  ExpectGeometry(Geometry(Spec(LayoutKind::kNHDStack, nt1, LayoutKind::kUniversal, nt1)), 10, 3, 10,
                 40, 1, 0, 0);
  // Element size scales every byte figure: f64 NHD → universal.
  ExpectGeometry(
      Geometry(Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kUniversal, kSeed, DType::kF64)), 40,
      4, 120, 40, 3, 40, 640);
}

TEST(TransferPlanTest, ChunkAddressesWithEveryRange) {
  // universal (nh 4, nl 3, no 2, nt 8) → NHD stack (nh 2, nl 2, no 2, nt 4), bf16, hd 5.
  // Source strides: row 10, token 10, outer 80, layer 160, head 480 (block 1920).
  TransferSpec spec = Spec(LayoutKind::kUniversal, Shape(4, 3, 2, 8, 5), LayoutKind::kNHDStack,
                           Shape(2, 2, 2, 4, 5));
  spec.heads = {.src_offset = 2, .dst_offset = 0, .count = 2};
  spec.layers = {.src_offset = 1, .dst_offset = 0, .count = 2};
  spec.token_count = 4;
  const std::vector<uint64_t> src = {0x10000, 0x20000};
  const std::vector<uint64_t> dst = Table(8, 0x900000, 0x1000);  // 2 blocks × 4 chunks
  const TransferPlan plan =
      Build(spec, src, dst, {{.src_block = 1, .dst_block = 1, .src_token_offset = 3}});
  ASSERT_EQ(plan.Chunks().size(), 4u);
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t o = 0; o < 2; ++o) {
      const ChunkAddress c = plan.ChunkAt(l * 2 + o);
      // 0x20000 + (1 + l)*160 + o*80 + 2 heads*480 + 3 tokens*10
      EXPECT_EQ(c.src, 0x20000u + 1150 + 160 * l + 80 * o) << "l " << l << " o " << o;
      EXPECT_EQ(c.dst, dst[4 + l * 2 + o]) << "l " << l << " o " << o;
    }
  }
  ExpectGeometry(plan.geometry(), 10, 2, 480, 10, 4, 10, 20);
  EXPECT_EQ(plan.RowsPerChunk(), 8);
  EXPECT_EQ(plan.bytes(), 4 * 2 * 4 * 10);
  EXPECT_EQ(plan.num_pairs(), 1);
  EXPECT_EQ(plan.spec().token_count, 4);
  EXPECT_EQ(plan.spec().heads, (AxisRange{2, 0, 2}));
  EXPECT_EQ(plan.alignment(), 2);  // row 10
}

TEST(TransferPlanTest, ChunkCountAndBytes) {
  TransferSpec spec = Spec(LayoutKind::kHNDStack, kSeed, LayoutKind::kOperationalNHD, kSeed);
  const std::vector<uint64_t> src = Table(12, 0x100000, 0x1000), dst = Table(3, 0x900000, 0x1000);
  const std::vector<BlockPair> pairs = {{0, 1}, {1, 0}, {2, 2}};
  TransferPlan plan = Build(spec, src, dst, pairs);
  EXPECT_EQ(plan.Chunks().size(), 12u);  // 3 pairs × 2 layers × 2 outer
  EXPECT_EQ(plan.bytes(), 3 * 480);
  EXPECT_EQ(plan.num_pairs(), 3);
  EXPECT_FALSE(plan.empty());
  const ChunkGeometry g = MakeChunkGeometry(plan.spec());
  ExpectGeometry(plan.geometry(), g.row_bytes, g.inner_count, g.src_inner_stride,
                 g.dst_inner_stride, g.outer_count, g.src_outer_stride, g.dst_outer_stride);
  EXPECT_EQ(plan.geometry().chunk_bytes(), 120);
  spec.layers = {.src_offset = 1, .dst_offset = 0, .count = 1};
  spec.heads = {.src_offset = 1, .dst_offset = 0, .count = 2};
  plan = Build(spec, src, dst, pairs);
  EXPECT_EQ(plan.Chunks().size(), 6u);
  EXPECT_EQ(plan.bytes(), 6 * 2 * 4 * 10);
  // MLA: no 1, so nl chunks per pair.
  const BlockShape mla = Shape(1, 3, 1, 2, 576);
  plan = Build(Spec(LayoutKind::kNHDStack, mla, LayoutKind::kUniversal, mla),
               Table(6, 0x100000, 0x1000), Table(2, 0x900000, 0x10000), {{0, 1}, {1, 0}});
  EXPECT_EQ(plan.Chunks().size(), 6u);
  EXPECT_EQ(plan.bytes(), 2 * 3 * 2 * 576 * 2);
}

TEST(TransferPlanTest, Alignment) {
  const BlockShape hd46 = Shape(2, 1, 2, 4, 46);  // bf16 row 92 = 4 × 23
  const TransferSpec spec = Spec(LayoutKind::kNHDStack, hd46, LayoutKind::kUniversal, hd46);
  const std::vector<uint64_t> src = Table(4, 0x100000, 0x1000);
  EXPECT_EQ(Build(spec, src, {0x900000, 0x910000}, {{0, 1}, {1, 0}}).alignment(), 4);
  EXPECT_EQ(Build(spec, src, {0x900002, 0x910000}, {{0, 1}, {1, 0}}).alignment(), 2);
  EXPECT_EQ(Build(spec, src, {0x900000, 0x910001}, {{0, 1}, {1, 0}}).alignment(), 1);
  // hd 128 bf16: row 256 and strides are multiples of 16.
  const BlockShape hd128 = Shape(2, 1, 2, 4, 128);
  const TransferSpec wide = Spec(LayoutKind::kNHDStack, hd128, LayoutKind::kUniversal, hd128);
  EXPECT_EQ(Build(wide, src, {0x900000}, {{1, 0}}).alignment(), 16);
  EXPECT_EQ(Build(wide, src, {0x900008}, {{1, 0}}).alignment(), 8);
  // An unaligned pair that is not in the list does not matter.
  EXPECT_EQ(Build(wide, src, {0x900000, 0x900003}, {{1, 0}}).alignment(), 16);
  // The folded row (2 heads × 8 bytes) is 16-aligned but the source token stride (3 heads ×
  // 8 bytes = 24) is only 8-aligned.
  TransferSpec slice = Spec(LayoutKind::kNHDStack, Shape(3, 1, 2, 4, 4), LayoutKind::kNHDStack,
                            Shape(2, 1, 2, 4, 4));
  slice.heads = {.src_offset = 0, .dst_offset = 0, .count = 2};
  const TransferPlan sliced =
      Build(slice, Table(2, 0x100000, 0x1000), Table(2, 0x900000, 0x1000), {{0, 0}});
  ExpectGeometry(sliced.geometry(), 16, 4, 24, 16, 1, 0, 0);
  EXPECT_EQ(sliced.alignment(), 8);
  // Odd row sizes: hd 5 of f32 (row 20) and of uint8 (row 5).
  EXPECT_EQ(Build(Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kUniversal, kSeed, DType::kF32),
                  Table(4, 0x100000, 0x1000), {0x900000}, {{0, 0}})
                .alignment(),
            4);
  EXPECT_EQ(Build(Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kUniversal, kSeed, DType::kUInt8),
                  Table(4, 0x100000, 0x1000), {0x900000}, {{0, 0}})
                .alignment(),
            1);
}

int64_t RunBytes(const std::vector<CopyRun>& runs) {
  int64_t total = 0;
  for (const CopyRun& r : runs) total += static_cast<int64_t>(r.bytes);
  return total;
}

TEST(TransferPlanRunsTest, ContiguousFullCopiesMerge) {
  // operational → operational, adjacent 480-byte blocks, pairs in order: one run of it all.
  const TransferSpec op =
      Spec(LayoutKind::kOperationalNHD, kSeed, LayoutKind::kOperationalNHD, kSeed);
  const std::vector<uint64_t> src = Table(3, 0x100000, 480), dst = Table(3, 0x900000, 480);
  TransferPlan plan = Build(op, src, dst, {{0, 0}, {1, 1}, {2, 2}});
  std::vector<CopyRun> runs = plan.Runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].src, 0x100000u);
  EXPECT_EQ(runs[0].dst, 0x900000u);
  EXPECT_EQ(runs[0].bytes, 1440u);
  // Permuted pairs: one run per block.
  plan = Build(op, src, dst, {{0, 1}, {1, 0}, {2, 2}});
  runs = plan.Runs();
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].dst, 0x900000u + 480);
  EXPECT_EQ(runs[1].dst, 0x900000u);
  for (const CopyRun& r : runs) EXPECT_EQ(r.bytes, 480u);
  // Stacks whose chunks happen to sit back to back in (block, layer, outer) order.
  const TransferSpec stack = Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kNHDStack, kSeed);
  plan = Build(stack, Table(8, 0x100000, 120), Table(8, 0x900000, 120), {{0, 0}, {1, 1}});
  EXPECT_EQ(plan.Runs().size(), 1u);
  // ... or spread out: one run per chunk.
  plan = Build(stack, Table(8, 0x100000, 4096), Table(8, 0x900000, 4096), {{0, 0}, {1, 1}});
  EXPECT_EQ(plan.Runs().size(), 8u);
  EXPECT_EQ(RunBytes(plan.Runs()), plan.bytes());
}

// Adjacent allocations are still two allocations: one cudaMemcpy may not span them (found by
// the Python GPU tier, where torch tensors mapped back to back in the daemon).
TEST(TransferPlanRunsTest, RunsDoNotMergeAcrossAllocations) {
  const TransferSpec op =
      Spec(LayoutKind::kOperationalNHD, kSeed, LayoutKind::kOperationalNHD, kSeed);
  const std::vector<uint64_t> src = Table(3, 0x100000, 480), dst = Table(3, 0x900000, 480);
  const std::vector<BlockPair> pairs = {{0, 0}, {1, 1}, {2, 2}};
  // Source block 2 in another allocation that happens to follow block 1.
  TransferPlan plan = Build(op, src, dst, pairs, {0, 0, 1}, {0, 0, 0});
  std::vector<CopyRun> runs = plan.Runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].bytes, 960u);
  EXPECT_EQ(runs[1].src, 0x100000u + 960);
  EXPECT_EQ(runs[1].bytes, 480u);
  // Destination side split the same way.
  EXPECT_EQ(Build(op, src, dst, pairs, {0, 0, 0}, {7, 8, 8}).Runs().size(), 2u);
  // No segments: only chunks of one table entry (here: one operational block) continue each
  // other's runs.
  absl::StatusOr<TransferPlan> unknown = TransferPlan::Build(op, src, dst, pairs);
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->Runs().size(), 3u);
  EXPECT_EQ(RunBytes(unknown->Runs()), unknown->bytes());
  // Rows inside one chunk always merge (a chunk lies in one piece of one allocation).
  const TransferSpec stack = Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kNHDStack, kSeed);
  absl::StatusOr<TransferPlan> rows =
      TransferPlan::Build(stack, Table(4, 0x100000, 4096), Table(4, 0x900000, 4096), {{0, 0}});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Runs().size(), 4u);  // one run of 120 bytes per chunk
  // A segment table of the wrong size is refused.
  const std::vector<uint32_t> two = {0, 0};
  const std::vector<uint32_t> three = {0, 0, 0};
  EXPECT_EQ(TransferPlan::Build(op, src, dst, pairs, AddressSegments{two, three}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TransferPlanRunsTest, FewLargeRunsStopsAtTheFirstRunThatBreaksABound) {
  const TransferSpec op =
      Spec(LayoutKind::kOperationalNHD, kSeed, LayoutKind::kOperationalNHD, kSeed);
  // Three adjacent 480-byte blocks: one run of 1440 bytes.
  const std::vector<uint64_t> src = Table(3, 0x100000, 480), dst = Table(3, 0x900000, 480);
  TransferPlan merged = Build(op, src, dst, {{0, 0}, {1, 1}, {2, 2}});
  EXPECT_TRUE(merged.FewLargeRuns(1, 1440));
  EXPECT_FALSE(merged.FewLargeRuns(1, 1441));
  // Permuted: three runs of 480 bytes.
  TransferPlan permuted = Build(op, src, dst, {{0, 1}, {1, 0}, {2, 2}});
  EXPECT_TRUE(permuted.FewLargeRuns(3, 480));
  EXPECT_FALSE(permuted.FewLargeRuns(2, 480));
  EXPECT_FALSE(permuted.FewLargeRuns(3, 481));
  // A transpose is one run per row: the visit stops after the first run.
  const TransferSpec transpose =
      Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kUniversal, kSeed);
  TransferPlan rows = Build(transpose, Table(4, 0x100000, 4096), {0x900000}, {{0, 0}});
  int visited = 0;
  EXPECT_FALSE(rows.VisitRuns([&](const CopyRun&) { return ++visited < 1; }));
  EXPECT_EQ(visited, 1);
  EXPECT_FALSE(rows.FewLargeRuns(1000, 11));
  EXPECT_GT(rows.Runs().size(), 1u);
}

TEST(TransferPlanRunsTest, UniversalToUniversal) {
  // nh 1: the (layer, outer) chunks of a block follow each other → one run for adjacent blocks.
  const BlockShape one_head = Shape(1, 2, 2, 4, 5);  // block 160 bytes
  const TransferSpec u1 = Spec(LayoutKind::kUniversal, one_head, LayoutKind::kUniversal, one_head);
  TransferPlan plan =
      Build(u1, Table(3, 0x100000, 160), Table(3, 0x900000, 160), {{0, 0}, {1, 1}, {2, 2}});
  ASSERT_EQ(plan.Runs().size(), 1u);
  EXPECT_EQ(plan.Runs()[0].bytes, 480u);
  // nh 3: chunks are visited (layer, outer)-major but heads are outermost in universal, so a
  // full block copy currently yields nl*no*nh runs of nt*row bytes (not one run per block).
  const TransferSpec u3 = Spec(LayoutKind::kUniversal, kSeed, LayoutKind::kUniversal, kSeed);
  plan = Build(u3, {0x100000}, {0x900000}, {{0, 0}});
  const std::vector<CopyRun> runs = plan.Runs();
  ASSERT_EQ(runs.size(), 12u);
  for (const CopyRun& r : runs) EXPECT_EQ(r.bytes, 40u);
  EXPECT_EQ(RunBytes(runs), 480);
}

TEST(TransferPlanRunsTest, TransposeIsOneRunPerRow) {
  const TransferPlan plan =
      Build(Spec(LayoutKind::kNHDStack, kSeed, LayoutKind::kUniversal, kSeed),
            Table(8, 0x100000, 4096), Table(2, 0x900000, 4096), {{0, 1}, {1, 0}});
  const std::vector<CopyRun> runs = plan.Runs();
  EXPECT_EQ(plan.RowsPerChunk(), 12);
  ASSERT_EQ(runs.size(), plan.Chunks().size() * 12);
  for (const CopyRun& r : runs) EXPECT_EQ(r.bytes, 10u);
  EXPECT_EQ(RunBytes(runs), plan.bytes());
  EXPECT_EQ(plan.bytes(), 960);
}

TEST(TransferPlanTest, EmptyPairs) {
  const TransferPlan plan = Build(Spec(LayoutKind::kHNDStack, kSeed, LayoutKind::kUniversal, kSeed),
                                  Table(4, 0x100000, 4096), {0x900000}, {});
  EXPECT_TRUE(plan.empty());
  EXPECT_TRUE(plan.empty());
  EXPECT_EQ(plan.bytes(), 0);
  EXPECT_EQ(plan.num_pairs(), 0);
  EXPECT_TRUE(plan.Runs().empty());
}

}  // namespace
}  // namespace kvshuttle
