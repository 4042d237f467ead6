// The SM copy kernel behind every conversion. One launch moves a whole batch: the work is split
// into tiles of threads*kUnroll vectors, a tile never crossing a chunk, and CTAs stride over the
// tiles. Each thread loads kUnroll vectors before storing any (memory-level parallelism). Row
// and chunk coordinates come from FastDivmod, never from per-element 64-bit division.
#include "kernels/convert_kernel.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/fast_divmod.h"
#include "kernels/cuda_check.h"

namespace kvshuttle {
namespace {

constexpr int kUnroll = 4;

template <int kBytes>
struct VecOf;
template <> struct VecOf<1> { using type = uint8_t; };
template <> struct VecOf<2> { using type = uint16_t; };
template <> struct VecOf<4> { using type = uint32_t; };
template <> struct VecOf<8> { using type = uint2; };
template <> struct VecOf<16> { using type = uint4; };

// Kernel parameters; all strides in bytes, counts in vectors of the kernel's width.
struct ChunkCopyParams {
  const ChunkAddress* chunks;  // [num_chunks] first-row addresses of each chunk copy
  uint64_t num_tiles;          // num_chunks * tiles_per_chunk
  uint32_t tiles_per_chunk;
  uint32_t vecs_per_chunk;     // chunk_bytes / V
  FastDivmod vecs_per_row;     // row_bytes / V
  FastDivmod inner_count;      // rows of the inner dimension
  int64_t src_inner_stride;
  int64_t src_outer_stride;
  int64_t dst_inner_stride;
  int64_t dst_outer_stride;
};

template <int V>
__global__ void __launch_bounds__(1024) ChunkCopyKernel(const ChunkCopyParams p) {
  using Vec = typename VecOf<V>::type;
  const uint32_t tile_vecs = blockDim.x * kUnroll;
  for (uint64_t tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
    const uint64_t chunk = tile / p.tiles_per_chunk;
    const uint32_t first = static_cast<uint32_t>(tile - chunk * p.tiles_per_chunk) * tile_vecs;
    const ChunkAddress c = p.chunks[chunk];
    Vec regs[kUnroll];
    uint64_t dst[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const uint32_t idx = first + threadIdx.x + k * blockDim.x;
      dst[k] = 0;
      if (idx < p.vecs_per_chunk) {
        const uint32_t row = p.vecs_per_row.Div(idx);
        const uint32_t v = idx - row * p.vecs_per_row.divisor;
        const uint32_t outer = p.inner_count.Div(row);
        const uint32_t inner = row - outer * p.inner_count.divisor;
        const uint64_t src = c.src + outer * p.src_outer_stride + inner * p.src_inner_stride +
                             uint64_t{v} * V;
        dst[k] = c.dst + outer * p.dst_outer_stride + inner * p.dst_inner_stride + uint64_t{v} * V;
        regs[k] = *reinterpret_cast<const Vec*>(src);
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      if (dst[k] != 0) *reinterpret_cast<Vec*>(dst[k]) = regs[k];
    }
  }
}

template <int V>
absl::Status Launch(const TransferPlan& plan, const ChunkAddress* device_chunks, int grid_limit,
                    int threads, cudaStream_t stream) {
  const ChunkGeometry& g = plan.geometry();
  ChunkCopyParams p;
  p.chunks = device_chunks;
  p.vecs_per_chunk = static_cast<uint32_t>(g.chunk_bytes() / V);
  const uint32_t tile_vecs = static_cast<uint32_t>(threads) * kUnroll;
  p.tiles_per_chunk = (p.vecs_per_chunk + tile_vecs - 1) / tile_vecs;
  p.num_tiles = static_cast<uint64_t>(plan.chunks().size()) * p.tiles_per_chunk;
  p.vecs_per_row = FastDivmod(static_cast<uint32_t>(g.row_bytes / V));
  p.inner_count = FastDivmod(static_cast<uint32_t>(g.inner_count));
  p.src_inner_stride = g.src_inner_stride;
  p.src_outer_stride = g.src_outer_stride;
  p.dst_inner_stride = g.dst_inner_stride;
  p.dst_outer_stride = g.dst_outer_stride;
  const uint64_t grid = std::min<uint64_t>(p.num_tiles, static_cast<uint64_t>(grid_limit));
  ChunkCopyKernel<V><<<static_cast<unsigned>(grid), threads, 0, stream>>>(p);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchChunkCopy(const TransferPlan& plan, const ChunkAddress* device_chunks,
                             int grid_limit, int threads, cudaStream_t stream) {
  if (plan.empty()) return absl::OkStatus();
  if (grid_limit < 1 || threads < 32 || threads > 1024 || threads % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("LaunchChunkCopy: grid_limit ", grid_limit,
                                                   " must be ≥ 1 and threads ", threads,
                                                   " a multiple of 32 in [32, 1024]"));
  }
  switch (plan.alignment()) {
    case 16: return Launch<16>(plan, device_chunks, grid_limit, threads, stream);
    case 8: return Launch<8>(plan, device_chunks, grid_limit, threads, stream);
    case 4: return Launch<4>(plan, device_chunks, grid_limit, threads, stream);
    case 2: return Launch<2>(plan, device_chunks, grid_limit, threads, stream);
    case 1: return Launch<1>(plan, device_chunks, grid_limit, threads, stream);
    default:
      return absl::InternalError(
          absl::StrCat("LaunchChunkCopy: unsupported vector width ", plan.alignment()));
  }
}

}  // namespace kvshuttle
