// Multi-GPU integration test: one kvshuttled serving two GPUs. This process lends each GPU's
// memory through CUDA IPC; one batch carries jobs for both GPUs; each job must run on its own
// GPU's worker (JobResult.executor), the two workers' busy intervals must overlap (they run
// concurrently, not one after the other), and every byte must match ReferenceConvert.
// Exits 77 (skipped) with fewer than two CUDA devices.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "client/cuda_memory.h"
#include "core/reference.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

// Per GPU: NHD stacks → universal blocks, 32 blocks of 1 MiB (bf16), 24 jobs per GPU.
const BlockShape kShape{8, 2, 32, 8, 128};
constexpr int64_t kBlocks = 32;
constexpr int kJobsPerGpu = 24;

struct GpuSide {
  std::string uuid;
  std::unique_ptr<CudaMemory> memory;
  std::vector<uint8_t> mirror;
  uint64_t src = 0, dst = 0;  // block set ids
};

TEST(GpuMultiTest, OneBatchRunsOnBothGpusConcurrentlyByteExact) {
  const std::vector<CudaDeviceId> devices = VisibleCudaDevices();
  ASSERT_GE(devices.size(), 2u);
  DaemonConfig config;
  config.gpus = true;
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DaemonProcess> daemon, DaemonProcess::Start(config));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon->client(), "it-multi-gpu", true));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, kShape, DType::kBF16);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, kShape, DType::kBF16);
  const uint64_t chunk = BytesPerAddress(nhd.kind, nhd.shape, 2);
  const uint64_t block = BytesPerAddress(uni.kind, uni.shape, 2);
  const uint64_t half = kBlocks * block;  // src stacks in [0, half), universal in [half, 2 half)
  std::vector<GpuSide> gpus(2);
  v1::SubmitBatchRequest batch;
  for (int g = 0; g < 2; ++g) {
    GpuSide& side = gpus[g];
    side.uuid = devices[g].uuid;
    KVS_ASSERT_OK_AND_ASSIGN(side.memory, CudaMemory::Allocate(devices[g].ordinal, 2 * half));
    side.mirror.resize(2 * half);
    FillRandom(side.mirror.data(), side.mirror.size(), 100 + g);
    KVS_ASSERT_OK(side.memory->CopyFromHost(0, side.mirror.data(), side.mirror.size()));
    KVS_ASSERT_OK_AND_ASSIGN(
        v1::RegisterRegionResponse region,
        session->RegisterCudaIpcRegion(side.memory->ipc_handle(), side.uuid, 0, 2 * half));
    const uint64_t region_id = region.region().region_id();
    v1::StridedPlacement stacks, blocks;
    const int64_t slots = kShape.nl * kShape.no;
    for (int64_t s = 0; s < slots; ++s) {
      v1::SlotBase* b = stacks.add_slots();
      b->set_region_id(region_id);
      b->set_offset(s * kBlocks * chunk);
    }
    stacks.set_block_stride(chunk);
    v1::SlotBase* b = blocks.add_slots();
    b->set_region_id(region_id);
    b->set_offset(half);
    blocks.set_block_stride(block);
    KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterBlockSetResponse src,
                             session->RegisterBlockSet(LayoutToProto(nhd), kBlocks, stacks));
    KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterBlockSetResponse dst,
                             session->RegisterBlockSet(LayoutToProto(uni), kBlocks, blocks));
    side.src = src.block_set().block_set_id();
    side.dst = dst.block_set().block_set_id();
  }
  // Interleave the two GPUs' jobs in one batch; every job converts all blocks (i → i).
  std::vector<BlockPair> pairs;
  for (int64_t i = 0; i < kBlocks; ++i) pairs.push_back({i, i, 0, 0});
  for (int j = 0; j < kJobsPerGpu; ++j) {
    for (int g = 0; g < 2; ++g) {
      v1::Endpoint src, dst;
      src.set_block_set_id(gpus[g].src);
      dst.set_block_set_id(gpus[g].dst);
      *batch.add_jobs() = MakeJob(src, dst, WholeBlocks(nhd, uni), pairs);
    }
  }
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session->SubmitBatch(batch));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done,
                           session->Wait(submitted.job_ids(), absl::Seconds(60)));
  ASSERT_TRUE(done.all_done());
  double first_launch[2] = {1e9, 1e9}, last_done[2] = {0, 0};
  for (int k = 0; k < done.results_size(); ++k) {
    const v1::JobResult& r = done.results(k);
    const int g = k % 2;
    ASSERT_EQ(r.state(), v1::JOB_DONE) << r.DebugString();
    EXPECT_EQ(r.executor(), "gpu:" + gpus[g].uuid);
    first_launch[g] = std::min(first_launch[g], r.queue_seconds());
    last_done[g] = std::max(last_done[g], r.queue_seconds() + r.run_seconds());
  }
  std::printf("gpu0 busy [%.3f, %.3f] ms, gpu1 busy [%.3f, %.3f] ms after submission\n",
              first_launch[0] * 1e3, last_done[0] * 1e3, first_launch[1] * 1e3, last_done[1] * 1e3);
  // Concurrent: each GPU started before the other finished.
  EXPECT_LT(first_launch[1], last_done[0]);
  EXPECT_LT(first_launch[0], last_done[1]);
  for (int g = 0; g < 2; ++g) {
    std::vector<uint8_t> expected = gpus[g].mirror;
    std::vector<uint64_t> src_table, dst_table;
    const uint64_t base = reinterpret_cast<uint64_t>(gpus[g].mirror.data());
    const uint64_t out = reinterpret_cast<uint64_t>(expected.data());
    for (int64_t b = 0; b < kBlocks; ++b) {
      for (int64_t s = 0; s < kShape.nl * kShape.no; ++s) {
        src_table.push_back(base + (s * kBlocks + b) * chunk);
      }
      dst_table.push_back(out + half + b * block);
    }
    KVS_ASSERT_OK(ReferenceConvert(WholeBlocks(nhd, uni), src_table, dst_table, pairs, 4));
    std::vector<uint8_t> actual(expected.size());
    KVS_ASSERT_OK(gpus[g].memory->CopyToHost(0, actual.data(), actual.size()));
    EXPECT_TRUE(BytesEqual(actual.data(), expected)) << "GPU " << g;
  }
  session.reset();
}

}  // namespace
}  // namespace kvshuttle::it

// Skips (exit 77, CTest: skipped) with fewer than two CUDA devices.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count < 2) {
    std::printf("SKIPPED: needs 2 CUDA devices (cudaGetDeviceCount: %s, %d)\n",
                error == cudaSuccess ? "ok" : cudaGetErrorName(error), count);
    return 77;
  }
  return RUN_ALL_TESTS();
}
