// Seed-style naive conversion kernel (the baseline; deliberately unoptimized).
#include "bench/naive_kernel.h"

#include "core/layout.h"
#include "kernels/cuda_check.h"

namespace kvshuttle {
namespace {

struct NaiveParams {
  LayoutDesc src, dst;
  int64_t es;
  int64_t heads, layers, tokens, no, hd;
  int64_t src_h0, dst_h0, src_l0, dst_l0;
  const uint64_t* src_table;
  const uint64_t* dst_table;
  int64_t total;  // num_pairs * heads * layers * no * tokens * hd
};

// Address of element (l, o, t, h, d) of `block`, from the logical shapes (DESIGN §1).
__device__ uint64_t ElementAddress(const LayoutDesc& desc, const uint64_t* table, int64_t block,
                                   int64_t l, int64_t o, int64_t t, int64_t h, int64_t d,
                                   int64_t es) {
  const BlockShape& s = desc.shape;
  switch (desc.kind) {
    case LayoutKind::kNHDStack:
      return table[block * s.nl * s.no + l * s.no + o] + NhdChunkOffset(s, t, h, d) * es;
    case LayoutKind::kHNDStack:
      return table[block * s.nl * s.no + l * s.no + o] + HndChunkOffset(s, t, h, d) * es;
    case LayoutKind::kOperationalNHD:
      return table[block] + OperationalOffset(s, false, l, o, t, h, d) * es;
    case LayoutKind::kOperationalHND:
      return table[block] + OperationalOffset(s, true, l, o, t, h, d) * es;
    default:
      return table[block] + UniversalOffset(s, l, o, t, h, d) * es;
  }
}

__global__ void NaiveKernel(const NaiveParams p) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.total;
       i += int64_t{gridDim.x} * blockDim.x) {
    // [pair][nh][nl][no][nt][hd], decomposed with 64-bit div/mod per element.
    int64_t r = i;
    const int64_t d = r % p.hd; r /= p.hd;
    const int64_t t = r % p.tokens; r /= p.tokens;
    const int64_t o = r % p.no; r /= p.no;
    const int64_t l = r % p.layers; r /= p.layers;
    const int64_t h = r % p.heads; r /= p.heads;
    const int64_t pair = r;
    const uint64_t from = ElementAddress(p.src, p.src_table, pair, p.src_l0 + l, o, t,
                                         p.src_h0 + h, d, p.es);
    const uint64_t to = ElementAddress(p.dst, p.dst_table, pair, p.dst_l0 + l, o, t,
                                       p.dst_h0 + h, d, p.es);
    switch (p.es) {
      case 1: *reinterpret_cast<uint8_t*>(to) = *reinterpret_cast<const uint8_t*>(from); break;
      case 2: *reinterpret_cast<uint16_t*>(to) = *reinterpret_cast<const uint16_t*>(from); break;
      case 4: *reinterpret_cast<uint32_t*>(to) = *reinterpret_cast<const uint32_t*>(from); break;
      default: *reinterpret_cast<uint64_t*>(to) = *reinterpret_cast<const uint64_t*>(from); break;
    }
  }
}

}  // namespace

absl::Status LaunchNaiveConvert(const TransferSpec& r, const uint64_t* src_table,
                                const uint64_t* dst_table, int64_t num_pairs,
                                cudaStream_t stream) {
  NaiveParams p;
  p.src = r.src;
  p.dst = r.dst;
  p.es = DTypeSize(r.src.dtype);
  p.heads = r.heads.count;
  p.layers = r.layers.count;
  p.tokens = r.token_count;
  p.no = r.src.shape.no;
  p.hd = r.src.shape.hd;
  p.src_h0 = r.heads.src_offset;
  p.dst_h0 = r.heads.dst_offset;
  p.src_l0 = r.layers.src_offset;
  p.dst_l0 = r.layers.dst_offset;
  p.src_table = src_table;
  p.dst_table = dst_table;
  p.total = num_pairs * p.heads * p.layers * p.no * p.tokens * p.hd;
  if (p.total == 0) return absl::OkStatus();
  const int64_t blocks = std::min<int64_t>((p.total + 255) / 256, 132 * 16);
  NaiveKernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(p);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace kvshuttle

namespace kvshuttle {
namespace {

__global__ void PlainCopyKernel(uint4* __restrict__ dst, const uint4* __restrict__ src,
                                uint64_t n) {
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  uint64_t i = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = src[i], b = src[i + stride], c = src[i + 2 * stride], d = src[i + 3 * stride];
    dst[i] = a;
    dst[i + stride] = b;
    dst[i + 2 * stride] = c;
    dst[i + 3 * stride] = d;
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

// One tile of blockDim.x × 8 vectors per CTA, no grid-stride loop: the grid covers the bytes.
__global__ void PlainTileCopyKernel(uint4* __restrict__ dst, const uint4* __restrict__ src,
                                    uint64_t n) {
  constexpr int kUnroll = 8;
  const uint64_t base = uint64_t{blockIdx.x} * blockDim.x * kUnroll + threadIdx.x;
  uint4 v[kUnroll];
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const uint64_t i = base + uint64_t{k} * blockDim.x;
    if (i < n) v[k] = __ldcs(src + i);
  }
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const uint64_t i = base + uint64_t{k} * blockDim.x;
    if (i < n) __stcs(dst + i, v[k]);
  }
}

}  // namespace

absl::Status LaunchPlainTileCopy(void* dst, const void* src, uint64_t bytes, int threads,
                                 cudaStream_t stream) {
  const uint64_t n = bytes / 16;
  const uint64_t tile = uint64_t(threads) * 8;
  PlainTileCopyKernel<<<static_cast<unsigned>((n + tile - 1) / tile), threads, 0, stream>>>(
      static_cast<uint4*>(dst), static_cast<const uint4*>(src), n);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchPlainCopy(void* dst, const void* src, uint64_t bytes, cudaStream_t stream) {
  int sms = 0, per_sm = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, PlainCopyKernel, 256, 0));
  PlainCopyKernel<<<sms * per_sm, 256, 0, stream>>>(static_cast<uint4*>(dst),
                                                   static_cast<const uint4*>(src), bytes / 16);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace kvshuttle
