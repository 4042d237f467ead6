// The SM copy kernel behind every conversion. One launch moves a whole batch: its chunk copies
// form one flat space of vectors, cut into tiles of threads × kUnroll vectors that CTAs stride
// over. Each thread loads kUnroll vectors before storing any (memory-level parallelism). Chunk,
// row and column come from FastDivmod (32-bit multiply-high), never from per-element 64-bit
// division; the one 64-bit division is per tile.
#include "kernels/convert_kernel.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "core/fast_divmod.h"
#include "core/status_macros.h"
#include "kernels/cuda_check.h"

namespace kvshuttle {
namespace {

// Experiment switches (bench/README.md, docs/performance.md); the defaults are the measured
// winners.
#ifndef KVS_EXP_STREAMING
#define KVS_EXP_STREAMING 1
#endif
#ifndef KVS_EXP_UNROLL16
#define KVS_EXP_UNROLL16 8
#endif

// KVS_EXP_SMEM_TRANSPOSE=0 in the environment turns the shared-memory transpose below off
// (A/B runs of kvs_kernel_bench); read once per process.
bool TransposeEnabled() {
  static const bool enabled = [] {
    const char* e = std::getenv("KVS_EXP_SMEM_TRANSPOSE");
    return e == nullptr || e[0] != '0';
  }();
  return enabled;
}

template <int kBytes>
struct VecOf;
template <> struct VecOf<1> { using type = unsigned char; };
template <> struct VecOf<2> { using type = unsigned short; };
template <> struct VecOf<4> { using type = unsigned int; };
template <> struct VecOf<8> { using type = uint2; };
template <> struct VecOf<16> { using type = uint4; };

// Vectors per thread per tile: enough bytes in flight for narrow vectors too.
template <int V>
constexpr int UnrollFor() {
  return V == 16 ? KVS_EXP_UNROLL16 : (V == 8 ? 8 : 16);
}

// Kernel parameters; all strides in bytes, counts in vectors of the kernel's width.
struct ChunkCopyParams {
  uint64_t num_chunks;
  uint64_t num_tiles;          // ceil(num_chunks * vecs_per_chunk / tile_vecs)
  FastDivmod vecs_per_chunk;   // chunk_bytes / V
  FastDivmod vecs_per_row;     // row_bytes / V
  FastDivmod inner_count;      // rows of the inner dimension
  int64_t src_inner_stride;
  int64_t src_outer_stride;
  int64_t dst_inner_stride;
  int64_t dst_outer_stride;
};

// Where a kernel reads chunk addresses: a device-visible array (explicit plans, staged
// windows); for plans of at most kInlineChunks chunk copies, the kernel's own parameters (no
// table copy before the launch); or a factored table (TransferPlan: chunk c = outer[c / M] +
// step[c % M]) with the steps in the parameters and one outer entry per pair in device memory,
// so a strided job's table is one entry per pair, not one per chunk. (Parameters over 4 KiB
// need CUDA ≥ 12.1.)
struct DeviceTable {
  const ChunkAddress* chunks;
  __device__ ChunkAddress operator[](uint64_t i) const { return chunks[i]; }
};
struct InlineTable {
  ChunkAddress chunks[kInlineChunks];
  __device__ ChunkAddress operator[](uint64_t i) const { return chunks[i]; }
};
struct FactoredTable {
  const ChunkAddress* outer;  // device-visible, num_chunks / M entries
  FastDivmod steps;           // M
  ChunkAddress step[kInlineSteps];
  __device__ ChunkAddress operator[](uint64_t i) const {
    const uint32_t c = static_cast<uint32_t>(i);  // < kMaxPlanChunks
    const uint32_t o = steps.Div(c);
    const ChunkAddress s = step[c - o * steps.divisor];
    const ChunkAddress b = outer[o];
    return ChunkAddress{b.src + s.src, b.dst + s.dst};
  }
};
static_assert(kMaxPlanChunks <= (int64_t{1} << 32), "FactoredTable indexes chunks in 32 bits");

template <typename Vec>
__device__ __forceinline__ Vec Load(const Vec* p) {
#if KVS_EXP_STREAMING
  return __ldcs(p);
#else
  return *p;
#endif
}

template <typename Vec>
__device__ __forceinline__ void Store(Vec* p, const Vec& v) {
#if KVS_EXP_STREAMING
  __stcs(p, v);
#else
  *p = v;
#endif
}

// The batch is one flat index space of num_chunks × vecs_per_chunk vectors; a tile is
// blockDim.x × kUnroll consecutive vectors and may span several small chunks, so no thread
// idles on chunks smaller than a tile (head-slice and one-layer jobs).
// Loads vector k of this thread's share of one tile; kOneChunk: the whole tile lies in chunk0
// (the common case for chunks ≥ a tile), so the chunk address is read once.
template <int V, bool kOneChunk, typename Table>
__device__ __forceinline__ void CopyTile(const ChunkCopyParams& p, const Table& chunks,
                                         uint64_t chunk0, uint32_t local0) {
  using Vec = typename VecOf<V>::type;
  constexpr int kUnroll = UnrollFor<V>();
  const uint32_t vpc = p.vecs_per_chunk.divisor;
  ChunkAddress c0{};
  if (kOneChunk) c0 = chunks[chunk0];
  Vec regs[kUnroll];
  uint64_t dst[kUnroll];
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const uint32_t t = local0 + threadIdx.x + k * blockDim.x;  // < vpc + tile_vecs
    uint32_t idx = t;
    uint64_t chunk = chunk0;
    if (!kOneChunk) {
      const uint32_t dc = p.vecs_per_chunk.Div(t);
      chunk += dc;
      idx = t - dc * vpc;
    }
    dst[k] = 0;
    if (kOneChunk || chunk < p.num_chunks) {
      const ChunkAddress c = kOneChunk ? c0 : chunks[chunk];
      const uint32_t row = p.vecs_per_row.Div(idx);
      const uint32_t v = idx - row * p.vecs_per_row.divisor;
      const uint32_t outer = p.inner_count.Div(row);
      const uint32_t inner = row - outer * p.inner_count.divisor;
      const uint64_t src = c.src + outer * p.src_outer_stride + inner * p.src_inner_stride +
                           uint64_t{v} * V;
      dst[k] = c.dst + outer * p.dst_outer_stride + inner * p.dst_inner_stride + uint64_t{v} * V;
      regs[k] = Load(reinterpret_cast<const Vec*>(src));
    }
  }
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    if (dst[k] != 0) Store(reinterpret_cast<Vec*>(dst[k]), regs[k]);
  }
}

// The batch is one flat index space of num_chunks × vecs_per_chunk vectors; a tile is
// blockDim.x × kUnroll consecutive vectors and may span several small chunks, so no thread
// idles on chunks smaller than a tile (head-slice and one-layer jobs).
template <int V, typename Table>
__global__ void __launch_bounds__(1024) ChunkCopyKernel(const ChunkCopyParams p,
                                                        const __grid_constant__ Table chunks) {
  const uint32_t tile_vecs = blockDim.x * UnrollFor<V>();
  const uint32_t vpc = p.vecs_per_chunk.divisor;
  for (uint64_t tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
    const uint64_t first = tile * tile_vecs;
    const uint64_t chunk0 = first / vpc;  // once per tile
    const uint32_t local0 = static_cast<uint32_t>(first - chunk0 * vpc);
    if (local0 + tile_vecs <= vpc) {
      CopyTile<V, true>(p, chunks, chunk0, local0);
    } else {
      CopyTile<V, false>(p, chunks, chunk0, local0);
    }
  }
}

// Row-granular transposes of narrow rows (rows not a multiple of 16 bytes, e.g. hd 46 × bf16 =
// 92 bytes) go through shared memory. The flat order above writes each destination run
// contiguously but reads one row at a time; a row that starts mid-sector costs partial sectors
// on every row (docs/performance.md: 2.2× the L2 write sectors, DRAM at 46% of peak). Here a
// CTA takes whole chunks: it reads the chunk in *source* order (runs of outer_count adjacent
// rows, src_outer_stride == row_bytes) into shared memory, then writes it in destination order
// (runs of inner_count adjacent rows, dst_inner_stride == row_bytes). Both sides move whole
// runs of adjacent rows. Shared memory holds flat (outer, inner, vector) order.
inline constexpr int64_t kTransposeMaxChunkBytes = 48 << 10;  // default dynamic smem limit

struct TransposeParams {
  uint64_t num_chunks;
  uint32_t chunk_vecs;
  FastDivmod vecs_per_row;
  FastDivmod outer_run_vecs;  // outer_count × vecs_per_row: one source run
  FastDivmod inner_run_vecs;  // inner_count × vecs_per_row: one destination run
  uint32_t inner_count;
  int64_t src_inner_stride;
  int64_t dst_outer_stride;
};

bool TransposeFits(const ChunkGeometry& g, int alignment) {
  return alignment < 16 && g.inner_count > 1 && g.outer_count > 1 &&
         g.src_outer_stride == g.row_bytes && g.dst_inner_stride == g.row_bytes &&
         g.chunk_bytes() <= kTransposeMaxChunkBytes && TransposeEnabled();
}

template <int V, typename Table>
__global__ void __launch_bounds__(1024) TransposeKernel(const TransposeParams p,
                                                        const __grid_constant__ Table chunks) {
  using Vec = typename VecOf<V>::type;
  constexpr int kUnroll = UnrollFor<V>();
  extern __shared__ uint4 smem_raw[];
  Vec* smem = reinterpret_cast<Vec*>(smem_raw);
  const uint32_t vpr = p.vecs_per_row.divisor;
  const uint32_t outer_vecs = p.outer_run_vecs.divisor;
  const uint32_t inner_vecs = p.inner_run_vecs.divisor;
  for (uint64_t chunk = blockIdx.x; chunk < p.num_chunks; chunk += gridDim.x) {
    const ChunkAddress c = chunks[chunk];
    for (uint32_t s0 = 0; s0 < p.chunk_vecs; s0 += blockDim.x * kUnroll) {
      Vec regs[kUnroll];
      uint32_t slot[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const uint32_t s = s0 + threadIdx.x + k * blockDim.x;  // source order: (inner, outer, v)
        slot[k] = p.chunk_vecs;
        if (s < p.chunk_vecs) {
          const uint32_t i = p.outer_run_vecs.Div(s);
          const uint32_t rest = s - i * outer_vecs;  // (outer, v) within the run
          const uint32_t o = p.vecs_per_row.Div(rest);
          const uint32_t v = rest - o * vpr;
          slot[k] = (o * p.inner_count + i) * vpr + v;
          regs[k] = Load(reinterpret_cast<const Vec*>(c.src + i * p.src_inner_stride +
                                                      uint64_t{rest} * V));
        }
      }
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        if (slot[k] < p.chunk_vecs) smem[slot[k]] = regs[k];
      }
    }
    __syncthreads();
    for (uint32_t f = threadIdx.x; f < p.chunk_vecs; f += blockDim.x) {  // (outer, inner, v)
      const uint32_t o = p.inner_run_vecs.Div(f);
      const uint32_t rest = f - o * inner_vecs;
      Store(reinterpret_cast<Vec*>(c.dst + o * p.dst_outer_stride + uint64_t{rest} * V), smem[f]);
    }
    __syncthreads();  // shared memory is reused by the next chunk
  }
}

template <int V, typename Table>
absl::Status LaunchTranspose(const ChunkGeometry& g, const Table& table, uint64_t num_chunks,
                             int grid_limit, int threads, cudaStream_t stream) {
  TransposeParams p;
  p.num_chunks = num_chunks;
  p.chunk_vecs = static_cast<uint32_t>(g.chunk_bytes() / V);
  p.vecs_per_row = FastDivmod(static_cast<uint32_t>(g.row_bytes / V));
  p.outer_run_vecs = FastDivmod(static_cast<uint32_t>(g.outer_count * g.row_bytes / V));
  p.inner_run_vecs = FastDivmod(static_cast<uint32_t>(g.inner_count * g.row_bytes / V));
  p.inner_count = static_cast<uint32_t>(g.inner_count);
  p.src_inner_stride = g.src_inner_stride;
  p.dst_outer_stride = g.dst_outer_stride;
  const uint64_t grid = std::min<uint64_t>(num_chunks, static_cast<uint64_t>(grid_limit));
  const size_t smem = static_cast<size_t>(g.chunk_bytes());
  TransposeKernel<V, Table><<<static_cast<unsigned>(grid), threads, smem, stream>>>(p, table);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

template <int V, typename Table>
absl::Status Launch(const ChunkGeometry& g, const Table& table, uint64_t num_chunks,
                    int grid_limit, int threads, cudaStream_t stream) {
  if (TransposeFits(g, V)) {
    return LaunchTranspose<V>(g, table, num_chunks, grid_limit, threads, stream);
  }
  ChunkCopyParams p;
  p.num_chunks = num_chunks;
  p.vecs_per_chunk = FastDivmod(static_cast<uint32_t>(g.chunk_bytes() / V));
  const uint64_t tile_vecs = static_cast<uint64_t>(threads) * UnrollFor<V>();
  p.num_tiles = (p.num_chunks * p.vecs_per_chunk.divisor + tile_vecs - 1) / tile_vecs;
  p.vecs_per_row = FastDivmod(static_cast<uint32_t>(g.row_bytes / V));
  p.inner_count = FastDivmod(static_cast<uint32_t>(g.inner_count));
  p.src_inner_stride = g.src_inner_stride;
  p.src_outer_stride = g.src_outer_stride;
  p.dst_inner_stride = g.dst_inner_stride;
  p.dst_outer_stride = g.dst_outer_stride;
  const uint64_t grid = std::min<uint64_t>(p.num_tiles, static_cast<uint64_t>(grid_limit));
  ChunkCopyKernel<V, Table><<<static_cast<unsigned>(grid), threads, 0, stream>>>(p, table);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

int ResidentCtasPerSm(int alignment, int threads) {
  int per_sm = 1;
  const void* kernel = nullptr;
  switch (alignment) {
    case 16: kernel = reinterpret_cast<const void*>(&ChunkCopyKernel<16, DeviceTable>); break;
    case 8: kernel = reinterpret_cast<const void*>(&ChunkCopyKernel<8, DeviceTable>); break;
    case 4: kernel = reinterpret_cast<const void*>(&ChunkCopyKernel<4, DeviceTable>); break;
    case 2: kernel = reinterpret_cast<const void*>(&ChunkCopyKernel<2, DeviceTable>); break;
    default: kernel = reinterpret_cast<const void*>(&ChunkCopyKernel<1, DeviceTable>); break;
  }
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return std::max(per_sm, 1);
}

absl::Status LaunchChunkCopy(const TransferPlan& plan, const ChunkAddress* device_chunks,
                             int grid_limit, int threads, cudaStream_t stream) {
  return LaunchChunkCopy(plan.geometry(), plan.alignment(), device_chunks,
                         static_cast<uint64_t>(plan.num_chunks()), grid_limit, threads, stream);
}

namespace {

absl::Status CheckLaunch(int grid_limit, int threads) {
  if (grid_limit < 1 || threads < 32 || threads > 1024 || threads % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("LaunchChunkCopy: grid_limit ", grid_limit,
                                                   " must be ≥ 1 and threads ", threads,
                                                   " a multiple of 32 in [32, 1024]"));
  }
  return absl::OkStatus();
}

// Dispatches on the vector width (the one place that maps alignment → kernel).
template <typename Table>
absl::Status Dispatch(const ChunkGeometry& g, int alignment, const Table& table,
                      uint64_t num_chunks, int grid_limit, int threads, cudaStream_t stream) {
  switch (alignment) {
    case 16: return Launch<16>(g, table, num_chunks, grid_limit, threads, stream);
    case 8: return Launch<8>(g, table, num_chunks, grid_limit, threads, stream);
    case 4: return Launch<4>(g, table, num_chunks, grid_limit, threads, stream);
    case 2: return Launch<2>(g, table, num_chunks, grid_limit, threads, stream);
    case 1: return Launch<1>(g, table, num_chunks, grid_limit, threads, stream);
    default:
      return absl::InternalError(
          absl::StrCat("LaunchChunkCopy: unsupported vector width ", alignment));
  }
}

}  // namespace

absl::Status LaunchChunkCopy(const ChunkGeometry& geometry, int alignment,
                             const ChunkAddress* device_chunks, uint64_t num_chunks,
                             int grid_limit, int threads, cudaStream_t stream) {
  if (num_chunks == 0) return absl::OkStatus();
  RETURN_IF_ERROR(CheckLaunch(grid_limit, threads));
  return Dispatch(geometry, alignment, DeviceTable{device_chunks}, num_chunks, grid_limit,
                  threads, stream);
}

absl::Status LaunchChunkCopyInline(const TransferPlan& plan, int grid_limit, int threads,
                                   cudaStream_t stream) {
  const int64_t n = plan.num_chunks();
  if (n == 0) return absl::OkStatus();
  if (n > kInlineChunks) {
    return absl::InvalidArgumentError(absl::StrCat("LaunchChunkCopyInline: ", n,
                                                   " chunk copies; at most ", kInlineChunks));
  }
  RETURN_IF_ERROR(CheckLaunch(grid_limit, threads));
  InlineTable table{};
  for (int64_t k = 0; k < n; ++k) table.chunks[k] = plan.ChunkAt(k);
  return Dispatch(plan.geometry(), plan.alignment(), table, static_cast<uint64_t>(n), grid_limit,
                  threads, stream);
}

absl::Status LaunchChunkCopyFactored(const TransferPlan& plan, const ChunkAddress* device_outer,
                                     int grid_limit, int threads, cudaStream_t stream) {
  const int64_t n = plan.num_chunks();
  if (n == 0) return absl::OkStatus();
  const std::vector<ChunkAddress>& steps = plan.steps();
  if (steps.size() > static_cast<size_t>(kInlineSteps) || device_outer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LaunchChunkCopyFactored: ", steps.size(), " steps (at most ", kInlineSteps,
        ") and a ", device_outer == nullptr ? "null" : "non-null", " outer table"));
  }
  RETURN_IF_ERROR(CheckLaunch(grid_limit, threads));
  FactoredTable table{};
  table.outer = device_outer;
  table.steps = FastDivmod(static_cast<uint32_t>(steps.size()));
  std::copy(steps.begin(), steps.end(), table.step);
  return Dispatch(plan.geometry(), plan.alignment(), table, static_cast<uint64_t>(n), grid_limit,
                  threads, stream);
}

}  // namespace kvshuttle
