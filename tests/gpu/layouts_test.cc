// Every ordered layout pair × element sizes × awkward shapes, with the SM kernel on device
// memory, byte-exact against the CPU reference; and every pair through strided plans (the
// daemon's block sets and pools) on each of the kernel's table paths.
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/gpu/gpu_test_util.h"

namespace kvshuttle::gputest {
namespace {

struct ShapeCase {
  const char* name;
  BlockShape shape;  // {nl, no, nt, nh, hd}
  int64_t num_blocks;
  std::vector<DType> dtypes;
};

std::vector<ShapeCase> Shapes() {
  return {
      // The seed's shape: nh 3, nl 2, no 2, nt 4, hd 5; every element size.
      {"seed", {2, 2, 4, 3, 5}, 3, {DType::kUInt8, DType::kF16, DType::kF32, DType::kF64}},
      // MLA latent cache: no 1, nh 1, hd 576.
      {"mla", {4, 1, 16, 1, 576}, 3, {DType::kBF16, DType::kF8E4M3}},
      // 92-byte rows.
      {"hd46", {2, 2, 16, 4, 46}, 3, {DType::kBF16, DType::kF8E4M3}},
      // Narrow rows in chunks too big for the shared-memory transpose (over 48 KiB): the
      // row-at-a-time kernel.
      {"hd46wide", {1, 2, 64, 16, 46}, 2, {DType::kBF16}},
      // 584-byte rows, two ways.
      {"hd292", {2, 2, 8, 2, 292}, 3, {DType::kBF16}},
      {"hd73", {2, 2, 8, 2, 73}, 3, {DType::kF64}},
      // One token per block.
      {"nt1", {3, 2, 1, 4, 8}, 4, {DType::kF32, DType::kUInt8}},
      // Many blocks in one batch.
      {"nb256", {2, 2, 16, 2, 64}, 256, {DType::kF16}},
  };
}

struct LayoutParam {
  LayoutKind src;
  LayoutKind dst;
  ShapeCase shape;
  DType dtype;
};

std::vector<LayoutParam> AllParams() {
  std::vector<LayoutParam> params;
  for (const ShapeCase& shape : Shapes()) {
    for (DType dtype : shape.dtypes) {
      for (const auto& [src, dst] : AllLayoutPairs()) {
        params.push_back(LayoutParam{src, dst, shape, dtype});
      }
    }
  }
  return params;
}

std::string Name(const LayoutParam& p) {
  return absl::StrCat(PairName(p.src, p.dst), "_", p.shape.name, "_", DTypeName(p.dtype));
}
void PrintTo(const LayoutParam& p, std::ostream* os) { *os << Name(p); }

class LayoutPairTest : public ::testing::TestWithParam<LayoutParam> {};

TEST_P(LayoutPairTest, ByteExactAgainstReference) {
  const LayoutParam& p = GetParam();
  ConversionCase c;
  c.spec.src = LayoutDesc{p.src, p.shape.shape, p.dtype};
  c.spec.dst = LayoutDesc{p.dst, p.shape.shape, p.dtype};
  c.src_blocks = p.shape.num_blocks;
  // One destination block more than the source has: it must stay poison.
  c.dst_blocks = p.shape.num_blocks + 1;
  c.pairs = ShuffledPairs(p.shape.num_blocks, c.src_blocks, c.dst_blocks, /*seed=*/7);
  c.options = LaunchOptions{Backend::kKernel, 0};
  c.seed = 1000 + static_cast<uint64_t>(p.src) * 10 + static_cast<uint64_t>(p.dst);
  CheckConversion(c);
}

INSTANTIATE_TEST_SUITE_P(AllPairs, LayoutPairTest, ::testing::ValuesIn(AllParams()),
                         [](const auto& info) { return Name(info.param); });

// Strided plans (TransferPlan::BuildStrided: one outer entry per pair, one step per layer and
// outer chunk) on every path of the kernel's factored table: all chunks in the parameters
// (≤ 256), outer entries in the parameters (≤ 16 pairs), an outer table of one entry per pair
// in pinned memory, and more steps than the parameters hold (materialized) — on device memory
// and with a pinned-host destination (kernel and staged backends).
struct StridedCase {
  const char* name;
  BlockShape shape;  // {nl, no, nt, nh, hd}
  int64_t pairs;
};

struct StridedParam {
  LayoutKind src;
  LayoutKind dst;
  StridedCase c;
  BackendOption backend;
  Placement dst_placement;
};

std::string StridedName(const StridedParam& p) {
  return absl::StrCat(PairName(p.src, p.dst), "_", p.c.name, "_",
                      BackendOptionName(p.backend), "_", PlacementName(p.dst_placement));
}
void PrintTo(const StridedParam& p, std::ostream* os) { *os << StridedName(p); }

std::vector<StridedParam> StridedParams() {
  const std::vector<StridedCase> cases = {
      {"inline_all", {4, 2, 4, 3, 8}, 3},           // 24 chunks
      {"outer_table", {4, 2, 4, 3, 8}, 40},         // 320 chunks, 40 outer entries
      {"inline_outer", {32, 2, 2, 2, 8}, 8},        // 512 chunks, 8 outer entries
      {"many_steps", {160, 2, 2, 2, 8}, 3},         // 320 steps: materialized table
  };
  std::vector<StridedParam> params;
  for (const StridedCase& c : cases) {
    for (const auto& [src, dst] : AllLayoutPairs()) {
      params.push_back({src, dst, c, {Backend::kKernel, 0}, Placement::kDevice});
      params.push_back({src, dst, c, {Backend::kAuto, 0}, Placement::kDevice});
      params.push_back({src, dst, c, {Backend::kKernel, 0}, Placement::kPinned});
      params.push_back({src, dst, c, {Backend::kStaged, 0}, Placement::kPinned});
    }
  }
  return params;
}

class StridedPlanTest : public ::testing::TestWithParam<StridedParam> {};

TEST_P(StridedPlanTest, ByteExactAgainstReference) {
  const StridedParam& p = GetParam();
  ConversionCase c;
  c.spec.src = LayoutDesc{p.src, p.c.shape, DType::kBF16};
  c.spec.dst = LayoutDesc{p.dst, p.c.shape, DType::kBF16};
  c.src_blocks = p.c.pairs + 1;
  c.dst_blocks = p.c.pairs + 2;
  c.pairs = ShuffledPairs(p.c.pairs, c.src_blocks, c.dst_blocks, /*seed=*/11);
  c.dst_placement = p.dst_placement;
  c.options = LaunchOptions{p.backend.backend, p.backend.max_sms};
  c.strided = true;
  c.seed = 2000 + static_cast<uint64_t>(p.src) * 10 + static_cast<uint64_t>(p.dst);
  CheckConversion(c);
}

INSTANTIATE_TEST_SUITE_P(AllPairs, StridedPlanTest, ::testing::ValuesIn(StridedParams()),
                         [](const auto& info) { return StridedName(info.param); });

}  // namespace
}  // namespace kvshuttle::gputest
