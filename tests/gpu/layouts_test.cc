// Every ordered layout pair × element sizes × awkward shapes, with the SM kernel on device
// memory, byte-exact against the CPU reference.
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

}  // namespace
}  // namespace kvshuttle::gputest
