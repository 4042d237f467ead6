// TransferPlan::Build rejections (core/plan.h): address tables, null and overflowing addresses,
// and spec/pair errors passed through with their codes. Addresses here are never dereferenced.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/plan.h"
#include "core/reference.h"
#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;
using Code = absl::StatusCode;

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

// Seed shape, bf16: NHD stack (4 chunk addresses of 120 bytes per block) → universal (one
// 480-byte block per address).
TransferSpec SeedSpec() {
  TransferSpec spec;
  spec.src = {LayoutKind::kNHDStack, {.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5}, DType::kBF16};
  spec.dst = {LayoutKind::kUniversal, {.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5}, DType::kBF16};
  return spec;
}

// `entries` fake, distinct, 4 KiB-spaced addresses starting at `base`.
std::vector<uint64_t> FakeTable(int64_t entries, uint64_t base) {
  std::vector<uint64_t> t(entries);
  for (int64_t i = 0; i < entries; ++i) t[i] = base + 4096 * static_cast<uint64_t>(i);
  return t;
}

TEST(PlanBuildTest, AcceptsSeed) {
  const std::vector<uint64_t> src = FakeTable(8, 0x100000), dst = FakeTable(2, 0x900000);
  const std::vector<BlockPair> pairs = {{.src_block = 1, .dst_block = 0}};
  absl::StatusOr<TransferPlan> plan = TransferPlan::Build(SeedSpec(), src, dst, pairs);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_chunks(), 4);
}

TEST(PlanBuildTest, TableSizeNotMultipleOfAddressesPerBlock) {
  const std::vector<uint64_t> dst = FakeTable(2, 0x900000);
  EXPECT_TRUE(HasStatus(
      TransferPlan::Build(SeedSpec(), FakeTable(5, 0x100000), dst, {}), Code::kInvalidArgument,
      {"src_addresses: size 5 is not a multiple of 4 addresses per block (nhd)"}));
  TransferSpec spec = SeedSpec();
  spec.dst.kind = LayoutKind::kHNDStack;
  EXPECT_TRUE(
      HasStatus(TransferPlan::Build(spec, FakeTable(8, 0x100000), FakeTable(6, 0x900000), {}),
                Code::kInvalidArgument,
                {"dst_addresses: size 6 is not a multiple of 4 addresses per block (hnd)"}));
  // The reference converter rejects the same table with the same code.
  EXPECT_TRUE(HasStatus(ReferenceConvert(SeedSpec(), FakeTable(7, 0x100000), dst, {}, 1),
                        Code::kInvalidArgument, {"src_addresses: size 7", "multiple of 4"}));
}

TEST(PlanBuildTest, NullAddress) {
  std::vector<uint64_t> src = FakeTable(8, 0x100000);
  src[6] = 0;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, FakeTable(2, 0x900000), {}),
                        Code::kInvalidArgument, {"src_addresses[6]: null address"}));
  std::vector<uint64_t> dst = FakeTable(2, 0x900000);
  dst[1] = 0;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), FakeTable(8, 0x100000), dst, {}),
                        Code::kInvalidArgument, {"dst_addresses[1]: null address"}));
}

// TableCheck::kUsed (the daemon's registered tables): entries no pair uses are not looked at,
// and every entry a pair uses is checked with the same errors as kAll.
TEST(PlanBuildTest, UsedEntriesCheckLooksOnlyAtWhatThePairsUse) {
  std::vector<uint64_t> src = FakeTable(8, 0x100000);  // 2 NHD blocks of 4 chunks
  src[6] = 0;                                          // in block 1
  const std::vector<uint64_t> dst = FakeTable(2, 0x900000);
  const std::vector<BlockPair> block0 = {{0, 0, 0, 0}};
  const std::vector<BlockPair> block1 = {{1, 1, 0, 0}};
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, block0, {}, TableCheck::kAll),
                        Code::kInvalidArgument, {"src_addresses[6]: null address"}));
  absl::StatusOr<TransferPlan> plan =
      TransferPlan::Build(SeedSpec(), src, dst, block0, {}, TableCheck::kUsed);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_chunks(), 4);
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, block1, {}, TableCheck::kUsed),
                        Code::kInvalidArgument, {"src_addresses[6]: null address"}));
  std::vector<uint64_t> far = dst;
  far[1] = kU64Max - 479;  // a universal block spans 480 bytes
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), FakeTable(8, 0x100000), far, block1, {},
                                            TableCheck::kUsed),
                        Code::kInvalidArgument,
                        {"dst_addresses[1]: 18446744073709551136 + 480 bytes overflows 64 bits"}));
  // Same plan either way when every entry is good.
  absl::StatusOr<TransferPlan> all =
      TransferPlan::Build(SeedSpec(), FakeTable(8, 0x100000), dst, block1);
  absl::StatusOr<TransferPlan> used =
      TransferPlan::Build(SeedSpec(), FakeTable(8, 0x100000), dst, block1, {}, TableCheck::kUsed);
  ASSERT_TRUE(all.ok() && used.ok());
  ASSERT_EQ(all->num_chunks(), used->num_chunks());
  for (int64_t i = 0; i < all->num_chunks(); ++i) {
    EXPECT_EQ(all->ChunkAt(i).src, used->ChunkAt(i).src);
    EXPECT_EQ(all->ChunkAt(i).dst, used->ChunkAt(i).dst);
  }
}

TEST(PlanBuildTest, AddressExtentOverflowing64Bits) {
  const std::vector<uint64_t> src = FakeTable(8, 0x100000);
  // A universal block spans 480 bytes: the last accepted base is 2^64 - 1 - 480.
  std::vector<uint64_t> dst = {0x900000, kU64Max - 480};
  EXPECT_TRUE(TransferPlan::Build(SeedSpec(), src, dst, {}).ok());
  dst[1] = kU64Max - 479;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, {}), Code::kInvalidArgument,
                        {"dst_addresses[1]: 18446744073709551136 + 480 bytes overflows 64 bits"}));
  dst[1] = kU64Max;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, {}), Code::kInvalidArgument,
                        {"dst_addresses[1]: 18446744073709551615 + 480"}));
  // A stack chunk spans 120 bytes.
  std::vector<uint64_t> src2 = src;
  src2[3] = kU64Max - 119;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src2, FakeTable(2, 0x900000), {}),
                        Code::kInvalidArgument, {"src_addresses[3]:", "+ 120 bytes overflows"}));
  src2[3] = kU64Max - 120;
  EXPECT_TRUE(TransferPlan::Build(SeedSpec(), src2, FakeTable(2, 0x900000), {}).ok());
}

TEST(PlanBuildTest, SpecErrorsPassThroughWithTheirCodes) {
  const std::vector<uint64_t> src = FakeTable(8, 0x100000), dst = FakeTable(2, 0x900000);
  TransferSpec spec = SeedSpec();
  spec.src.shape.hd = 0;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(spec, src, dst, {}), Code::kInvalidArgument,
                        {"src.shape.hd: 0"}));
  spec = SeedSpec();
  spec.heads.count = 4;
  EXPECT_TRUE(
      HasStatus(TransferPlan::Build(spec, src, dst, {}), Code::kOutOfRange, {"heads.count: 4"}));
  spec = SeedSpec();
  spec.layers.dst_offset = kI64Max;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(spec, src, dst, {}), Code::kOutOfRange,
                        {"layers.dst_offset: 9223372036854775807"}));
  spec = SeedSpec();
  spec.token_count = kI64Max;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(spec, src, dst, {}), Code::kOutOfRange,
                        {"token_count: 9223372036854775807"}));
}

TEST(PlanBuildTest, PairErrorsNameTheirIndex) {
  const std::vector<uint64_t> src = FakeTable(8, 0x100000), dst = FakeTable(2, 0x900000);
  std::vector<BlockPair> pairs(4);  // 2 source blocks, 2 destination blocks
  pairs[3].dst_block = 2;
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, pairs), Code::kOutOfRange,
                        {"pairs[3].dst_block: 2 is outside [0, 1]"}));
  pairs[3] = {.src_block = -1};
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, pairs), Code::kOutOfRange,
                        {"pairs[3].src_block: -1"}));
  pairs[3] = {.src_block = kI64Max};
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, pairs), Code::kOutOfRange,
                        {"pairs[3].src_block: 9223372036854775807"}));
  pairs[3] = {.src_token_offset = kI64Max};
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, pairs), Code::kOutOfRange,
                        {"pairs[3].src_token_offset: 9223372036854775807"}));
  pairs[3] = {.dst_token_offset = std::numeric_limits<int64_t>::min()};
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), src, dst, pairs), Code::kOutOfRange,
                        {"pairs[3].dst_token_offset: -9223372036854775808"}));
  // An empty table has no blocks at all.
  EXPECT_TRUE(HasStatus(TransferPlan::Build(SeedSpec(), {}, dst, pairs), Code::kOutOfRange,
                        {"pairs[0].src_block: 0 is outside [0, -1]"}));
}

TEST(PlanBuildTest, EmptyTablesAndPairsGiveAnEmptyPlan) {
  absl::StatusOr<TransferPlan> plan = TransferPlan::Build(SeedSpec(), {}, {}, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->empty());
  EXPECT_EQ(plan->num_pairs(), 0);
  EXPECT_EQ(plan->bytes(), 0);
  EXPECT_TRUE(plan->Runs().empty());
}

// A spec whose layers x outer chunks per pair exceed kMaxPlanChunks is refused with a Status
// (it used to throw std::bad_alloc from the chunk table reservation).
TEST(PlanBuildTest, TooManyChunkCopiesIsResourceExhausted) {
  TransferSpec spec;
  const BlockShape huge{.nl = int64_t{1} << 24, .no = int64_t{1} << 24, .nt = 1, .nh = 1, .hd = 1};
  spec.src = {LayoutKind::kUniversal, huge, DType::kUInt8};
  spec.dst = spec.src;
  const std::vector<uint64_t> src = {0x1000}, dst = {0x2000};
  const std::vector<BlockPair> pairs = {{.src_block = 0, .dst_block = 0}};
  EXPECT_TRUE(HasStatus(TransferPlan::Build(spec, src, dst, pairs).status(),
                        Code::kResourceExhausted, {"pairs: 1 pairs", "16777216 chunk copies"}));
}

}  // namespace
}  // namespace kvshuttle
