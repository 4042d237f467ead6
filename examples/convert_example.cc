// The in-process API in one page: write the 2-head slice of one tensor-parallel rank from a
// vLLM-style NHD block stack into an 8-head universal block, on the GPU, without the daemon.
// docs/kernels.md walks through it. Build: part of the CMake build (needs CUDA).
#include <cstdio>
#include <vector>

#include "core/plan.h"
#include "core/status_macros.h"
#include "kernels/converter.h"
#include "kernels/cuda_check.h"

namespace {

using namespace kvshuttle;

absl::Status Example() {
  // Rank 1 of TP 4: 2 of 8 KV heads, 4 layers, K and V, 16 tokens per block, head dim 128.
  const int64_t rank = 1, nb = 2;
  LayoutDesc worker{LayoutKind::kNHDStack, BlockShape{4, 2, 16, 2, 128}, DType::kBF16};
  LayoutDesc store{LayoutKind::kUniversal, BlockShape{4, 2, 16, 8, 128}, DType::kBF16};

  // Memory: one device buffer per side. A stack block is nl*no chunk addresses in
  // (layer, outer) order; a universal block is one address.
  const int64_t chunk_bytes = BytesPerAddress(worker.kind, worker.shape, 2);
  const int64_t block_bytes = BytesPerAddress(store.kind, store.shape, 2);
  ASSIGN_OR_RETURN(DeviceBuffer src, DeviceBuffer::Create(0, nb * 8 * chunk_bytes));
  ASSIGN_OR_RETURN(DeviceBuffer dst, DeviceBuffer::Create(0, nb * block_bytes));
  CUDA_RETURN_IF_ERROR(cudaMemset(src.data(), 0x11, src.size()));
  std::vector<uint64_t> src_chunks, dst_blocks;
  for (int64_t i = 0; i < nb * 8; ++i) src_chunks.push_back(src.address() + i * chunk_bytes);
  for (int64_t i = 0; i < nb; ++i) dst_blocks.push_back(dst.address() + i * block_bytes);

  // What to move: all of the worker's heads into the store at head offset 2*rank.
  TransferSpec spec;
  spec.src = worker;
  spec.dst = store;
  spec.heads = AxisRange{/*src_offset=*/0, /*dst_offset=*/2 * rank, /*count=*/2};
  // Worker block 0 → store block 1, worker block 1 → store block 0.
  const std::vector<BlockPair> pairs = {{0, 1, 0, 0}, {1, 0, 0, 0}};

  // Plan on the host (validates everything), then enqueue one launch on a stream.
  ASSIGN_OR_RETURN(TransferPlan plan, TransferPlan::Build(spec, src_chunks, dst_blocks, pairs));
  ASSIGN_OR_RETURN(std::unique_ptr<Converter> converter, Converter::Create(0));
  cudaStream_t stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream));
  ASSIGN_OR_RETURN(Backend used, converter->Enqueue(plan, LaunchOptions{}, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  CUDA_RETURN_IF_ERROR(cudaStreamDestroy(stream));
  std::printf("moved %lld bytes in %zu chunk copies with backend %s\n",
              static_cast<long long>(plan.bytes()), static_cast<size_t>(plan.num_chunks()),
              std::string(BackendName(used)).c_str());
  return absl::OkStatus();
}

}  // namespace

int main() {
  const absl::Status status = Example();
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.ToString()).c_str());
    return 1;
  }
  return 0;
}
