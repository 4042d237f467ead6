// Converter error codes and no-op cases: unknown device, out-of-range options, plans with too
// many runs for the copy-engine backends, and empty batches.
#include <optional>
#include <vector>

#include <gtest/gtest.h>

#include "tests/gpu/gpu_test_util.h"

namespace kvshuttle::gputest {
namespace {

TEST(ConverterCreateTest, UnknownDeviceIsFailedPrecondition) {
  int count = 0;
  ASSERT_CUDA(cudaGetDeviceCount(&count));
  for (int device : {999, count}) {
    const absl::StatusOr<std::unique_ptr<Converter>> converter = Converter::Create(device);
    EXPECT_EQ(converter.status().code(), absl::StatusCode::kFailedPrecondition)
        << "device " << device << ": " << converter.status();
  }
  int current = -1;
  ASSERT_CUDA(cudaGetDevice(&current));
  EXPECT_EQ(current, 0) << "a failed Create must not change the current device";
}

// A small NHD → universal conversion whose destination is poisoned and never converted.
class RejectedEnqueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(SharedConverter(), nullptr);
    const BlockShape shape{2, 2, 4, 3, 5};
    spec_.src = LayoutDesc{LayoutKind::kNHDStack, shape, DType::kF16};
    spec_.dst = LayoutDesc{LayoutKind::kUniversal, shape, DType::kF16};
    ASSERT_OK_AND_ASSIGN(src_, BlockStore::Create(spec_.src, 2, Placement::kDevice));
    ASSERT_OK_AND_ASSIGN(dst_, BlockStore::Create(spec_.dst, 2, Placement::kDevice));
    ASSERT_OK(src_->FillRandom(7000));
    ASSERT_OK(dst_->Fill(kPoison));
    ASSERT_CUDA(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) {
      EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
    }
  }

  TransferSpec spec_;
  std::optional<BlockStore> src_;
  std::optional<BlockStore> dst_;
  cudaStream_t stream_ = nullptr;
};

TEST_F(RejectedEnqueueTest, NegativeMaxSmsIsInvalidArgument) {
  const std::vector<BlockPair> pairs = {{0, 1, 0, 0}, {1, 0, 0, 0}};
  ASSERT_OK_AND_ASSIGN(const TransferPlan plan, TransferPlan::Build(spec_, src_->addresses(),
                                                                    dst_->addresses(), pairs));
  const absl::StatusOr<Backend> used =
      SharedConverter()->Enqueue(plan, LaunchOptions{Backend::kKernel, -1}, stream_);
  EXPECT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument) << used.status();
  ASSERT_CUDA(cudaStreamSynchronize(stream_));
  ASSERT_CUDA(cudaGetLastError());
  EXPECT_TRUE(MatchesMirror(*dst_)) << "a rejected plan must not touch the destination";
}

TEST_F(RejectedEnqueueTest, EmptyBatchIsANoOp) {
  for (const BackendOption& option : AllBackends()) {
    SCOPED_TRACE(BackendOptionName(option));
    ASSERT_OK_AND_ASSIGN(const TransferPlan plan, TransferPlan::Build(spec_, src_->addresses(),
                                                                      dst_->addresses(), {}));
    ASSERT_TRUE(plan.empty());
    const absl::StatusOr<Backend> used =
        SharedConverter()->Enqueue(plan, LaunchOptions{option.backend, 0}, stream_);
    ASSERT_TRUE(used.ok()) << used.status();
    EXPECT_NE(*used, Backend::kAuto);
    if (option.backend != Backend::kAuto) {
      EXPECT_EQ(*used, option.backend);
    }
    ASSERT_CUDA(cudaStreamSynchronize(stream_));
    ASSERT_CUDA(cudaGetLastError());
    EXPECT_TRUE(MatchesMirror(*dst_)) << "destination must be unchanged";
    EXPECT_TRUE(MatchesMirror(*src_)) << "source must be unchanged";
  }
}

// NHD → HND with 1-byte rows and nt = nh = 1024: no two rows continue each other, so each of the
// two chunks (K, V) is 2^20 separate runs — 2^21 in all, over kMaxCopyRuns.
TEST(TooManyRunsTest, CopyBackendsRejectAndAutoConverts) {
  ASSERT_NE(SharedConverter(), nullptr);
  const BlockShape shape{1, 2, 1024, 1024, 1};
  TransferSpec spec;
  spec.src = LayoutDesc{LayoutKind::kNHDStack, shape, DType::kUInt8};
  spec.dst = LayoutDesc{LayoutKind::kHNDStack, shape, DType::kUInt8};
  ASSERT_OK_AND_ASSIGN(BlockStore src, BlockStore::Create(spec.src, 1, Placement::kDevice));
  ASSERT_OK_AND_ASSIGN(BlockStore dst, BlockStore::Create(spec.dst, 1, Placement::kDevice));
  ASSERT_OK(src.FillRandom(8000));
  ASSERT_OK(dst.Fill(kPoison));
  const std::vector<BlockPair> pairs = {{0, 0, 0, 0}};
  ASSERT_OK_AND_ASSIGN(const TransferPlan plan,
                       TransferPlan::Build(spec, src.addresses(), dst.addresses(), pairs));
  ASSERT_GT(static_cast<int64_t>(plan.Runs().size()), kMaxCopyRuns) << "test precondition";

  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreate(&stream));
  for (Backend backend : {Backend::kBatch, Backend::kAsync}) {
    const absl::StatusOr<Backend> used =
        SharedConverter()->Enqueue(plan, LaunchOptions{backend, 0}, stream);
    EXPECT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument)
        << BackendName(backend) << ": " << used.status();
  }
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_CUDA(cudaStreamDestroy(stream));
  EXPECT_TRUE(MatchesMirror(dst)) << "rejected plans must not touch the destination";

  // auto must not pick a backend that rejects the plan.
  ASSERT_OK(ConvertBoth(spec, src, dst, pairs, LaunchOptions{Backend::kAuto, 0}).status());
  EXPECT_TRUE(MatchesMirror(dst));
  EXPECT_TRUE(MatchesMirror(src));
}

}  // namespace
}  // namespace kvshuttle::gputest

namespace kvshuttle::gputest {
namespace {

// `auto` follows the crossovers measured in docs/performance.md (the table under "Backends and
// the auto rule"): copy engines for plans of few large runs, except device → device plans of
// ≥ 64 MiB, where the kernel is faster; staged for whole host blocks of ≥ 8 MiB that need a
// conversion; the kernel for everything else.
TEST(AutoBackendTest, FollowsTheMeasuredCrossovers) {
  Converter* converter = SharedConverter();
  ASSERT_NE(converter, nullptr);
  const BlockShape shape{8, 2, 32, 8, 128};  // 1 MiB blocks in bf16
  // Operational → operational of the same chunk order: each block is one contiguous run.
  const LayoutDesc whole{LayoutKind::kOperationalNHD, shape, DType::kBF16};
  const LayoutDesc universal{LayoutKind::kUniversal, shape, DType::kBF16};
  const LayoutDesc nhd{LayoutKind::kNHDStack, shape, DType::kBF16};
  struct Case {
    const char* name;
    LayoutDesc src, dst;
    Placement src_place, dst_place;
    int64_t blocks;
    Backend expected;
  };
  const Case cases[] = {
      {"d2d whole blocks, 16 MiB", whole, whole, Placement::kDevice, Placement::kDevice,
       16, Backend::kAsync},
      {"d2d whole blocks, 80 MiB", whole, whole, Placement::kDevice, Placement::kDevice,
       80, Backend::kKernel},
      {"h2d whole blocks, 80 MiB", whole, whole, Placement::kPinned, Placement::kDevice,
       80, Backend::kAsync},
      {"d2h whole blocks, 80 MiB", whole, whole, Placement::kDevice, Placement::kPinned,
       80, Backend::kAsync},
      {"d2d transpose, 16 MiB", nhd, universal, Placement::kDevice, Placement::kDevice, 16,
       Backend::kKernel},
      {"h2d transpose from whole host blocks, 16 MiB", universal, nhd, Placement::kPinned,
       Placement::kDevice, 16, Backend::kStaged},
      {"d2h transpose into whole host blocks, 4 MiB", nhd, universal, Placement::kDevice,
       Placement::kPinned, 4, Backend::kKernel},
  };
  for (const Case& c : cases) {
    ASSERT_OK_AND_ASSIGN(BlockStore src, BlockStore::Create(c.src, c.blocks, c.src_place));
    ASSERT_OK_AND_ASSIGN(BlockStore dst, BlockStore::Create(c.dst, c.blocks, c.dst_place));
    const std::vector<BlockPair> pairs = ShuffledPairs(c.blocks, c.blocks, c.blocks, 3);
    TransferSpec spec;
    spec.src = c.src;
    spec.dst = c.dst;
    // Each store is one allocation (as a registered region is): runs may merge within it.
    const std::vector<uint32_t> src_segments(src.addresses().size(), 0);
    const std::vector<uint32_t> dst_segments(dst.addresses().size(), 0);
    ASSERT_OK_AND_ASSIGN(const TransferPlan plan,
                         TransferPlan::Build(spec, src.addresses(), dst.addresses(), pairs,
                                             AddressSegments{src_segments, dst_segments}));
    EXPECT_EQ(converter->Choose(plan, Backend::kAuto), c.expected)
        << c.name << ": chose " << BackendName(converter->Choose(plan, Backend::kAuto));
  }
}

}  // namespace
}  // namespace kvshuttle::gputest
