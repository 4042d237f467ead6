// The core CPU correctness test: for every ordered pair of layouts, every element size and a
// list of shapes and ranges, the plan + host executor, the plan's contiguous runs, and the
// element-wise reference converter must produce byte-identical destinations (guards included).
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "core/plan.h"
#include "core/reference.h"
#include "gtest/gtest.h"
#include "tests/unit/host_blocks.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::DTypeOfSize;
using ::kvshuttle::testing::HostBlocks;

struct Case {
  std::string name = {};
  BlockShape src = {}, dst = {};
  AxisRange heads = {}, layers = {};  // count 0 = all
  int64_t token_count = 0;            // 0 = all of src nt
  int64_t src_blocks = 1, dst_blocks = 1;
  std::vector<BlockPair> pairs = {};
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// (nh, nl, no, nt, hd) in the seed's order.
BlockShape Shape(int64_t nh, int64_t nl, int64_t no, int64_t nt, int64_t hd) {
  return BlockShape{.nl = nl, .no = no, .nt = nt, .nh = nh, .hd = hd};
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  const BlockShape seed = Shape(3, 2, 2, 4, 5);
  {
    Case c{.name = "seed_full", .src = seed, .dst = seed, .src_blocks = 3, .dst_blocks = 3};
    for (int64_t i = 0; i < 3; ++i)
      c.pairs.push_back({.src_block = i, .dst_block = (i * 2 + 1) % 3});
    cases.push_back(c);
  }
  cases.push_back({.name = "mla",
                   .src = Shape(1, 2, 1, 2, 576),
                   .dst = Shape(1, 2, 1, 2, 576),
                   .src_blocks = 2,
                   .dst_blocks = 2,
                   .pairs = {{0, 1}, {1, 0}}});
  cases.push_back({.name = "hd46",
                   .src = Shape(2, 2, 2, 3, 46),
                   .dst = Shape(2, 2, 2, 3, 46),
                   .src_blocks = 2,
                   .dst_blocks = 2,
                   .pairs = {{1, 0}}});
  cases.push_back({.name = "nt1",
                   .src = Shape(3, 2, 2, 1, 5),
                   .dst = Shape(3, 2, 2, 1, 5),
                   .src_blocks = 2,
                   .dst_blocks = 2,
                   .pairs = {{0, 1}, {1, 0}}});
  cases.push_back({.name = "all_ones",
                   .src = Shape(1, 1, 1, 1, 1),
                   .dst = Shape(1, 1, 1, 1, 1),
                   .src_blocks = 2,
                   .dst_blocks = 3,
                   .pairs = {{0, 2}, {1, 0}}});
  // A TP rank reads its 2 of 8 heads (rank 2), and a rank writes its 2 heads at 2*rank (rank 1).
  cases.push_back({.name = "head_slice_read",
                   .src = Shape(8, 2, 2, 2, 3),
                   .dst = Shape(2, 2, 2, 2, 3),
                   .heads = {4, 0, 2},
                   .src_blocks = 2,
                   .dst_blocks = 2,
                   .pairs = {{0, 1}, {1, 0}}});
  cases.push_back({.name = "head_slice_write",
                   .src = Shape(2, 2, 2, 2, 3),
                   .dst = Shape(8, 2, 2, 2, 3),
                   .heads = {0, 2, 2},
                   .src_blocks = 2,
                   .dst_blocks = 2,
                   .pairs = {{0, 1}, {1, 0}}});
  cases.push_back({.name = "layer_range",
                   .src = Shape(3, 4, 2, 2, 5),
                   .dst = Shape(3, 3, 2, 2, 5),
                   .layers = {2, 0, 2},
                   .src_blocks = 2,
                   .dst_blocks = 2,
                   .pairs = {{0, 1}, {1, 0}}});
  {
    // Four 16-token worker blocks assembled into one 64-token storage block (dst block 1).
    Case c{.name = "tokens_assemble",
           .src = Shape(2, 1, 2, 16, 3),
           .dst = Shape(2, 1, 2, 64, 3),
           .src_blocks = 4,
           .dst_blocks = 2};
    for (int64_t i = 0; i < 4; ++i) c.pairs.push_back({i, 1, 0, 16 * i});
    cases.push_back(c);
  }
  {
    // ... and split back out.
    Case c{.name = "tokens_split",
           .src = Shape(2, 1, 2, 64, 3),
           .dst = Shape(2, 1, 2, 16, 3),
           .token_count = 16,
           .src_blocks = 1,
           .dst_blocks = 4};
    for (int64_t i = 0; i < 4; ++i) c.pairs.push_back({0, 3 - i, 16 * i, 0});
    cases.push_back(c);
  }
  cases.push_back({.name = "mixed_ranges",
                   .src = Shape(4, 3, 2, 8, 3),
                   .dst = Shape(2, 2, 2, 6, 3),
                   .heads = {2, 0, 2},
                   .layers = {1, 1, 1},
                   .token_count = 3,
                   .src_blocks = 2,
                   .dst_blocks = 2,
                   .pairs = {{0, 1, 5, 2}, {1, 0, 0, 3}}});
  return cases;
}

constexpr LayoutKind kKinds[] = {LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                 LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND,
                                 LayoutKind::kUniversal};

// Reports the first differing byte of two sets of buffers.
::testing::AssertionResult SameBytes(const std::vector<std::vector<uint8_t>>& got,
                                     const std::vector<std::vector<uint8_t>>& want) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "buffer counts differ";
  for (size_t b = 0; b < got.size(); ++b) {
    if (got[b] == want[b]) continue;
    for (size_t i = 0; i < got[b].size(); ++i) {
      if (got[b][i] != want[b][i]) {
        return ::testing::AssertionFailure()
               << "buffer " << b << " byte " << i << " (payload offset "
               << static_cast<int64_t>(i) - ::kvshuttle::testing::kGuardBytes << "): got 0x"
               << std::hex << int{got[b][i]} << ", want 0x" << int{want[b][i]};
      }
    }
  }
  return ::testing::AssertionSuccess();
}

using Param = std::tuple<LayoutKind, LayoutKind, int, Case>;

class HostExecutorTest : public ::testing::TestWithParam<Param> {};

TEST_P(HostExecutorTest, PlanRunsAndReferenceAgreeByteForByte) {
  const auto& [src_kind, dst_kind, es, c] = GetParam();
  TransferSpec spec;
  spec.src = {src_kind, c.src, DTypeOfSize(es)};
  spec.dst = {dst_kind, c.dst, DTypeOfSize(es)};
  spec.heads = c.heads;
  spec.layers = c.layers;
  spec.token_count = c.token_count;

  HostBlocks src(spec.src, c.src_blocks);
  src.FillRandom(1234 + es);
  const std::vector<std::vector<uint8_t>> src_before = src.buffers();
  HostBlocks by_plan(spec.dst, c.dst_blocks);
  HostBlocks by_runs(spec.dst, c.dst_blocks);
  HostBlocks by_reference(spec.dst, c.dst_blocks);

  absl::StatusOr<TransferPlan> plan =
      TransferPlan::Build(spec, src.addresses(), by_plan.addresses(), c.pairs);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExecutePlanOnHost(*plan, 2);

  absl::StatusOr<TransferPlan> runs_plan =
      TransferPlan::Build(spec, src.addresses(), by_runs.addresses(), c.pairs);
  ASSERT_TRUE(runs_plan.ok()) << runs_plan.status();
  int64_t run_bytes = 0;
  for (const CopyRun& r : runs_plan->Runs()) {
    std::memcpy(reinterpret_cast<void*>(r.dst), reinterpret_cast<const void*>(r.src), r.bytes);
    run_bytes += static_cast<int64_t>(r.bytes);
  }

  // The plan in pair slices (how GPU workers run long jobs), one after another: the same bytes,
  // both executed and as runs.
  HostBlocks by_slices(spec.dst, c.dst_blocks);
  HostBlocks by_slice_runs(spec.dst, c.dst_blocks);
  absl::StatusOr<TransferPlan> whole =
      TransferPlan::Build(spec, src.addresses(), by_slices.addresses(), c.pairs);
  absl::StatusOr<TransferPlan> whole_runs =
      TransferPlan::Build(spec, src.addresses(), by_slice_runs.addresses(), c.pairs);
  ASSERT_TRUE(whole.ok() && whole_runs.ok());
  const int64_t n = whole->num_pairs();
  int64_t slice_bytes = 0;
  for (int64_t begin = 0, step = 1; begin < n; begin += step, step = step % 3 + 1) {
    const int64_t end = std::min(n, begin + step);
    const TransferPlan slice = whole->PairSlice(begin, end);
    EXPECT_EQ(slice.num_pairs(), end - begin);
    EXPECT_EQ(slice.num_chunks(), (end - begin) * whole->ChunksPerPair());
    ExecutePlanOnHost(slice, 1);
    for (const CopyRun& r : whole_runs->PairSlice(begin, end).Runs()) {
      std::memcpy(reinterpret_cast<void*>(r.dst), reinterpret_cast<const void*>(r.src), r.bytes);
    }
    slice_bytes += slice.bytes();
  }
  EXPECT_EQ(slice_bytes, whole->bytes());

  const absl::Status ref =
      ReferenceConvert(spec, src.addresses(), by_reference.addresses(), c.pairs, 2);
  ASSERT_TRUE(ref.ok()) << ref;
  EXPECT_TRUE(SameBytes(by_slices.buffers(), by_reference.buffers())) << "PairSlice, executed";
  EXPECT_TRUE(SameBytes(by_slice_runs.buffers(), by_reference.buffers())) << "PairSlice, runs";

  const TransferSpec& r = plan->spec();
  const int64_t want_bytes = static_cast<int64_t>(c.pairs.size()) * r.layers.count *
                             r.src.shape.no * r.heads.count * r.token_count * r.src.shape.hd * es;
  EXPECT_EQ(plan->bytes(), want_bytes);
  EXPECT_EQ(run_bytes, want_bytes);
  EXPECT_EQ(plan->num_chunks(), static_cast<int64_t>(c.pairs.size()) * r.layers.count * r.src.shape.no);
  // The source never contains the poison byte, so this counts the distinct bytes written.
  EXPECT_EQ(by_reference.CountWritten(), want_bytes);
  EXPECT_TRUE(SameBytes(by_plan.buffers(), by_reference.buffers())) << "ExecutePlanOnHost";
  EXPECT_TRUE(SameBytes(by_runs.buffers(), by_reference.buffers())) << "TransferPlan::Runs";
  EXPECT_TRUE(SameBytes(src.buffers(), src_before)) << "source modified";
}

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  const auto& [src_kind, dst_kind, es, c] = info.param;
  return std::string(LayoutKindName(src_kind)) + "_to_" + std::string(LayoutKindName(dst_kind)) +
         "_es" + std::to_string(es) + "_" + c.name;
}

INSTANTIATE_TEST_SUITE_P(AllPairs, HostExecutorTest,
                         ::testing::Combine(::testing::ValuesIn(kKinds),
                                            ::testing::ValuesIn(kKinds),
                                            ::testing::Values(1, 2, 4, 8),
                                            ::testing::ValuesIn(Cases())),
                         ParamName);

}  // namespace
}  // namespace kvshuttle
