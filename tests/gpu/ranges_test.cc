// Head, layer and token ranges on every layout pair and backend; tensor-parallel head slices
// written into and read back from a universal store; a lossless round trip through every
// layout. All byte-exact against the CPU reference.
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/gpu/gpu_test_util.h"

namespace kvshuttle::gputest {
namespace {

struct RangeScenario {
  const char* name;
  BlockShape src_shape;  // {nl, no, nt, nh, hd}
  BlockShape dst_shape;
  AxisRange heads;
  AxisRange layers;
  int64_t token_count;
  int64_t src_blocks;
  int64_t dst_blocks;
  std::vector<BlockPair> pairs;  // {src_block, dst_block, src_token_offset, dst_token_offset}
};

std::vector<RangeScenario> Scenarios() {
  return {
      // 2 of 8 source heads (from head 2) into a 2-head destination.
      {"heads_8to2", {2, 2, 4, 8, 24}, {2, 2, 4, 2, 24}, {2, 0, 2}, {}, 0, 3, 4,
       ShuffledPairs(3, 3, 4, 21)},
      // A 2-head source into heads 5..6 of an 8-head destination.
      {"heads_2into8", {2, 2, 4, 2, 24}, {2, 2, 4, 8, 24}, {0, 5, 2}, {}, 0, 3, 4,
       ShuffledPairs(3, 3, 4, 22)},
      // Layers 1..2 of a 4-layer source into a 2-layer destination.
      {"layers_4to2", {4, 2, 4, 2, 24}, {2, 2, 4, 2, 24}, {}, {1, 0, 2}, 0, 3, 4,
       ShuffledPairs(3, 3, 4, 23)},
      // Four 16-token blocks assembled into 64-token block 1 (block 0 untouched).
      {"tokens_16x4_to_64", {2, 2, 16, 2, 24}, {2, 2, 64, 2, 24}, {}, {}, 0, 4, 2,
       {{2, 1, 0, 32}, {0, 1, 0, 0}, {3, 1, 0, 48}, {1, 1, 0, 16}}},
      // 64-token block 1 split into four 16-token blocks (block 2 untouched).
      {"tokens_64_to_16x4", {2, 2, 64, 2, 24}, {2, 2, 16, 2, 24}, {}, {}, 16, 2, 5,
       {{1, 3, 0, 0}, {1, 0, 16, 0}, {1, 4, 32, 0}, {1, 1, 48, 0}}},
      // Heads, layers and tokens at once, with offsets on both sides.
      {"mixed", {3, 2, 8, 4, 24}, {4, 2, 12, 6, 24}, {1, 3, 2}, {2, 1, 1}, 5, 2, 3,
       {{0, 1, 3, 7}, {1, 0, 0, 0}}},
  };
}

struct RangeParam {
  RangeScenario scenario;
  LayoutKind src;
  LayoutKind dst;
  BackendOption backend;
};

std::vector<RangeParam> RangeParams() {
  std::vector<RangeParam> params;
  for (const RangeScenario& scenario : Scenarios()) {
    for (const auto& [src, dst] : AllLayoutPairs()) {
      for (const BackendOption& backend : AllBackends()) {
        params.push_back(RangeParam{scenario, src, dst, backend});
      }
    }
  }
  return params;
}

std::string Name(const RangeParam& p) {
  return absl::StrCat(p.scenario.name, "_", PairName(p.src, p.dst), "_",
                      BackendOptionName(p.backend));
}
void PrintTo(const RangeParam& p, std::ostream* os) { *os << Name(p); }

class RangeTest : public ::testing::TestWithParam<RangeParam> {};

TEST_P(RangeTest, ByteExactAgainstReference) {
  const RangeParam& p = GetParam();
  const RangeScenario& s = p.scenario;
  ConversionCase c;
  c.spec.src = LayoutDesc{p.src, s.src_shape, DType::kF16};
  c.spec.dst = LayoutDesc{p.dst, s.dst_shape, DType::kF16};
  c.spec.heads = s.heads;
  c.spec.layers = s.layers;
  c.spec.token_count = s.token_count;
  c.src_blocks = s.src_blocks;
  c.dst_blocks = s.dst_blocks;
  c.pairs = s.pairs;
  c.options = LaunchOptions{p.backend.backend, 0};
  c.seed = 4000 + static_cast<uint64_t>(p.src) * 10 + static_cast<uint64_t>(p.dst);
  CheckConversion(c);
}

INSTANTIATE_TEST_SUITE_P(All, RangeTest, ::testing::ValuesIn(RangeParams()),
                         [](const auto& info) { return Name(info.param); });

// Tensor parallelism: four ranks holding 2 of 8 heads each write their slices into one
// universal store (heads 2*rank..2*rank+1); then TP-4 readers get their slices back in
// `reader` layout, and TP-2 readers get 4 heads each.
struct SliceParam {
  LayoutKind worker;
  LayoutKind reader;
  Placement store_placement;
};

std::vector<SliceParam> SliceParams() {
  std::vector<SliceParam> params;
  for (const auto& [worker, reader] : AllLayoutPairs()) {
    for (Placement placement : {Placement::kDevice, Placement::kPinned}) {
      params.push_back(SliceParam{worker, reader, placement});
    }
  }
  return params;
}

std::string Name(const SliceParam& p) {
  return absl::StrCat(LayoutKindName(p.worker), "_via_universal_to_", LayoutKindName(p.reader),
                      "_", PlacementName(p.store_placement), "_store");
}
void PrintTo(const SliceParam& p, std::ostream* os) { *os << Name(p); }

class HeadSliceTest : public ::testing::TestWithParam<SliceParam> {};

TEST_P(HeadSliceTest, RanksWriteAndReadBackTheirHeads) {
  const SliceParam& p = GetParam();
  constexpr int kRanks = 4;
  constexpr int64_t kStoreHeads = 8;
  const BlockShape worker_shape{2, 2, 8, 2, 32};
  BlockShape store_shape = worker_shape;
  store_shape.nh = kStoreHeads;
  const LayoutDesc store_desc{LayoutKind::kUniversal, store_shape, DType::kBF16};
  // Worker blocks 0, 1 go to store blocks 2, 0; store block 1 stays poison.
  const std::vector<BlockPair> write_pairs = {{0, 2, 0, 0}, {1, 0, 0, 0}};
  const std::vector<BlockPair> read_pairs = {{2, 0, 0, 0}, {0, 1, 0, 0}};

  ASSERT_OK_AND_ASSIGN(BlockStore store, BlockStore::Create(store_desc, 3, p.store_placement));
  ASSERT_OK(store.Fill(kPoison));
  std::vector<BlockStore> workers;
  for (int rank = 0; rank < kRanks; ++rank) {
    const LayoutDesc desc{p.worker, worker_shape, DType::kBF16};
    ASSERT_OK_AND_ASSIGN(BlockStore worker, BlockStore::Create(desc, 2, Placement::kDevice));
    ASSERT_OK(worker.FillRandom(5000 + rank));
    TransferSpec spec{desc, store_desc, AxisRange{0, 2 * rank, 2}, AxisRange{}, 0};
    ASSERT_OK(ConvertBoth(spec, worker, store, write_pairs, {Backend::kKernel, 0}).status())
        << "rank " << rank << " writing";
    workers.push_back(std::move(worker));
  }
  EXPECT_TRUE(MatchesMirror(store)) << "store after all ranks wrote";

  for (int rank = 0; rank < kRanks; ++rank) {
    const LayoutDesc desc{p.reader, worker_shape, DType::kBF16};
    ASSERT_OK_AND_ASSIGN(BlockStore reader, BlockStore::Create(desc, 2, Placement::kDevice));
    ASSERT_OK(reader.Fill(kPoison));
    TransferSpec spec{store_desc, desc, AxisRange{2 * rank, 0, 2}, AxisRange{}, 0};
    ASSERT_OK(ConvertBoth(spec, store, reader, read_pairs, {Backend::kAuto, 0}).status())
        << "TP-4 rank " << rank << " reading";
    EXPECT_TRUE(MatchesMirror(reader)) << "TP-4 rank " << rank;
    if (p.reader == p.worker) {
      EXPECT_TRUE(SamePayload(workers[rank], reader)) << "TP-4 rank " << rank << " round trip";
    }
  }

  BlockShape tp2_shape = worker_shape;
  tp2_shape.nh = 4;
  for (int rank = 0; rank < 2; ++rank) {
    const LayoutDesc desc{p.reader, tp2_shape, DType::kBF16};
    ASSERT_OK_AND_ASSIGN(BlockStore reader, BlockStore::Create(desc, 2, Placement::kDevice));
    ASSERT_OK(reader.Fill(kPoison));
    TransferSpec spec{store_desc, desc, AxisRange{4 * rank, 0, 4}, AxisRange{}, 0};
    ASSERT_OK(ConvertBoth(spec, store, reader, read_pairs, {Backend::kKernel, 0}).status())
        << "TP-2 rank " << rank << " reading";
    EXPECT_TRUE(MatchesMirror(reader)) << "TP-2 rank " << rank;
  }
  EXPECT_TRUE(MatchesMirror(store)) << "store must be unchanged by the reads";
}

INSTANTIATE_TEST_SUITE_P(AllPairs, HeadSliceTest, ::testing::ValuesIn(SliceParams()),
                         [](const auto& info) { return Name(info.param); });

// NHD stack → universal → operational (NHD inner) → HND stack → NHD stack gives back the
// input.
struct RoundTripParam {
  BackendOption backend;
  Placement middle;  // placement of the universal and operational stores
};

std::vector<RoundTripParam> RoundTripParams() {
  std::vector<RoundTripParam> params;
  for (const BackendOption& backend : AllBackends()) {
    for (Placement middle : {Placement::kDevice, Placement::kPinned}) {
      params.push_back(RoundTripParam{backend, middle});
    }
  }
  return params;
}

std::string Name(const RoundTripParam& p) {
  return absl::StrCat(BackendOptionName(p.backend), "_", PlacementName(p.middle), "_middle");
}
void PrintTo(const RoundTripParam& p, std::ostream* os) { *os << Name(p); }

class RoundTripTest : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(RoundTripTest, ThroughEveryLayoutIsLossless) {
  const RoundTripParam& p = GetParam();
  const BlockShape shape{2, 2, 16, 4, 64};
  constexpr int64_t kBlocks = 4;
  const LaunchOptions options{p.backend.backend, 0};
  const LayoutKind kinds[] = {LayoutKind::kNHDStack, LayoutKind::kUniversal,
                              LayoutKind::kOperationalNHD, LayoutKind::kHNDStack,
                              LayoutKind::kNHDStack};
  const Placement placements[] = {Placement::kDevice, p.middle, p.middle, Placement::kDevice,
                                  Placement::kDevice};
  // Block i → 3-i twice (so the composition is the identity), then the identity twice.
  const std::vector<BlockPair> reverse = {{0, 3, 0, 0}, {1, 2, 0, 0}, {2, 1, 0, 0}, {3, 0, 0, 0}};
  const std::vector<BlockPair> identity = {{3, 3, 0, 0}, {1, 1, 0, 0}, {0, 0, 0, 0}, {2, 2, 0, 0}};
  const std::vector<BlockPair>* hops[] = {&reverse, &reverse, &identity, &identity};

  std::vector<BlockStore> stores;
  for (int i = 0; i < 5; ++i) {
    const LayoutDesc desc{kinds[i], shape, DType::kBF16};
    ASSERT_OK_AND_ASSIGN(BlockStore store, BlockStore::Create(desc, kBlocks, placements[i]));
    ASSERT_OK(i == 0 ? store.FillRandom(6000) : store.Fill(kPoison));
    stores.push_back(std::move(store));
  }
  for (int hop = 0; hop < 4; ++hop) {
    const TransferSpec spec{stores[hop].desc(), stores[hop + 1].desc(), {}, {}, 0};
    ASSERT_OK(ConvertBoth(spec, stores[hop], stores[hop + 1], *hops[hop], options).status())
        << "hop " << hop;
    EXPECT_TRUE(MatchesMirror(stores[hop + 1])) << "after hop " << hop << " to "
                                                << LayoutKindName(kinds[hop + 1]);
  }
  EXPECT_TRUE(SamePayload(stores[0], stores[4])) << "round trip must give back the input";
}

INSTANTIATE_TEST_SUITE_P(All, RoundTripTest, ::testing::ValuesIn(RoundTripParams()),
                         [](const auto& info) { return Name(info.param); });

}  // namespace
}  // namespace kvshuttle::gputest
