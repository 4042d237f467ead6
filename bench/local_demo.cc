// kvs_local_demo: converts a batch through every ordered layout pair in-process — on the GPU
// with the kernel backend when one is present, with the CPU executor otherwise — checks every
// result byte-for-byte against the CPU reference and prints the throughput. `make run` runs it.
#include <chrono>
#include <functional>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "core/plan.h"
#include "core/reference.h"
#include "core/status_macros.h"
#ifdef KVS_HAVE_CUDA
#include "kernels/converter.h"
#include "kernels/cuda_check.h"
#endif

namespace kvshuttle {
namespace {

constexpr LayoutKind kKinds[] = {LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                 LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND,
                                 LayoutKind::kUniversal};

// Address table for `nb` blocks laid out back to back from `base`.
std::vector<uint64_t> Table(const LayoutDesc& d, int64_t nb, uint64_t base) {
  const int64_t per = AddressesPerBlock(d.kind, d.shape);
  const int64_t bytes = BytesPerAddress(d.kind, d.shape, DTypeSize(d.dtype));
  std::vector<uint64_t> table(nb * per);
  for (int64_t i = 0; i < nb * per; ++i) table[i] = base + i * bytes;
  return table;
}

// Moves `bytes` from a GPU or host buffer; returns seconds per conversion.
using RunFn = std::function<absl::StatusOr<double>(const TransferSpec&, std::vector<uint8_t>&,
                                                   std::vector<uint8_t>&,
                                                   absl::Span<const BlockPair>)>;

absl::StatusOr<double> RunOnHost(const TransferSpec& spec, std::vector<uint8_t>& src,
                                 std::vector<uint8_t>& dst, absl::Span<const BlockPair> pairs) {
  const int64_t nb = static_cast<int64_t>(pairs.size());
  const auto st = Table(spec.src, nb, reinterpret_cast<uint64_t>(src.data()));
  const auto dt = Table(spec.dst, nb, reinterpret_cast<uint64_t>(dst.data()));
  ASSIGN_OR_RETURN(TransferPlan plan, TransferPlan::Build(spec, st, dt, pairs));
  const auto t0 = std::chrono::steady_clock::now();
  ExecutePlanOnHost(plan, 2);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

#ifdef KVS_HAVE_CUDA
absl::StatusOr<double> RunOnGpu(Converter& conv, const TransferSpec& spec,
                                std::vector<uint8_t>& src, std::vector<uint8_t>& dst,
                                absl::Span<const BlockPair> pairs) {
  const int64_t nb = static_cast<int64_t>(pairs.size());
  ASSIGN_OR_RETURN(DeviceBuffer dsrc, DeviceBuffer::Create(conv.device(), src.size()));
  ASSIGN_OR_RETURN(DeviceBuffer ddst, DeviceBuffer::Create(conv.device(), dst.size()));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(dsrc.data(), src.data(), src.size(), cudaMemcpyDefault));
  const auto st = Table(spec.src, nb, dsrc.address());
  const auto dt = Table(spec.dst, nb, ddst.address());
  ASSIGN_OR_RETURN(TransferPlan plan, TransferPlan::Build(spec, st, dt, pairs));
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  constexpr int kIters = 20;
  LaunchOptions options{Backend::kKernel, 0};
  RETURN_IF_ERROR(conv.Enqueue(plan, options, nullptr).status());  // warm-up
  CUDA_RETURN_IF_ERROR(cudaEventRecord(start, nullptr));
  for (int i = 0; i < kIters; ++i) RETURN_IF_ERROR(conv.Enqueue(plan, options, nullptr).status());
  CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, nullptr));
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  CUDA_RETURN_IF_ERROR(cudaMemcpy(dst.data(), ddst.data(), dst.size(), cudaMemcpyDefault));
  return ms / 1e3 / kIters;
}
#endif

absl::Status Demo() {
  RunFn run = RunOnHost;
  const char* where = "CPU executor (no GPU)";
#ifdef KVS_HAVE_CUDA
  int devices = 0;
  std::unique_ptr<Converter> conv;
  static char name[256 + 32];
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    ASSIGN_OR_RETURN(conv, Converter::Create(0));
    cudaDeviceProp prop{};
    CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
    std::snprintf(name, sizeof(name), "GPU 0: %s, kernel backend", prop.name);
    where = name;
    run = [&conv](const TransferSpec& s, std::vector<uint8_t>& a, std::vector<uint8_t>& b,
                  absl::Span<const BlockPair> p) { return RunOnGpu(*conv, s, a, b, p); };
  }
#endif
  const BlockShape shape{/*nl=*/8, /*no=*/2, /*nt=*/16, /*nh=*/8, /*hd=*/128};
  const int64_t nb = 16;
  const int64_t block_bytes = shape.nl * shape.no * shape.nt * shape.nh * shape.hd * 2;
  std::printf("kvshuttle demo on %s: %lld blocks of nl=8 no=2 nt=16 nh=8 hd=128 bf16 (%.1f MiB)\n",
              where, static_cast<long long>(nb), nb * block_bytes / 1048576.0);
  std::printf("%-16s -> %-16s %10s  %s\n", "from", "to", "GB/s", "check");
  std::vector<uint8_t> src(nb * block_bytes), dst(src.size()), ref(src.size());
  std::mt19937_64 rng(42);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  std::vector<BlockPair> pairs(nb);
  for (int64_t i = 0; i < nb; ++i) pairs[i] = {i, (i * 5 + 3) % nb, 0, 0};
  int failures = 0;
  for (LayoutKind from : kKinds) {
    for (LayoutKind to : kKinds) {
      TransferSpec spec;
      spec.src = {from, shape, DType::kBF16};
      spec.dst = {to, shape, DType::kBF16};
      std::memset(dst.data(), 0xCD, dst.size());
      std::memset(ref.data(), 0xCD, ref.size());
      ASSIGN_OR_RETURN(const double seconds, run(spec, src, dst, pairs));
      RETURN_IF_ERROR(ReferenceConvert(
          spec, Table(spec.src, nb, reinterpret_cast<uint64_t>(src.data())),
          Table(spec.dst, nb, reinterpret_cast<uint64_t>(ref.data())), pairs, 2));
      const bool ok = dst == ref;
      failures += ok ? 0 : 1;
      std::printf("%-16s -> %-16s %10.1f  %s\n", std::string(LayoutKindName(from)).c_str(),
                  std::string(LayoutKindName(to)).c_str(), src.size() / seconds / 1e9,
                  ok ? "byte-exact" : "MISMATCH");
    }
  }
  if (failures > 0) return absl::InternalError(absl::StrCat(failures, " conversions mismatched"));
  std::printf("all 25 layout pairs byte-exact against the CPU reference\n");
  return absl::OkStatus();
}

}  // namespace
}  // namespace kvshuttle

int main() {
  const absl::Status status = kvshuttle::Demo();
  if (!status.ok()) {
    std::fprintf(stderr, "demo failed: %s\n", std::string(status.ToString()).c_str());
    return 1;
  }
  return 0;
}
