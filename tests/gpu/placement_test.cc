// Memory placement (device / pinned host on either side) × every backend, and misaligned
// buffers, byte-exact against the CPU reference.
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/gpu/gpu_test_util.h"

namespace kvshuttle::gputest {
namespace {

constexpr Placement kPlacements[] = {Placement::kDevice, Placement::kPinned};

// Every backend, the kernel also with an SM cap of 1 and 4.
std::vector<BackendOption> BackendsAndSmCaps() {
  std::vector<BackendOption> options = AllBackends();
  options.push_back({Backend::kKernel, 1});
  options.push_back({Backend::kKernel, 4});
  return options;
}

struct PlacementParam {
  const char* shape_name;
  LayoutDesc src;
  LayoutDesc dst;
  int64_t num_blocks;
  Placement src_placement;
  Placement dst_placement;
  BackendOption backend;
};

void AddPlacementParams(const char* shape_name, const BlockShape& shape, DType dtype,
                        int64_t num_blocks,
                        const std::vector<std::pair<LayoutKind, LayoutKind>>& pairs,
                        std::vector<PlacementParam>* params) {
  for (const auto& [src, dst] : pairs) {
    for (Placement sp : kPlacements) {
      for (Placement dp : kPlacements) {
        for (const BackendOption& backend : BackendsAndSmCaps()) {
          params->push_back(PlacementParam{shape_name, {src, shape, dtype}, {dst, shape, dtype},
                                           num_blocks, sp, dp, backend});
        }
      }
    }
  }
}

std::vector<PlacementParam> PlacementParams() {
  std::vector<PlacementParam> params;
  // Every pair with every placement and backend on the seed's small shape.
  AddPlacementParams("seed", {2, 2, 4, 3, 5}, DType::kF16, 3, AllLayoutPairs(), &params);
  // A representative subset on bigger shapes: odd 92-byte rows, and Llama-like rows.
  const std::vector<std::pair<LayoutKind, LayoutKind>> subset = {
      {LayoutKind::kNHDStack, LayoutKind::kUniversal},
      {LayoutKind::kUniversal, LayoutKind::kHNDStack},
      {LayoutKind::kHNDStack, LayoutKind::kNHDStack},
      {LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND},
      {LayoutKind::kUniversal, LayoutKind::kOperationalNHD},
      {LayoutKind::kNHDStack, LayoutKind::kNHDStack},
  };
  AddPlacementParams("hd46", {2, 2, 16, 4, 46}, DType::kBF16, 8, subset, &params);
  AddPlacementParams("llama", {4, 2, 16, 8, 128}, DType::kBF16, 4, subset, &params);
  return params;
}

std::string Name(const PlacementParam& p) {
  return absl::StrCat(PairName(p.src.kind, p.dst.kind), "_", p.shape_name, "_",
                      PlacementName(p.src_placement), "_to_", PlacementName(p.dst_placement), "_",
                      BackendOptionName(p.backend));
}
void PrintTo(const PlacementParam& p, std::ostream* os) { *os << Name(p); }

class PlacementTest : public ::testing::TestWithParam<PlacementParam> {};

TEST_P(PlacementTest, ByteExactAgainstReference) {
  const PlacementParam& p = GetParam();
  ConversionCase c;
  c.spec.src = p.src;
  c.spec.dst = p.dst;
  c.src_blocks = p.num_blocks;
  c.dst_blocks = p.num_blocks + 1;
  c.pairs = ShuffledPairs(p.num_blocks, c.src_blocks, c.dst_blocks, /*seed=*/11);
  c.src_placement = p.src_placement;
  c.dst_placement = p.dst_placement;
  c.options = LaunchOptions{p.backend.backend, p.backend.max_sms};
  c.seed = 2000 + static_cast<uint64_t>(p.src.kind) * 10 + static_cast<uint64_t>(p.dst.kind);
  CheckConversion(c);
}

INSTANTIATE_TEST_SUITE_P(All, PlacementTest, ::testing::ValuesIn(PlacementParams()),
                         [](const auto& info) { return Name(info.param); });

// Device buffers whose every piece starts `misalign` bytes past a 16-byte boundary: the kernel
// has to fall back to narrower accesses and still be exact.
struct MisalignParam {
  LayoutKind src;
  LayoutKind dst;
  int src_misalign;
  int dst_misalign;
};

std::vector<MisalignParam> MisalignParams() {
  const std::pair<int, int> offsets[] = {{1, 1}, {2, 2}, {4, 4}, {8, 8},
                                         {1, 0}, {0, 2}, {8, 4}, {4, 1}};
  std::vector<MisalignParam> params;
  for (const auto& [src, dst] : AllLayoutPairs()) {
    for (const auto& [so, dO] : offsets) params.push_back(MisalignParam{src, dst, so, dO});
  }
  return params;
}

std::string Name(const MisalignParam& p) {
  return absl::StrCat(PairName(p.src, p.dst), "_src", p.src_misalign, "_dst", p.dst_misalign);
}
void PrintTo(const MisalignParam& p, std::ostream* os) { *os << Name(p); }

class MisalignedTest : public ::testing::TestWithParam<MisalignParam> {};

TEST_P(MisalignedTest, KernelByteExact) {
  const MisalignParam& p = GetParam();
  const BlockShape shape{2, 2, 8, 4, 64};  // 128-byte rows: 16-byte vectors when aligned
  ConversionCase c;
  c.spec.src = LayoutDesc{p.src, shape, DType::kF16};
  c.spec.dst = LayoutDesc{p.dst, shape, DType::kF16};
  c.src_blocks = 3;
  c.dst_blocks = 4;
  c.pairs = ShuffledPairs(3, c.src_blocks, c.dst_blocks, /*seed=*/13);
  c.src_misalign = p.src_misalign;
  c.dst_misalign = p.dst_misalign;
  c.options = LaunchOptions{Backend::kKernel, 0};
  c.seed = 3000 + static_cast<uint64_t>(p.src_misalign) * 16 + p.dst_misalign;
  CheckConversion(c);
}

INSTANTIATE_TEST_SUITE_P(AllPairs, MisalignedTest, ::testing::ValuesIn(MisalignParams()),
                         [](const auto& info) { return Name(info.param); });

}  // namespace
}  // namespace kvshuttle::gputest
