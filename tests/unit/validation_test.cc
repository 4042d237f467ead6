// Pure validation (core/transfer.h): every error path of ValidateLayout, ResolveSpec and
// ValidatePair with its exact code, field name and value; and the resolution of zero counts.
#include <cstdint>
#include <limits>
#include <string>

#include "core/transfer.h"
#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;
using Code = absl::StatusCode;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

// The seed's shape (nh 3, nl 2, no 2, nt 4, hd 5), bf16, NHD stack → universal, all defaults.
TransferSpec SeedSpec() {
  TransferSpec spec;
  spec.src = {LayoutKind::kNHDStack, {.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5}, DType::kBF16};
  spec.dst = {LayoutKind::kUniversal, {.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5}, DType::kBF16};
  return spec;
}

int64_t& Dim(BlockShape& s, const std::string& name) {
  if (name == "nl") return s.nl;
  if (name == "no") return s.no;
  if (name == "nt") return s.nt;
  if (name == "nh") return s.nh;
  return s.hd;
}

TEST(ValidateLayoutTest, SeedSidesAreValid) {
  EXPECT_TRUE(ValidateLayout(SeedSpec().src, "src").ok());
  EXPECT_TRUE(ValidateLayout(SeedSpec().dst, "dst").ok());
}

TEST(ValidateLayoutTest, EveryDimOutsideRangeNamesSideFieldAndValue) {
  for (const char* side : {"src", "dst"}) {
    for (const char* dim : {"nl", "no", "nt", "nh", "hd"}) {
      for (int64_t bad : {int64_t{0}, int64_t{-3}, kMaxDim + 1, kI64Max, kI64Min}) {
        SCOPED_TRACE(::testing::Message() << side << "." << dim << " = " << bad);
        TransferSpec spec = SeedSpec();
        LayoutDesc& desc = std::string(side) == "src" ? spec.src : spec.dst;
        Dim(desc.shape, dim) = bad;
        const std::string field = std::string(side) + ".shape." + dim;
        EXPECT_TRUE(HasStatus(ValidateLayout(desc, side), Code::kInvalidArgument,
                              {field + ": " + std::to_string(bad) + " is outside [1, 16777216]"}));
        EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kInvalidArgument, {field}));
      }
    }
  }
}

TEST(ValidateLayoutTest, MaxDimIsAccepted) {
  LayoutDesc desc{
      LayoutKind::kUniversal, {.nl = 1, .no = 1, .nt = 1, .nh = kMaxDim, .hd = 1}, DType::kBF16};
  EXPECT_TRUE(ValidateLayout(desc, "src").ok());
}

TEST(ValidateLayoutTest, KindAndDTypeOutOfEnum) {
  LayoutDesc desc = SeedSpec().src;
  desc.kind = static_cast<LayoutKind>(5);
  EXPECT_TRUE(HasStatus(ValidateLayout(desc, "src"), Code::kInvalidArgument,
                        {"src.kind: 5 is outside [0, 4]"}));
  desc = SeedSpec().dst;
  desc.dtype = static_cast<DType>(8);
  EXPECT_TRUE(HasStatus(ValidateLayout(desc, "dst"), Code::kInvalidArgument,
                        {"dst.dtype: 8 is outside [0, 7]"}));
}

TEST(ValidateLayoutTest, ChunkBytesLimit) {
  // 693 * 4681 * 331 * 2 = 2^31 - 2: the largest chunk these factors reach, accepted.
  LayoutDesc ok{
      LayoutKind::kHNDStack, {.nl = 1, .no = 2, .nt = 693, .nh = 4681, .hd = 331}, DType::kF16};
  EXPECT_TRUE(ValidateLayout(ok, "src").ok());
  // 2^15 * 2^15 * 1 * 2 = 2^31: one over kMaxChunkBytes.
  LayoutDesc over{
      LayoutKind::kNHDStack, {.nl = 1, .no = 1, .nt = 32768, .nh = 32768, .hd = 1}, DType::kF16};
  EXPECT_TRUE(
      HasStatus(ValidateLayout(over, "src"), Code::kInvalidArgument,
                {"src.shape: chunk bytes nt*nh*hd*es = 32768*32768*1*2 exceeds 2147483647"}));
  // Every dimension at kMaxDim: the 64-bit product itself overflows.
  LayoutDesc huge{LayoutKind::kUniversal,
                  {.nl = kMaxDim, .no = kMaxDim, .nt = kMaxDim, .nh = kMaxDim, .hd = kMaxDim},
                  DType::kF64};
  EXPECT_TRUE(HasStatus(ValidateLayout(huge, "dst"), Code::kInvalidArgument,
                        {"dst.shape: chunk bytes", "16777216*16777216*16777216*8", "exceeds"}));
}

TEST(ValidateLayoutTest, BlockBytesLimit) {
  // chunk 2^30 bytes; nl*no = 2^18 gives exactly 2^48 (accepted), one more layer exceeds it.
  LayoutDesc desc{LayoutKind::kOperationalNHD,
                  {.nl = 131072, .no = 2, .nt = 1024, .nh = 1024, .hd = 512},
                  DType::kBF16};
  EXPECT_TRUE(ValidateLayout(desc, "src").ok());
  desc.shape.nl = 131073;
  EXPECT_TRUE(HasStatus(ValidateLayout(desc, "src"), Code::kInvalidArgument,
                        {"src.shape: block bytes nl*no*1073741824 (nl 131073, no 2) exceeds "
                         "281474976710656"}));
  // chunk near 2^31 and nl*no = 2^48: the 64-bit product overflows.
  desc.shape = {.nl = kMaxDim, .no = kMaxDim, .nt = 693, .nh = 4681, .hd = 331};
  EXPECT_TRUE(HasStatus(ValidateLayout(desc, "dst"), Code::kInvalidArgument,
                        {"dst.shape: block bytes", "(nl 16777216, no 16777216)"}));
}

TEST(ResolveSpecTest, SrcIsCheckedBeforeDst) {
  TransferSpec spec = SeedSpec();
  spec.src.shape.nh = 0;
  spec.dst.shape.nt = 0;
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kInvalidArgument, {"src.shape.nh: 0"}));
}

TEST(ResolveSpecTest, MismatchedDTypeHdNo) {
  TransferSpec spec = SeedSpec();
  spec.dst.dtype = DType::kF32;
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kInvalidArgument,
                        {"dst.dtype: f32 does not match src.dtype bf16"}));
  spec = SeedSpec();
  spec.dst.dtype = DType::kF16;  // same size, still a mismatch
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kInvalidArgument, {"dst.dtype: f16"}));
  spec = SeedSpec();
  spec.dst.shape.hd = 6;
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kInvalidArgument,
                        {"dst.shape.hd: 6 does not match src.shape.hd 5"}));
  spec = SeedSpec();
  spec.dst.shape.no = 1;
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kInvalidArgument,
                        {"dst.shape.no: 1 does not match src.shape.no 2"}));
}

TEST(ResolveSpecTest, ZeroCountsResolveToAllFromOffset) {
  TransferSpec spec = SeedSpec();
  spec.src.shape.nh = 8;
  spec.dst.shape.nh = 4;
  spec.heads = {.src_offset = 4, .dst_offset = 0, .count = 0};
  spec.src.shape.nl = 5;
  spec.dst.shape.nl = 4;
  spec.layers = {.src_offset = 2, .dst_offset = 1, .count = 0};
  spec.src.shape.nt = 16;
  spec.dst.shape.nt = 64;
  absl::StatusOr<TransferSpec> r = ResolveSpec(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->heads, (AxisRange{4, 0, 4}));
  EXPECT_EQ(r->layers, (AxisRange{2, 1, 3}));
  EXPECT_EQ(r->token_count, 16);
  EXPECT_EQ(r->src, spec.src);
  EXPECT_EQ(r->dst, spec.dst);

  const absl::StatusOr<TransferSpec> seed = ResolveSpec(SeedSpec());
  ASSERT_TRUE(seed.ok()) << seed.status();
  EXPECT_EQ(seed->heads, (AxisRange{0, 0, 3}));
  EXPECT_EQ(seed->layers, (AxisRange{0, 0, 2}));
  EXPECT_EQ(seed->token_count, 4);
}

TEST(ResolveSpecTest, ExplicitCountsAreKept) {
  TransferSpec spec = SeedSpec();
  spec.src.shape.nh = 8;
  spec.dst.shape.nh = 8;
  spec.heads = {.src_offset = 2, .dst_offset = 4, .count = 3};
  spec.token_count = 2;
  absl::StatusOr<TransferSpec> r = ResolveSpec(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->heads, (AxisRange{2, 4, 3}));
  EXPECT_EQ(r->token_count, 2);
}

// Each axis (heads over nh, layers over nl) with src extent 3 and dst extent 3.
class AxisRangeTest : public ::testing::TestWithParam<std::string> {
 protected:
  absl::StatusOr<TransferSpec> Resolve(AxisRange range, int64_t src_extent = 3,
                                       int64_t dst_extent = 3) {
    TransferSpec spec = SeedSpec();
    if (GetParam() == "heads") {
      spec.src.shape.nh = src_extent;
      spec.dst.shape.nh = dst_extent;
      spec.heads = range;
    } else {
      spec.src.shape.nl = src_extent;
      spec.dst.shape.nl = dst_extent;
      spec.layers = range;
    }
    return ResolveSpec(spec);
  }
  std::string Field(const std::string& f) { return GetParam() + "." + f; }
  std::string Dim() { return GetParam() == "heads" ? "nh" : "nl"; }
};

TEST_P(AxisRangeTest, OffsetsOutsideEitherSide) {
  for (int64_t bad : {int64_t{-1}, int64_t{3}, kI64Max, kI64Min}) {
    SCOPED_TRACE(bad);
    const std::string v = std::to_string(bad);
    EXPECT_TRUE(HasStatus(
        Resolve({.src_offset = bad}), Code::kOutOfRange,
        {Field("src_offset: ") + v + " is outside [0, 2] (src.shape." + Dim() + " = 3)"}));
    EXPECT_TRUE(HasStatus(
        Resolve({.dst_offset = bad}), Code::kOutOfRange,
        {Field("dst_offset: ") + v + " is outside [0, 2] (dst.shape." + Dim() + " = 3)"}));
  }
}

TEST_P(AxisRangeTest, NegativeCountIsInvalidArgument) {
  for (int64_t bad : {int64_t{-2}, kI64Min}) {
    EXPECT_TRUE(HasStatus(Resolve({.count = bad}), Code::kInvalidArgument,
                          {Field("count: ") + std::to_string(bad) + " is negative"}));
  }
}

TEST_P(AxisRangeTest, CountLeavingEitherSide) {
  EXPECT_TRUE(HasStatus(Resolve({.src_offset = 1, .count = 3}), Code::kOutOfRange,
                        {Field("count: 3 with src_offset 1 exceeds src.shape.") + Dim() + " = 3"}));
  EXPECT_TRUE(HasStatus(Resolve({.src_offset = 0, .dst_offset = 2, .count = 2}), Code::kOutOfRange,
                        {Field("count: 2 with dst_offset 2 exceeds dst.shape.") + Dim() + " = 3"}));
  EXPECT_TRUE(HasStatus(Resolve({.count = kI64Max}), Code::kOutOfRange,
                        {Field("count: 9223372036854775807")}));
  // count 0 means all 8 source items, which do not fit the 2 on the destination.
  EXPECT_TRUE(HasStatus(Resolve({.count = 0}, 8, 2), Code::kOutOfRange,
                        {Field("count: 8 with dst_offset 0 exceeds dst.shape.") + Dim() + " = 2"}));
  // Exactly filling both sides is fine; a TP rank's slice of 2 of 8 is fine.
  EXPECT_TRUE(Resolve({.src_offset = 1, .dst_offset = 1, .count = 2}).ok());
  absl::StatusOr<TransferSpec> r = Resolve({.src_offset = 0, .dst_offset = 6, .count = 0}, 2, 8);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(GetParam() == "heads" ? r->heads : r->layers, (AxisRange{0, 6, 2}));
}

INSTANTIATE_TEST_SUITE_P(Axes, AxisRangeTest, ::testing::Values("heads", "layers"));

TEST(ResolveSpecTest, TokenCount) {
  TransferSpec spec = SeedSpec();
  spec.token_count = -1;
  EXPECT_TRUE(
      HasStatus(ResolveSpec(spec), Code::kInvalidArgument, {"token_count: -1 is negative"}));
  spec.token_count = kI64Min;
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kInvalidArgument, {"token_count: "}));
  spec.token_count = 5;
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kOutOfRange,
                        {"token_count: 5 is outside [1, 4] (min of src.shape.nt 4 and "
                         "dst.shape.nt 4)"}));
  spec.token_count = kI64Max;
  EXPECT_TRUE(HasStatus(ResolveSpec(spec), Code::kOutOfRange,
                        {"token_count: 9223372036854775807 is outside [1, 4]"}));
  // 0 = all source tokens: 64 do not fit a 16-token destination block.
  spec = SeedSpec();
  spec.src.shape.nt = 64;
  spec.dst.shape.nt = 16;
  EXPECT_TRUE(
      HasStatus(ResolveSpec(spec), Code::kOutOfRange, {"token_count: 64 is outside [1, 16]"}));
  spec.token_count = 16;
  EXPECT_EQ(ResolveSpec(spec).value().token_count, 16);
}

class ValidatePairTest : public ::testing::Test {
 protected:
  // Resolved: src nt 16, dst nt 64, 16 tokens per pair; 3 source and 2 destination blocks.
  void SetUp() override {
    TransferSpec spec = SeedSpec();
    spec.src.shape.nt = 16;
    spec.dst.shape.nt = 64;
    resolved_ = ResolveSpec(spec).value();
  }
  absl::Status Check(BlockPair p, int64_t index = 3) {
    return ValidatePair(resolved_, p, index, /*src_num_blocks=*/3, /*dst_num_blocks=*/2);
  }
  TransferSpec resolved_;
};

TEST_F(ValidatePairTest, ValidPairs) {
  EXPECT_TRUE(Check({.src_block = 2, .dst_block = 1, .dst_token_offset = 48}).ok());
  EXPECT_TRUE(Check({.src_block = 0, .dst_block = 0}).ok());
}

TEST_F(ValidatePairTest, BlockIdsOutOfRange) {
  for (int64_t bad : {int64_t{-1}, int64_t{3}, kI64Max, kI64Min}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(HasStatus(Check({.src_block = bad}), Code::kOutOfRange,
                          {"pairs[3].src_block: " + std::to_string(bad) + " is outside [0, 2]"}));
  }
  for (int64_t bad : {int64_t{-1}, int64_t{2}, kI64Max, kI64Min}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(HasStatus(Check({.dst_block = bad}, 7), Code::kOutOfRange,
                          {"pairs[7].dst_block: " + std::to_string(bad) + " is outside [0, 1]"}));
  }
  EXPECT_TRUE(HasStatus(ValidatePair(resolved_, {}, 0, 0, 2), Code::kOutOfRange,
                        {"pairs[0].src_block: 0 is outside [0, -1]"}));
}

TEST_F(ValidatePairTest, TokenOffsetsOutOfRange) {
  for (int64_t bad : {int64_t{-1}, int64_t{1}, kI64Max, kI64Min}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(HasStatus(Check({.src_token_offset = bad}), Code::kOutOfRange,
                          {"pairs[3].src_token_offset: " + std::to_string(bad) +
                           " is outside [0, 0] (src.shape.nt 16, token_count 16)"}));
  }
  for (int64_t bad : {int64_t{-1}, int64_t{49}, kI64Max, kI64Min}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(HasStatus(Check({.dst_token_offset = bad}), Code::kOutOfRange,
                          {"pairs[3].dst_token_offset: " + std::to_string(bad) +
                           " is outside [0, 48] (dst.shape.nt 64, token_count 16)"}));
  }
}

}  // namespace
}  // namespace kvshuttle
