// Block stores with host mirrors, GPU-vs-reference conversion and byte-exact comparison.
#include "tests/gpu/gpu_test_util.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/reference.h"
#include "core/status_macros.h"
#include "kernels/cuda_check.h"

namespace kvshuttle::gputest {
namespace {

std::unique_ptr<Converter> g_converter;

// Leading and trailing poisoned bytes around the pieces of an arena.
constexpr uint64_t kArenaMargin = 64;
// How many differing bytes MatchesMirror / SamePayload describe.
constexpr int kReportedDiffs = 4;

int ReferenceThreads() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
}

// Owns a CUDA stream that synchronizes with the legacy default stream (so earlier cudaMemset /
// cudaMemcpy calls are ordered before our work).
class ScopedStream {
 public:
  ~ScopedStream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  absl::Status Create() {
    CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream_));
    return absl::OkStatus();
  }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace

::testing::AssertionResult CudaOk(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << call << ": " << cudaGetErrorName(error) << " ("
                                       << cudaGetErrorString(error) << ")";
}

::testing::AssertionResult StatusOk(const absl::Status& status, const char* expr) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << ": " << status;
}

const char* PlacementName(Placement placement) {
  return placement == Placement::kDevice ? "device" : "pinned";
}

std::string BackendOptionName(const BackendOption& option) {
  std::string name(BackendName(option.backend));
  if (option.max_sms != 0) absl::StrAppend(&name, "_sms", option.max_sms);
  return name;
}

std::vector<BackendOption> AllBackends() {
  return {{Backend::kKernel, 0}, {Backend::kBatch, 0}, {Backend::kAsync, 0},
          {Backend::kStaged, 0}, {Backend::kAuto, 0}};
}

std::vector<std::pair<LayoutKind, LayoutKind>> AllLayoutPairs() {
  std::vector<std::pair<LayoutKind, LayoutKind>> pairs;
  for (int s = 0; s < kNumLayoutKinds; ++s) {
    for (int d = 0; d < kNumLayoutKinds; ++d) {
      pairs.emplace_back(static_cast<LayoutKind>(s), static_cast<LayoutKind>(d));
    }
  }
  return pairs;
}

std::string PairName(LayoutKind src, LayoutKind dst) {
  return absl::StrCat(LayoutKindName(src), "_to_", LayoutKindName(dst));
}

std::vector<BlockPair> ShuffledPairs(int64_t count, int64_t src_blocks, int64_t dst_blocks,
                                     uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> src(src_blocks);
  std::vector<int64_t> dst(dst_blocks);
  std::iota(src.begin(), src.end(), 0);
  std::iota(dst.begin(), dst.end(), 0);
  std::shuffle(src.begin(), src.end(), rng);
  std::shuffle(dst.begin(), dst.end(), rng);
  std::vector<BlockPair> pairs;
  for (int64_t i = 0; i < count; ++i) pairs.push_back(BlockPair{src[i], dst[i], 0, 0});
  return pairs;
}

absl::StatusOr<BlockStore> BlockStore::Create(const LayoutDesc& desc, int64_t num_blocks,
                                              Placement placement, int misalign,
                                              bool strided) {
  RETURN_IF_ERROR(ValidateLayout(desc, "store"));
  if (num_blocks < 1 || misalign < 0 || misalign > 15) {
    return absl::InvalidArgumentError(absl::StrCat("BlockStore: num_blocks ", num_blocks,
                                                   " must be ≥ 1 and misalign ", misalign,
                                                   " in [0, 15]"));
  }
  BlockStore store;
  store.desc_ = desc;
  store.num_blocks_ = num_blocks;
  store.placement_ = placement;
  const int64_t n = num_blocks * AddressesPerBlock(desc.kind, desc.shape);
  const uint64_t piece = BytesPerAddress(desc.kind, desc.shape, DTypeSize(desc.dtype));
  const uint64_t padded = (piece + 15) / 16 * 16;
  std::vector<uint64_t> offsets(n);
  uint64_t offset = kArenaMargin + static_cast<uint64_t>(misalign);
  const int64_t per_block = AddressesPerBlock(desc.kind, desc.shape);
  if (strided) {
    // Entry e's blocks in one array, 16 poisoned bytes after each block; the arrays in reverse
    // entry order, 32 bytes apart.
    store.block_stride_ = padded + 16;
    for (int64_t e = per_block - 1; e >= 0; --e) {
      for (int64_t b = 0; b < num_blocks; ++b) {
        offsets[b * per_block + e] = offset + static_cast<uint64_t>(b) * store.block_stride_;
      }
      offset += static_cast<uint64_t>(num_blocks) * store.block_stride_ + 32;
    }
  } else {
    // Table entry n-1 comes first in memory, entry 0 last; gaps of 0, 16 or 32 extra bytes.
    for (int64_t pos = 0; pos < n; ++pos) {
      offsets[n - 1 - pos] = offset;
      offset += padded + 16 * static_cast<uint64_t>(pos % 3);
    }
  }
  store.size_ = offset + kArenaMargin;
  if (placement == Placement::kDevice) {
    ASSIGN_OR_RETURN(store.device_, DeviceBuffer::Create(0, store.size_));
    store.base_ = store.device_.address();
  } else {
    ASSIGN_OR_RETURN(store.pinned_, PinnedBuffer::Create(store.size_));
    store.base_ = store.pinned_.address();
  }
  store.mirror_.assign(store.size_, 0);
  for (uint64_t o : offsets) store.addresses_.push_back(store.base_ + o);
  if (strided) {
    store.strided_bases_.assign(store.addresses_.begin(), store.addresses_.begin() + per_block);
    store.strided_segments_.assign(static_cast<size_t>(per_block), 0);
  }
  return store;
}

std::optional<StridedSide> BlockStore::strided() const {
  if (strided_bases_.empty()) return std::nullopt;
  return StridedSide{strided_bases_, block_stride_, num_blocks_, strided_segments_};
}

std::vector<uint64_t> BlockStore::MirrorAddresses() {
  const uint64_t mirror_base = reinterpret_cast<uint64_t>(mirror_.data());
  std::vector<uint64_t> table;
  for (uint64_t a : addresses_) table.push_back(mirror_base + (a - base_));
  return table;
}

absl::Status BlockStore::FillRandom(uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < mirror_.size(); i += 8) {
    const uint64_t word = rng();
    std::memcpy(mirror_.data() + i, &word, std::min<size_t>(8, mirror_.size() - i));
  }
  if (placement_ == Placement::kDevice) {
    CUDA_RETURN_IF_ERROR(cudaMemcpy(device_.data(), mirror_.data(), size_, cudaMemcpyHostToDevice));
    CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());  // a pageable copy may return before the DMA
  } else {
    std::memcpy(pinned_.data(), mirror_.data(), size_);
  }
  return absl::OkStatus();
}

absl::Status BlockStore::Fill(uint8_t byte) {
  std::fill(mirror_.begin(), mirror_.end(), byte);
  if (placement_ == Placement::kDevice) {
    CUDA_RETURN_IF_ERROR(cudaMemset(device_.data(), byte, size_));
    CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());  // cudaMemset is asynchronous to the host
  } else {
    std::memset(pinned_.data(), byte, size_);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> BlockStore::Download() const {
  std::vector<uint8_t> bytes(size_);
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  if (placement_ == Placement::kDevice) {
    CUDA_RETURN_IF_ERROR(cudaMemcpy(bytes.data(), device_.data(), size_, cudaMemcpyDeviceToHost));
  } else {
    std::memcpy(bytes.data(), pinned_.data(), size_);
  }
  return bytes;
}

std::string BlockStore::DescribeOffset(uint64_t offset) const {
  const uint64_t piece = BytesPerAddress(desc_.kind, desc_.shape, DTypeSize(desc_.dtype));
  const int64_t per_block = AddressesPerBlock(desc_.kind, desc_.shape);
  for (size_t k = 0; k < addresses_.size(); ++k) {
    const uint64_t start = addresses_[k] - base_;
    if (offset < start || offset >= start + piece) continue;
    const int64_t slot = static_cast<int64_t>(k) % per_block;
    if (IsStack(desc_.kind)) {
      return absl::StrCat("block ", k / per_block, " chunk (layer ", slot / desc_.shape.no,
                          ", outer ", slot % desc_.shape.no, ") byte ", offset - start);
    }
    return absl::StrCat("block ", k, " byte ", offset - start);
  }
  return "a gap between pieces (must stay as the reference left it)";
}

absl::StatusOr<Backend> ConvertBoth(const TransferSpec& spec, BlockStore& src, BlockStore& dst,
                                    absl::Span<const BlockPair> pairs,
                                    const LaunchOptions& options) {
  Converter* converter = SharedConverter();
  if (converter == nullptr) return absl::FailedPreconditionError("no shared converter");
  const std::optional<StridedSide> src_strided = src.strided();
  const std::optional<StridedSide> dst_strided = dst.strided();
  ASSIGN_OR_RETURN(
      const TransferPlan plan,
      src_strided && dst_strided
          ? TransferPlan::BuildStrided(spec, *src_strided, *dst_strided, pairs)
          : TransferPlan::Build(spec, src.addresses(), dst.addresses(), pairs));
  if (src_strided && dst_strided && plan.outer().size() != pairs.size()) {
    return absl::InternalError(absl::StrCat("strided plan has ", plan.outer().size(),
                                            " outer entries for ", pairs.size(), " pairs"));
  }
  const std::vector<uint64_t> src_mirror = src.MirrorAddresses();
  const std::vector<uint64_t> dst_mirror = dst.MirrorAddresses();
  RETURN_IF_ERROR(ReferenceConvert(spec, src_mirror, dst_mirror, pairs, ReferenceThreads()));

  ScopedStream stream;
  RETURN_IF_ERROR(stream.Create());
  int device_before = -1;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device_before));
  const absl::StatusOr<Backend> used = converter->Enqueue(plan, options, stream.get());
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream.get()));
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  int device_after = -1;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device_after));
  if (!used.ok()) return used.status();
  if (device_after != device_before) {
    return absl::InternalError(absl::StrCat("Enqueue changed the current device from ",
                                            device_before, " to ", device_after));
  }
  const Backend expected = converter->Choose(plan, options.backend);
  if (*used != expected || *used == Backend::kAuto) {
    return absl::InternalError(absl::StrCat("Enqueue reported backend ", BackendName(*used),
                                            ", expected ", BackendName(expected)));
  }
  return *used;
}

::testing::AssertionResult MatchesMirror(const BlockStore& store) {
  const absl::StatusOr<std::vector<uint8_t>> actual = store.Download();
  if (!actual.ok()) return ::testing::AssertionFailure() << "Download: " << actual.status();
  const std::vector<uint8_t>& expected = store.mirror();
  int64_t diffs = 0;
  std::string first;
  for (size_t i = 0; i < expected.size(); ++i) {
    if ((*actual)[i] == expected[i]) continue;
    if (diffs++ < kReportedDiffs) {
      absl::StrAppendFormat(&first, "\n  offset %d (%s): expected 0x%02x, got 0x%02x", i,
                            store.DescribeOffset(i), expected[i], (*actual)[i]);
    }
  }
  if (diffs == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << diffs << " of " << expected.size() << " bytes differ from the reference ("
         << PlacementName(store.placement()) << " " << LayoutKindName(store.desc().kind)
         << " store); first:" << first;
}

::testing::AssertionResult SamePayload(const BlockStore& expected, const BlockStore& actual) {
  if (!(expected.desc() == actual.desc()) || expected.num_blocks() != actual.num_blocks()) {
    return ::testing::AssertionFailure() << "SamePayload: stores of different geometry";
  }
  const absl::StatusOr<std::vector<uint8_t>> bytes = actual.Download();
  if (!bytes.ok()) return ::testing::AssertionFailure() << "Download: " << bytes.status();
  const LayoutDesc& desc = expected.desc();
  const uint64_t piece = BytesPerAddress(desc.kind, desc.shape, DTypeSize(desc.dtype));
  int64_t diffs = 0;
  std::string first;
  for (size_t k = 0; k < expected.addresses().size(); ++k) {
    const uint64_t e_off = expected.PieceOffset(k);
    const uint64_t a_off = actual.PieceOffset(k);
    for (uint64_t b = 0; b < piece; ++b) {
      if (expected.mirror()[e_off + b] == (*bytes)[a_off + b]) continue;
      if (diffs++ < kReportedDiffs) {
        absl::StrAppendFormat(&first, "\n  %s: expected 0x%02x, got 0x%02x",
                              actual.DescribeOffset(a_off + b), expected.mirror()[e_off + b],
                              (*bytes)[a_off + b]);
      }
    }
  }
  if (diffs == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << diffs << " payload bytes differ; first:" << first;
}

void CheckConversion(const ConversionCase& c) {
  ASSERT_OK_AND_ASSIGN(BlockStore src,
                       BlockStore::Create(c.spec.src, c.src_blocks, c.src_placement,
                                          c.src_misalign, c.strided));
  ASSERT_OK_AND_ASSIGN(BlockStore dst,
                       BlockStore::Create(c.spec.dst, c.dst_blocks, c.dst_placement,
                                          c.dst_misalign, c.strided));
  ASSERT_OK(src.FillRandom(c.seed));
  ASSERT_OK(dst.Fill(kPoison));
  ASSERT_OK(ConvertBoth(c.spec, src, dst, c.pairs, c.options).status());
  EXPECT_TRUE(MatchesMirror(dst)) << "destination";
  EXPECT_TRUE(MatchesMirror(src)) << "source must be left untouched";
}

Converter* SharedConverter() { return g_converter.get(); }

void ConverterEnvironment::SetUp() {
  absl::StatusOr<std::unique_ptr<Converter>> converter = Converter::Create(0);
  ASSERT_TRUE(converter.ok()) << "Converter::Create(0): " << converter.status();
  g_converter = std::move(converter).value();
}

void ConverterEnvironment::TearDown() { g_converter.reset(); }

}  // namespace kvshuttle::gputest
