// Shared machinery of the GPU test tier: block stores in device or pinned memory with a host
// mirror, one call that runs a conversion on the GPU and with the CPU reference on the mirrors,
// byte-exact comparison, and gtest-friendly case names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/plan.h"
#include "core/transfer.h"
#include "kernels/buffers.h"
#include "kernels/converter.h"

// Asserts that a CUDA runtime call returns cudaSuccess, naming the call and the error.
// Like every gtest assertion it accepts `<< "more context"`.
#define ASSERT_CUDA(call) ASSERT_TRUE(::kvshuttle::gputest::CudaOk((call), #call))

// Asserts that an absl::Status expression is OK, printing the status otherwise.
#define ASSERT_OK(expr) ASSERT_TRUE(::kvshuttle::gputest::StatusOk((expr), #expr))

// `ASSERT_OK_AND_ASSIGN(auto x, MakeX());` declares `x` or fails the test with the status.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  KVS_TEST_ASSIGN_IMPL_(KVS_TEST_CONCAT_(kvs_test_statusor_, __LINE__), lhs, expr)
#define KVS_TEST_CONCAT_INNER_(a, b) a##b
#define KVS_TEST_CONCAT_(a, b) KVS_TEST_CONCAT_INNER_(a, b)
#define KVS_TEST_ASSIGN_IMPL_(tmp, lhs, expr)                          \
  auto tmp = (expr);                                                   \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status();              \
  lhs = std::move(tmp).value()

namespace kvshuttle::gputest {

// Success for cudaSuccess; otherwise names `call` and the error (see ASSERT_CUDA).
::testing::AssertionResult CudaOk(cudaError_t error, const char* call);
// Success for an OK status; otherwise names `expr` and the status (see ASSERT_OK).
::testing::AssertionResult StatusOk(const absl::Status& status, const char* expr);

// Byte written over every destination before a conversion; unwritten bytes must keep it.
inline constexpr uint8_t kPoison = 0xCD;

enum class Placement : uint8_t { kDevice, kPinned };

// "device" or "pinned".
const char* PlacementName(Placement placement);

// A backend with its SM cap, as one test parameter.
struct BackendOption {
  Backend backend = Backend::kKernel;
  int max_sms = 0;
};

// "kernel", "kernel_sms1", "batch", ...
std::string BackendOptionName(const BackendOption& option);

// kernel, batch, async, staged, auto (no SM cap).
std::vector<BackendOption> AllBackends();

// All 25 ordered (src, dst) pairs of the five layouts, same→same included.
std::vector<std::pair<LayoutKind, LayoutKind>> AllLayoutPairs();

// "nhd_to_universal".
std::string PairName(LayoutKind src, LayoutKind dst);

// `count` pairs from distinct source blocks to distinct destination blocks, both drawn from
// a fixed-seed shuffle (so the pair list is neither sorted nor the identity). Preconditions:
// count ≤ src_blocks and count ≤ dst_blocks.
std::vector<BlockPair> ShuffledPairs(int64_t count, int64_t src_blocks, int64_t dst_blocks,
                                     uint64_t seed);

// `num_blocks` blocks of one layout in one arena (device or pinned host memory) plus a host
// mirror of the whole arena that the CPU reference works on. Pieces (stack chunks, or whole
// blocks) are placed in reverse table order with uneven poisoned gaps, all starting `misalign`
// bytes past a 16-byte boundary, so table mix-ups and stray writes show up as mismatches.
// `strided` stores lay their pieces out as a strided block set instead: one array of all
// blocks per table entry (vLLM's per-layer tensors), blocks a poisoned gap apart, described by
// strided() for TransferPlan::BuildStrided.
class BlockStore {
 public:
  static absl::StatusOr<BlockStore> Create(const LayoutDesc& desc, int64_t num_blocks,
                                           Placement placement, int misalign = 0,
                                           bool strided = false);

  const LayoutDesc& desc() const { return desc_; }
  int64_t num_blocks() const { return num_blocks_; }
  Placement placement() const { return placement_; }
  // Address table for TransferPlan::Build (device pointers or pinned host pointers).
  const std::vector<uint64_t>& addresses() const { return addresses_; }
  // Strided stores: block 0's table and the block stride (one segment). Else nullopt.
  std::optional<StridedSide> strided() const;
  // The same table translated into the host mirror, for ReferenceConvert.
  std::vector<uint64_t> MirrorAddresses();
  const std::vector<uint8_t>& mirror() const { return mirror_; }
  // Offset of table entry `k` from the start of the arena (and of the mirror).
  uint64_t PieceOffset(size_t k) const { return addresses_[k] - base_; }

  // Fills the whole arena (gaps included) and the mirror with the same random bytes.
  absl::Status FillRandom(uint64_t seed);
  // Fills the whole arena and the mirror with `byte`.
  absl::Status Fill(uint8_t byte);
  // Copies the whole arena to the host.
  absl::StatusOr<std::vector<uint8_t>> Download() const;
  // Describes arena offset `offset`: which piece (block, layer, outer) and where in it, or gap.
  std::string DescribeOffset(uint64_t offset) const;

 private:
  BlockStore() = default;

  LayoutDesc desc_;
  int64_t num_blocks_ = 0;
  Placement placement_ = Placement::kDevice;
  DeviceBuffer device_;
  PinnedBuffer pinned_;
  uint64_t base_ = 0;  // arena start (device or pinned address)
  size_t size_ = 0;    // arena bytes
  std::vector<uint64_t> addresses_;
  std::vector<uint8_t> mirror_;
  uint64_t block_stride_ = 0;  // strided stores only
  std::vector<uint64_t> strided_bases_;
  std::vector<uint32_t> strided_segments_;
};

// Runs `spec` over `pairs` from `src` to `dst` twice: on the GPU with the shared converter
// (planned with TransferPlan::BuildStrided when both stores are strided, else Build)
// (own stream, synchronized, cudaGetLastError checked) and with ReferenceConvert on the
// mirrors. Returns the backend Enqueue reported; an error if building, enqueueing or the
// reference fails, if the reported backend is not the requested one (auto: not
// Converter::Choose(plan, requested)), or if Enqueue changed the current device.
absl::StatusOr<Backend> ConvertBoth(const TransferSpec& spec, BlockStore& src, BlockStore& dst,
                                    absl::Span<const BlockPair> pairs,
                                    const LaunchOptions& options);

// Success when the arena equals the mirror byte for byte; otherwise says how many bytes
// differ and where the first few are.
::testing::AssertionResult MatchesMirror(const BlockStore& store);

// Success when every piece of `actual` (arena) equals the same piece of `expected` (mirror).
// Both stores must have the same layout, shape, dtype and block count.
::testing::AssertionResult SamePayload(const BlockStore& expected, const BlockStore& actual);

// One full check: random source, poisoned destination, ConvertBoth, then both arenas must
// equal their mirrors (the source untouched, the destination exactly the reference's).
struct ConversionCase {
  TransferSpec spec;
  int64_t src_blocks = 1;
  int64_t dst_blocks = 1;
  std::vector<BlockPair> pairs;
  Placement src_placement = Placement::kDevice;
  Placement dst_placement = Placement::kDevice;
  int src_misalign = 0;
  int dst_misalign = 0;
  bool strided = false;  // both stores strided; the plan from BuildStrided
  LaunchOptions options;
  uint64_t seed = 1;
};
void CheckConversion(const ConversionCase& c);

// The converter for device 0 shared by all tests of a binary; set up by ConverterEnvironment.
Converter* SharedConverter();

// Creates the shared converter before the first test and destroys it after the last.
class ConverterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
};

}  // namespace kvshuttle::gputest
