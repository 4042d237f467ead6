// The host executor against hand-written index formulas (independent of layout.h and the
// reference), a four-step round trip, thread counts, empty pair lists, and errors that must
// leave memory untouched.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/plan.h"
#include "core/reference.h"
#include "gtest/gtest.h"
#include "tests/unit/host_blocks.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;
using ::kvshuttle::testing::HostBlocks;
using ::kvshuttle::testing::kGuardBytes;
using ::kvshuttle::testing::kPoison;

using Buffers = std::vector<std::vector<uint8_t>>;

TransferSpec Spec(LayoutKind src, BlockShape src_shape, LayoutKind dst, BlockShape dst_shape,
                  DType dtype) {
  TransferSpec spec;
  spec.src = {src, src_shape, dtype};
  spec.dst = {dst, dst_shape, dtype};
  return spec;
}

void RunPlan(const TransferSpec& spec, const HostBlocks& src, const HostBlocks& dst,
             const std::vector<BlockPair>& pairs, int threads = 2) {
  absl::StatusOr<TransferPlan> plan =
      TransferPlan::Build(spec, src.addresses(), dst.addresses(), pairs);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExecutePlanOnHost(*plan, threads);
}

// NHD stack → universal with head, layer and token ranges, written out with plain indices:
// src chunk [block][layer][outer] is [nt][nh][hd]; dst block is [nh][nl][no][nt][hd].
TEST(HostDirectTest, NhdStackToUniversalByHand) {
  const BlockShape s{.nl = 3, .no = 2, .nt = 8, .nh = 4, .hd = 3};  // source
  const BlockShape u{.nl = 2, .no = 2, .nt = 6, .nh = 5, .hd = 3};  // destination
  TransferSpec spec = Spec(LayoutKind::kNHDStack, s, LayoutKind::kUniversal, u, DType::kF32);
  spec.heads = {.src_offset = 1, .dst_offset = 2, .count = 3};
  spec.layers = {.src_offset = 1, .dst_offset = 0, .count = 2};
  spec.token_count = 4;
  const std::vector<BlockPair> pairs = {{0, 1, 3, 2}, {1, 0, 0, 0}};
  const int es = 4;

  HostBlocks src(spec.src, 2), dst(spec.dst, 2);
  src.FillRandom(99);
  Buffers want = dst.buffers();
  for (const BlockPair& p : pairs)
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t o = 0; o < 2; ++o)
        for (int64_t h = 0; h < 3; ++h)
          for (int64_t t = 0; t < 4; ++t)
            for (int64_t d = 0; d < 3; ++d)
              for (int64_t b = 0; b < es; ++b) {
                const int64_t chunk = p.src_block * 6 + (1 + l) * 2 + o;
                const int64_t from = (((p.src_token_offset + t) * 4 + (1 + h)) * 3 + d) * es + b;
                const int64_t to =
                    (((((2 + h) * 2 + l) * 2 + o) * 6 + (p.dst_token_offset + t)) * 3 + d) * es + b;
                want[p.dst_block][kGuardBytes + to] = src.buffers()[chunk][kGuardBytes + from];
              }
  RunPlan(spec, src, dst, pairs);
  EXPECT_EQ(dst.buffers(), want);
  EXPECT_EQ(dst.CountWritten(), 2 * 2 * 2 * 3 * 4 * 3 * es);
}

// universal → HND stack, the reverse direction, full copy of the seed shape with hd 46.
TEST(HostDirectTest, UniversalToHndStackByHand) {
  const BlockShape s{.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 46};
  const TransferSpec spec = Spec(LayoutKind::kUniversal, s, LayoutKind::kHNDStack, s, DType::kBF16);
  const std::vector<BlockPair> pairs = {{0, 2}, {1, 0}, {2, 1}};
  HostBlocks src(spec.src, 3), dst(spec.dst, 3);
  src.FillRandom(5);
  Buffers want = dst.buffers();
  for (const BlockPair& p : pairs)
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t o = 0; o < 2; ++o)
        for (int64_t h = 0; h < 3; ++h)
          for (int64_t t = 0; t < 4; ++t)
            for (int64_t byte = 0; byte < 46 * 2; ++byte) {
              const int64_t from = ((((h * 2 + l) * 2 + o) * 4 + t) * 46) * 2 + byte;
              const int64_t to = ((h * 4 + t) * 46) * 2 + byte;
              want[p.dst_block * 4 + l * 2 + o][kGuardBytes + to] =
                  src.buffers()[p.src_block][kGuardBytes + from];
            }
  RunPlan(spec, src, dst, pairs);
  EXPECT_EQ(dst.buffers(), want);
}

// NHD → universal → operational_hnd → HND → NHD gives back the original bytes.
TEST(HostDirectTest, RoundTripThroughEveryLayout) {
  const BlockShape s{.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5};
  const LayoutKind path[] = {LayoutKind::kNHDStack, LayoutKind::kUniversal,
                             LayoutKind::kOperationalHND, LayoutKind::kHNDStack,
                             LayoutKind::kNHDStack};
  const std::vector<BlockPair> permute = {{0, 2}, {1, 0}, {2, 1}};
  const std::vector<BlockPair> unpermute = {{2, 0}, {0, 1}, {1, 2}};
  std::vector<std::unique_ptr<HostBlocks>> steps;
  for (LayoutKind kind : path) {
    steps.push_back(std::make_unique<HostBlocks>(LayoutDesc{kind, s, DType::kBF16}, 3));
  }
  steps[0]->FillRandom(42);
  for (int i = 0; i + 1 < 5; ++i) {
    SCOPED_TRACE(LayoutKindName(path[i + 1]));
    const std::vector<BlockPair>& pairs = i % 2 == 0 ? permute : unpermute;
    RunPlan(Spec(path[i], s, path[i + 1], s, DType::kBF16), *steps[i], *steps[i + 1], pairs);
    EXPECT_EQ(steps[i + 1]->CountWritten(), 3 * 480);
  }
  // Payloads equal; guards of the last step still poison.
  for (size_t b = 0; b < steps[0]->buffers().size(); ++b) {
    const std::vector<uint8_t>& a = steps[0]->buffers()[b];
    const std::vector<uint8_t>& z = steps[4]->buffers()[b];
    ASSERT_EQ(a.size(), z.size());
    EXPECT_TRUE(std::equal(a.begin() + kGuardBytes, a.end() - kGuardBytes, z.begin() + kGuardBytes))
        << "chunk " << b;
  }
  EXPECT_EQ(steps[4]->CountWritten(), 3 * 480);
}

TEST(HostDirectTest, ThreadCountsGiveTheSameResult) {
  const BlockShape s{.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5};
  const TransferSpec spec =
      Spec(LayoutKind::kHNDStack, s, LayoutKind::kOperationalNHD, s, DType::kF16);
  const std::vector<BlockPair> pairs = {{0, 1}, {1, 0}};
  HostBlocks src(spec.src, 2);
  src.FillRandom(3);
  HostBlocks base(spec.dst, 2);
  RunPlan(spec, src, base, pairs, 1);
  EXPECT_EQ(base.CountWritten(), 2 * 480);
  for (int threads : {-1, 0, 2, 3, 8, 64}) {
    SCOPED_TRACE(threads);
    HostBlocks dst(spec.dst, 2);
    RunPlan(spec, src, dst, pairs, threads);
    EXPECT_EQ(dst.buffers(), base.buffers());
    HostBlocks ref(spec.dst, 2);
    ASSERT_TRUE(ReferenceConvert(spec, src.addresses(), ref.addresses(), pairs, threads).ok());
    EXPECT_EQ(ref.buffers(), base.buffers());
  }
}

TEST(HostDirectTest, EmptyPairListChangesNothing) {
  const BlockShape s{.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5};
  const TransferSpec spec = Spec(LayoutKind::kNHDStack, s, LayoutKind::kUniversal, s, DType::kF32);
  HostBlocks src(spec.src, 2), dst(spec.dst, 2);
  src.FillRandom(8);
  const Buffers src_before = src.buffers();
  absl::StatusOr<TransferPlan> plan =
      TransferPlan::Build(spec, src.addresses(), dst.addresses(), {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->empty());
  ExecutePlanOnHost(*plan, 2);
  EXPECT_TRUE(ReferenceConvert(spec, src.addresses(), dst.addresses(), {}, 2).ok());
  EXPECT_EQ(dst.CountWritten(), 0);
  EXPECT_EQ(src.buffers(), src_before);
}

TEST(HostDirectTest, ReferenceErrorTouchesNothing) {
  const BlockShape s{.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5};
  const TransferSpec spec = Spec(LayoutKind::kUniversal, s, LayoutKind::kNHDStack, s, DType::kF32);
  HostBlocks src(spec.src, 2), dst(spec.dst, 2);
  src.FillRandom(9);
  // Pair 0 is valid; pair 1 names a destination block that does not exist.
  const std::vector<BlockPair> pairs = {{0, 0}, {1, 2}};
  EXPECT_TRUE(HasStatus(ReferenceConvert(spec, src.addresses(), dst.addresses(), pairs, 2),
                        absl::StatusCode::kOutOfRange, {"pairs[1].dst_block: 2"}));
  EXPECT_EQ(dst.CountWritten(), 0);
  TransferSpec bad = spec;
  bad.heads.count = 9;
  EXPECT_TRUE(HasStatus(ReferenceConvert(bad, src.addresses(), dst.addresses(), {{0, 0}}, 2),
                        absl::StatusCode::kOutOfRange, {"heads.count: 9"}));
  EXPECT_EQ(dst.CountWritten(), 0);
}

}  // namespace
}  // namespace kvshuttle
