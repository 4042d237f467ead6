// The staged backend on batches larger than its staging ring (4 pieces of 8 MiB), so windows
// wrap around the pieces: device ⇄ pinned host, byte-exact against the CPU reference, with the
// untouched host gaps still poisoned.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/gpu/gpu_test_util.h"

namespace kvshuttle::gputest {
namespace {

struct StagedParam {
  LayoutKind device_kind;
  LayoutKind host_kind;
  bool to_host;
  int64_t heads_on_device;  // < 8: the device side holds a head slice of the host blocks
};

std::string Name(const ::testing::TestParamInfo<StagedParam>& info) {
  const StagedParam& p = info.param;
  return absl::StrCat(PairName(p.to_host ? p.device_kind : p.host_kind,
                               p.to_host ? p.host_kind : p.device_kind),
                      p.to_host ? "_d2h" : "_h2d", "_heads", p.heads_on_device);
}

class StagedTest : public ::testing::TestWithParam<StagedParam> {};

TEST_P(StagedTest, WindowsWrapTheStagingRingByteExact) {
  const StagedParam& p = GetParam();
  // 1 MiB host blocks (nl 8, no 2, nt 32, nh 8, hd 128, bf16); 100 pairs = 13 windows of 8.
  const BlockShape host_shape{8, 2, 32, 8, 128};
  BlockShape device_shape = host_shape;
  device_shape.nh = p.heads_on_device;
  const LayoutDesc host{p.host_kind, host_shape, DType::kBF16};
  const LayoutDesc device{p.device_kind, device_shape, DType::kBF16};
  constexpr int64_t kPairs = 100;
  TransferSpec spec;
  spec.src = p.to_host ? device : host;
  spec.dst = p.to_host ? host : device;
  // The host side stays whole only when the device holds all heads; a slice makes the host
  // side partial, so the job must fall back to the kernel (still byte-exact).
  spec.heads = {0, 0, p.heads_on_device};
  ASSERT_OK_AND_ASSIGN(BlockStore src, BlockStore::Create(spec.src, kPairs,
                                                          p.to_host ? Placement::kDevice
                                                                    : Placement::kPinned));
  ASSERT_OK_AND_ASSIGN(BlockStore dst, BlockStore::Create(spec.dst, kPairs,
                                                          p.to_host ? Placement::kPinned
                                                                    : Placement::kDevice));
  ASSERT_OK(src.FillRandom(7));
  ASSERT_OK(dst.Fill(kPoison));
  const std::vector<BlockPair> pairs = ShuffledPairs(kPairs, kPairs, kPairs, 11);
  ASSERT_OK_AND_ASSIGN(const Backend used,
                       ConvertBoth(spec, src, dst, pairs, LaunchOptions{Backend::kStaged, 0}));
  EXPECT_EQ(used, p.heads_on_device == 8 ? Backend::kStaged : Backend::kKernel);
  EXPECT_TRUE(MatchesMirror(dst));
  EXPECT_TRUE(MatchesMirror(src));
}

std::vector<StagedParam> Params() {
  std::vector<StagedParam> out;
  for (LayoutKind host : {LayoutKind::kUniversal, LayoutKind::kOperationalNHD,
                          LayoutKind::kOperationalHND}) {
    for (LayoutKind device : {LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                              LayoutKind::kUniversal}) {
      for (bool to_host : {true, false}) out.push_back({device, host, to_host, 8});
    }
  }
  out.push_back({LayoutKind::kNHDStack, LayoutKind::kUniversal, true, 2});
  out.push_back({LayoutKind::kNHDStack, LayoutKind::kUniversal, false, 2});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Staged, StagedTest, ::testing::ValuesIn(Params()), Name);

}  // namespace
}  // namespace kvshuttle::gputest
