// GPU tier of the integration tests: a kvshuttled with GPUs, and this process (a separate one,
// as legacy CUDA IPC requires) lending it device memory through a CUDA IPC handle of an
// allocation's base plus a nonzero offset. Conversions NHD stack → device pool (universal) →
// HND stack, and device ⇄ host shm, are checked byte for byte against ReferenceConvert on a
// host mirror of the whole allocation. IPC errors: bad handle, size past the allocation, wrong
// GPU UUID. Exits 77 with a SKIPPED line when no CUDA device is usable.
#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <cstdio>
#include <numeric>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cuda_memory.h"
#include "client/stream_gate.h"
#include "core/status_macros.h"
#include "core/reference.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

constexpr size_t kAllocationBytes = size_t{8} << 20;
// The region starts inside the allocation (PyTorch's _share_cuda_ gives base handle + offset).
constexpr uint64_t kRegionOffset = (uint64_t{1} << 20) + 256;
constexpr uint64_t kRegionBytes = uint64_t{5} << 20;
constexpr int64_t kBlocks = 8;
const BlockShape kShape{2, 2, 16, 8, 128};  // bf16: 32 KiB chunks, 128 KiB blocks

class GpuIpcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::vector<CudaDeviceId> devices = VisibleCudaDevices();
    ASSERT_FALSE(devices.empty());
    uuid_ = new std::string(devices.front().uuid);
    DaemonConfig config;
    config.gpus = true;
    // Jobs over 1 MiB run in slices of ~1 MiB (the default is 256 MiB): every multi-pair job
    // of this suite above that size is sliced.
    config.flags = {"--gpu_slice_mib=1"};
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon = DaemonProcess::Start(config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
    delete uuid_;
    uuid_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(daemon_, nullptr) << "the daemon did not start";
    KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, daemon_->client().GetInfo());
    bool seen = false;
    for (const v1::DeviceInfo& d : info.devices()) seen = seen || d.uuid() == *uuid_;
    ASSERT_TRUE(seen) << "the daemon does not see " << *uuid_ << ": " << info.DebugString();
    KVS_ASSERT_OK_AND_ASSIGN(session_, Session::Open(daemon_->client(), "it-gpu", true));
    KVS_ASSERT_OK_AND_ASSIGN(memory_, CudaMemory::Allocate(0, kAllocationBytes));
    mirror_.resize(kAllocationBytes);
    FillRandom(mirror_.data(), mirror_.size(), 2024);
    KVS_ASSERT_OK(memory_->CopyFromHost(0, mirror_.data(), mirror_.size()));
  }
  void TearDown() override {
    session_.reset();  // before memory_: the daemon closes its IPC mapping first
    memory_.reset();
    if (HasFailure() && daemon_ != nullptr) {
      std::printf("--- kvshuttled output ---\n%s\n", daemon_->Stderr().c_str());
    }
  }

  // Registers the IPC region [kRegionOffset, +kRegionBytes) of the allocation.
  absl::StatusOr<uint64_t> RegisterRegion() {
    absl::StatusOr<v1::RegisterRegionResponse> r = session_->RegisterCudaIpcRegion(
        memory_->ipc_handle(), *uuid_, kRegionOffset, kRegionBytes, "gpu-region");
    if (!r.ok()) return r.status();
    if (r->region().memory() != v1::MEMORY_DEVICE || r->region().gpu_uuid() != *uuid_) {
      return absl::InternalError(absl::StrCat("unexpected region: ", r->DebugString()));
    }
    return r->region().region_id();
  }

  // A block set of `layout` in the region at region offset `at`: strided (vLLM style) or a
  // shuffled explicit table. `offsets` receives the block-major piece offsets in the region.
  absl::StatusOr<uint64_t> RegisterDeviceBlockSet(uint64_t region_id, const LayoutDesc& layout,
                                                  uint64_t at, bool strided,
                                                  std::vector<uint64_t>& offsets) {
    const int64_t slots = AddressesPerBlock(layout.kind, layout.shape);
    const uint64_t piece = BytesPerAddress(layout.kind, layout.shape, DTypeSize(layout.dtype));
    std::vector<uint64_t> position(slots * kBlocks);
    for (int64_t b = 0; b < kBlocks; ++b) {
      for (int64_t s = 0; s < slots; ++s) position[b * slots + s] = s * kBlocks + b;
    }
    if (!strided) std::shuffle(position.begin(), position.end(), std::mt19937_64(7));
    offsets.clear();
    for (uint64_t p : position) offsets.push_back(at + p * piece);
    absl::StatusOr<v1::RegisterBlockSetResponse> r;
    if (strided) {
      v1::StridedPlacement placement;
      for (int64_t s = 0; s < slots; ++s) {
        v1::SlotBase* slot = placement.add_slots();
        slot->set_region_id(region_id);
        slot->set_offset(offsets[s]);
      }
      placement.set_block_stride(piece);
      r = session_->RegisterBlockSet(LayoutToProto(layout), kBlocks, placement);
    } else {
      v1::ExplicitPlacement table;
      for (uint64_t offset : offsets) {
        v1::SlotBase* a = table.add_addresses();
        a->set_region_id(region_id);
        a->set_offset(offset);
      }
      r = session_->RegisterBlockSet(LayoutToProto(layout), kBlocks, table);
    }
    if (!r.ok()) return r.status();
    if (r->block_set().memory() != v1::MEMORY_DEVICE) {
      return absl::InternalError(absl::StrCat("not device memory: ", r->DebugString()));
    }
    return r->block_set().block_set_id();
  }

  // Addresses of region offsets inside a host copy of the whole allocation.
  static std::vector<uint64_t> MirrorTable(const std::vector<uint8_t>& copy,
                                           const std::vector<uint64_t>& offsets) {
    std::vector<uint64_t> table;
    for (uint64_t o : offsets)
      table.push_back(reinterpret_cast<uint64_t>(copy.data()) + kRegionOffset + o);
    return table;
  }

  ::testing::AssertionResult DeviceEquals(const std::vector<uint8_t>& expected) {
    std::vector<uint8_t> actual(kAllocationBytes);
    const absl::Status copied = memory_->CopyToHost(0, actual.data(), actual.size());
    if (!copied.ok()) return ::testing::AssertionFailure() << copied;
    return BytesEqual(actual.data(), expected);
  }

  static v1::Endpoint BlockSet(uint64_t id) {
    v1::Endpoint e;
    e.set_block_set_id(id);
    return e;
  }

  static DaemonProcess* daemon_;
  static std::string* uuid_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<CudaMemory> memory_;
  std::vector<uint8_t> mirror_;
};

DaemonProcess* GpuIpcTest::daemon_ = nullptr;
std::string* GpuIpcTest::uuid_ = nullptr;

TEST_F(GpuIpcTest, NhdStackToDevicePoolToHndStackIsByteExact) {
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t region, RegisterRegion());
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, kShape, DType::kBF16);
  const LayoutDesc hnd = MakeLayout(LayoutKind::kHNDStack, kShape, DType::kBF16);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, kShape, DType::kBF16);
  std::vector<uint64_t> nhd_offsets, hnd_offsets;
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t src,
                           RegisterDeviceBlockSet(region, nhd, 0, true, nhd_offsets));
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t dst,
                           RegisterDeviceBlockSet(region, hnd, 2 << 20, false, hnd_offsets));
  KVS_ASSERT_OK(
      session_->CreatePool("it-gpu-pool", LayoutToProto(uni), 16, v1::MEMORY_DEVICE, *uuid_));
  KVS_ASSERT_OK_AND_ASSIGN(v1::AllocateBlocksResponse blocks,
                           session_->AllocateBlocks("it-gpu-pool", kBlocks));

  std::vector<int64_t> order(kBlocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  std::vector<BlockPair> offload, reload, direct;
  for (int64_t i = 0; i < kBlocks; ++i) {
    offload.push_back({i, blocks.block_ids(i), 0, 0});
    reload.push_back({blocks.block_ids(i), order[i], 0, 0});
    direct.push_back({i, order[i], 0, 0});
  }
  std::vector<uint8_t> expected = mirror_;
  KVS_ASSERT_OK(ReferenceConvert(WholeBlocks(nhd, hnd), MirrorTable(mirror_, nhd_offsets),
                                 MirrorTable(expected, hnd_offsets), direct, 4));

  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse first,
                           RunBatch(*session_, {MakeJob(BlockSet(src), PoolEndpoint("it-gpu-pool"),
                                                        WholeBlocks(nhd, uni), offload)}));
  ASSERT_TRUE(first.all_done());
  EXPECT_EQ(first.results(0).state(), v1::JOB_DONE) << first.DebugString();
  EXPECT_EQ(first.results(0).executor(), "gpu:" + *uuid_);
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse second,
                           RunBatch(*session_, {MakeJob(PoolEndpoint("it-gpu-pool"), BlockSet(dst),
                                                        WholeBlocks(uni, hnd), reload)}));
  ASSERT_TRUE(second.all_done());
  EXPECT_EQ(second.results(0).state(), v1::JOB_DONE) << second.DebugString();
  EXPECT_TRUE(DeviceEquals(expected));
  KVS_ASSERT_OK(session_->DestroyPool("it-gpu-pool"));
}

TEST_F(GpuIpcTest, DeviceAndPinnedHostShmConvertBothWays) {
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t region, RegisterRegion());
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, kShape, DType::kBF16);
  const LayoutDesc hnd = MakeLayout(LayoutKind::kHNDStack, kShape, DType::kBF16);
  std::vector<uint64_t> dev_offsets;
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t dev,
                           RegisterDeviceBlockSet(region, nhd, 4096, true, dev_offsets));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet host,
                           MakeHostBlockSet(*session_, hnd, kBlocks, Placement::kExplicit, 9));

  // Device NHD → host HND.
  const std::vector<BlockPair> pairs = {{0, 3, 0, 0}, {5, 0, 0, 0}, {7, 7, 0, 0}};
  std::vector<uint8_t> host_expected = host.Snapshot();
  KVS_ASSERT_OK(ReferenceConvert(WholeBlocks(nhd, hnd), MirrorTable(mirror_, dev_offsets),
                                 host.Table(host_expected.data()), pairs, 1));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse d2h,
      RunBatch(*session_, {MakeJob(BlockSet(dev), host.endpoint(), WholeBlocks(nhd, hnd), pairs)}));
  ASSERT_TRUE(d2h.all_done());
  EXPECT_EQ(d2h.results(0).state(), v1::JOB_DONE) << d2h.DebugString();
  EXPECT_EQ(d2h.results(0).executor(), "gpu:" + *uuid_);
  EXPECT_TRUE(BytesEqual(host.data(), host_expected));

  // Host HND (fresh bytes) → device NHD, heads 2..5 only.
  FillRandom(host.data(), host.bytes(), 10);
  TransferSpec heads = WholeBlocks(hnd, nhd);
  heads.heads = AxisRange{2, 2, 4};
  std::vector<uint8_t> expected = mirror_;
  KVS_ASSERT_OK(ReferenceConvert(heads, host.Table(host.data()), MirrorTable(expected, dev_offsets),
                                 pairs, 1));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse h2d,
      RunBatch(*session_, {MakeJob(host.endpoint(), BlockSet(dev), heads, pairs)}));
  ASSERT_TRUE(h2d.all_done());
  EXPECT_EQ(h2d.results(0).state(), v1::JOB_DONE) << h2d.DebugString();
  EXPECT_TRUE(DeviceEquals(expected));
}

// Issue #13, defect 1 on the GPU path: a client shrinks the named shm object under GPU jobs in
// both directions. The daemon never touches those pages with its CPU (the GPU copies them
// through the pinning it did at registration), so it must survive: whatever the jobs report,
// it stays SERVING and the next conversion on the same GPU is byte-exact.
TEST_F(GpuIpcTest, ATruncatedShmObjectUnderAGpuJobLeavesTheDaemonServing) {
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t region, RegisterRegion());
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, kShape, DType::kBF16);
  const LayoutDesc hnd = MakeLayout(LayoutKind::kHNDStack, kShape, DType::kBF16);
  std::vector<uint64_t> dev_offsets;
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t dev,
                           RegisterDeviceBlockSet(region, nhd, 4096, true, dev_offsets));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet host,
                           MakeHostBlockSet(*session_, hnd, kBlocks, Placement::kExplicit, 11));
  const int fd = shm_open(host.shm->name().c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 0), 0);  // this process must not touch host.data() from here on
  close(fd);
  const std::vector<BlockPair> pairs = {{0, 3, 0, 0}, {5, 0, 0, 0}};
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse d2h,
      RunBatch(*session_, {MakeJob(BlockSet(dev), host.endpoint(), WholeBlocks(nhd, hnd), pairs),
                           MakeJob(host.endpoint(), BlockSet(dev), WholeBlocks(hnd, nhd), pairs)}));
  ASSERT_TRUE(d2h.all_done()) << d2h.DebugString();
  std::printf("jobs over the truncated object: %s / %s\n",
              v1::JobState_Name(d2h.results(0).state()).c_str(),
              v1::JobState_Name(d2h.results(1).state()).c_str());
  KVS_ASSERT_OK_AND_ASSIGN(health_v1::HealthCheckResponse::ServingStatus health,
                           daemon_->client().Health());
  EXPECT_EQ(health, health_v1::HealthCheckResponse::SERVING);
  // A fresh host object, the same GPU: byte-exact.
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet fresh,
                           MakeHostBlockSet(*session_, hnd, kBlocks, Placement::kExplicit, 12));
  std::vector<uint8_t> now(kAllocationBytes);
  KVS_ASSERT_OK(memory_->CopyToHost(0, now.data(), now.size()));
  std::vector<uint8_t> expected = fresh.Snapshot();
  KVS_ASSERT_OK(ReferenceConvert(WholeBlocks(nhd, hnd), MirrorTable(now, dev_offsets),
                                 fresh.Table(expected.data()), pairs, 1));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse again,
      RunBatch(*session_, {MakeJob(BlockSet(dev), fresh.endpoint(), WholeBlocks(nhd, hnd), pairs)}));
  EXPECT_EQ(again.results(0).state(), v1::JOB_DONE) << again.DebugString();
  EXPECT_TRUE(BytesEqual(fresh.data(), expected));
  EXPECT_TRUE(daemon_->running()) << daemon_->Stderr();
}

// Issue #13, deliverable 3 on the GPU: a long job runs in slices of whole pairs (here ~1 MiB):
// the result is byte-exact, and CancelJobs stops it between slices (JOB_CANCELLED, "stopped
// while running"), after which the worker serves the next job.
TEST_F(GpuIpcTest, ALongJobRunsInSlicesAndStopsWhenCancelled) {
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t region, RegisterRegion());
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, kShape, DType::kBF16);
  const LayoutDesc hnd = MakeLayout(LayoutKind::kHNDStack, kShape, DType::kBF16);
  std::vector<uint64_t> dev_offsets;
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t dev,
                           RegisterDeviceBlockSet(region, nhd, 4096, true, dev_offsets));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet host,
                           MakeHostBlockSet(*session_, hnd, kBlocks, Placement::kExplicit, 13));
  // 64 pairs (8 MiB, 8 slices): a permutation of the 8 blocks, 8 times over (each destination
  // block gets the same bytes every time, so the order of the slices cannot show).
  std::vector<BlockPair> pairs;
  for (int r = 0; r < 8; ++r) {
    for (int64_t b = 0; b < kBlocks; ++b) pairs.push_back({b, (b * 3 + 1) % kBlocks, 0, 0});
  }
  std::vector<uint8_t> expected = host.Snapshot();
  KVS_ASSERT_OK(ReferenceConvert(WholeBlocks(nhd, hnd), MirrorTable(mirror_, dev_offsets),
                                 host.Table(expected.data()), pairs, 1));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse sliced,
      RunBatch(*session_, {MakeJob(BlockSet(dev), host.endpoint(), WholeBlocks(nhd, hnd), pairs)}));
  EXPECT_EQ(sliced.results(0).state(), v1::JOB_DONE) << sliced.DebugString();
  EXPECT_EQ(sliced.results(0).bytes(), uint64_t{64} * 128 * 1024);
  EXPECT_TRUE(BytesEqual(host.data(), expected));

  // 65,536 pairs of one block to pinned host memory: 8 GiB over PCIe, some 8,000 slices.
  const std::vector<BlockPair> many(65536, BlockPair{0, 0, 0, 0});
  v1::SubmitBatchRequest batch;
  *batch.add_jobs() = MakeJob(BlockSet(dev), host.endpoint(), WholeBlocks(nhd, hnd), many);
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session_->SubmitBatch(batch));
  const std::vector<uint64_t> ids = {submitted.job_ids(0)};
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::WaitResponse> now = session_->Wait(ids, absl::Milliseconds(-1));
        return now.ok() && now->results(0).state() == v1::JOB_RUNNING;
      },
      absl::Seconds(5)));
  const absl::Time cancel = absl::Now();
  KVS_ASSERT_OK_AND_ASSIGN(v1::CancelJobsResponse cancelled, session_->CancelJobs(ids));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse stopped, session_->Wait(ids, absl::Seconds(30)));
  const absl::Duration took = absl::Now() - cancel;
  ASSERT_TRUE(stopped.all_done()) << stopped.DebugString();
  EXPECT_EQ(stopped.results(0).state(), v1::JOB_CANCELLED) << stopped.DebugString();
  EXPECT_TRUE(absl::StrContains(stopped.results(0).message(), "stopped while running"))
      << stopped.DebugString();
  EXPECT_LT(took, absl::Seconds(1)) << "the stop took " << took;
  std::printf("stopped %s after the cancel: %s\n", absl::FormatDuration(took).c_str(),
              stopped.results(0).message().c_str());
  FillRandom(host.data(), host.bytes(), 14);
  expected = host.Snapshot();
  KVS_ASSERT_OK(ReferenceConvert(WholeBlocks(nhd, hnd), MirrorTable(mirror_, dev_offsets),
                                 host.Table(expected.data()), pairs, 1));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse after,
      RunBatch(*session_, {MakeJob(BlockSet(dev), host.endpoint(), WholeBlocks(nhd, hnd), pairs)}));
  EXPECT_EQ(after.results(0).state(), v1::JOB_DONE) << after.DebugString();
  EXPECT_TRUE(BytesEqual(host.data(), expected));
}

TEST_F(GpuIpcTest, IpcErrorsHaveTheirCodesAndLeaveTheDaemonHealthy) {
  std::string garbage(64, '\0');
  FillRandom(garbage.data(), garbage.size(), 64);
  EXPECT_TRUE(HasStatus(session_->RegisterCudaIpcRegion(garbage, *uuid_, 0, 4096),
                        StatusCode::kInvalidArgument, {"cuda_ipc.handle"}));
  EXPECT_TRUE(HasStatus(session_->RegisterCudaIpcRegion(memory_->ipc_handle(), *uuid_, 0,
                                                        kAllocationBytes + (2 << 20)),
                        StatusCode::kOutOfRange, {"cuda_ipc", "exceeds the allocation"}));
  EXPECT_TRUE(
      HasStatus(session_->RegisterCudaIpcRegion(memory_->ipc_handle(), *uuid_, kAllocationBytes, 1),
                StatusCode::kOutOfRange, {"cuda_ipc", "exceeds the allocation"}));
  EXPECT_TRUE(
      HasStatus(session_->RegisterCudaIpcRegion(
                    memory_->ipc_handle(), "GPU-00000000-0000-0000-0000-000000000000", 0, 4096),
                StatusCode::kFailedPrecondition, {"gpu uuid", "is not a GPU of this daemon"}));
  EXPECT_TRUE(HasStatus(
      session_->RegisterCudaIpcRegion(memory_->ipc_handle().substr(0, 63), *uuid_, 0, 4096),
      StatusCode::kInvalidArgument, {"cuda_ipc.handle", "63 bytes"}));
  KVS_ASSERT_OK_AND_ASSIGN(auto health, daemon_->client().Health());
  EXPECT_EQ(health, health_v1::HealthCheckResponse::SERVING);
  // The handle still opens after the refusals (no stale cache entry).
  KVS_ASSERT_OK(RegisterRegion());
}

// GPU-side completion: the daemon records the client's interprocess event right after a slow
// job (one SM, 32 MiB operational → universal). This process's stream waits on the event and
// then copies the destination to the host; without the record that copy would start while
// the kernel still writes. A refused event handle fails only its own job.
TEST_F(GpuIpcTest, CompletionEventOrdersAClientStreamAfterTheCopy) {
  const BlockShape shape{4, 2, 16, 8, 128};  // bf16: 256 KiB per block
  constexpr int64_t kEventBlocks = 128;       // 32 MiB per side
  const LayoutDesc op = MakeLayout(LayoutKind::kOperationalNHD, shape, DType::kBF16);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, shape, DType::kBF16);
  const uint64_t block = BytesPerAddress(op.kind, op.shape, 2);
  const uint64_t side = block * kEventBlocks;
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<CudaMemory> memory,
                           CudaMemory::Allocate(0, 2 * side));
  std::vector<uint8_t> mirror(2 * side);
  FillRandom(mirror.data(), mirror.size(), 77);
  KVS_ASSERT_OK(memory->CopyFromHost(0, mirror.data(), mirror.size()));
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse region,
                           session_->RegisterCudaIpcRegion(memory->ipc_handle(), *uuid_, 0,
                                                           2 * side, "event-region"));
  auto strided = [&](uint64_t at) {
    v1::StridedPlacement placement;
    v1::SlotBase* slot = placement.add_slots();
    slot->set_region_id(region.region().region_id());
    slot->set_offset(at);
    placement.set_block_stride(block);
    return placement;
  };
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterBlockSetResponse src,
                           session_->RegisterBlockSet(LayoutToProto(op), kEventBlocks, strided(0)));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::RegisterBlockSetResponse dst,
      session_->RegisterBlockSet(LayoutToProto(uni), kEventBlocks, strided(side)));
  std::vector<BlockPair> pairs = IdentityPairs(kEventBlocks);
  std::vector<uint8_t> expected = mirror;
  std::vector<uint64_t> src_table, dst_table;
  for (int64_t b = 0; b < kEventBlocks; ++b) {
    src_table.push_back(reinterpret_cast<uint64_t>(mirror.data()) + b * block);
    dst_table.push_back(reinterpret_cast<uint64_t>(expected.data()) + side + b * block);
  }
  KVS_ASSERT_OK(ReferenceConvert(WholeBlocks(op, uni), src_table, dst_table, pairs, 4));

  cudaEvent_t event = nullptr;
  cudaIpcEventHandle_t handle;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&event, cudaEventInterprocess | cudaEventDisableTiming),
            cudaSuccess);
  ASSERT_EQ(cudaIpcGetEventHandle(&handle, event), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  KVS_ASSERT_OK_AND_ASSIGN(PinnedBuffer host, PinnedBuffer::Create(side));

  v1::Job job = MakeJob(BlockSet(src.block_set().block_set_id()),
                        BlockSet(dst.block_set().block_set_id()), WholeBlocks(op, uni), pairs);
  job.set_backend(v1::BACKEND_KERNEL);
  job.set_max_sms(1);
  job.mutable_completion_event()->set_handle(reinterpret_cast<const char*>(&handle),
                                             sizeof(handle));
  v1::SubmitBatchRequest request;
  *request.add_jobs() = job;
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session_->SubmitBatch(request));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse launched,
      session_->Wait(submitted.job_ids(), absl::Seconds(20), /*until_launched=*/true));
  ASSERT_TRUE(launched.results(0).launched() || launched.all_done()) << launched.DebugString();
  ASSERT_EQ(cudaStreamWaitEvent(stream, event, 0), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(host.data(), static_cast<uint8_t*>(memory->data()) + side, side,
                            cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const std::vector<uint8_t> want(expected.begin() + side, expected.end());
  EXPECT_TRUE(BytesEqual(static_cast<const uint8_t*>(host.data()), want))
      << "the client stream read the destination before the daemon's copy finished";
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done,
                           session_->Wait(submitted.job_ids(), absl::Seconds(20)));
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  EXPECT_TRUE(done.results(0).launched());

  // A handle the driver refuses fails that job only; the next job on the GPU runs.
  std::string garbage(64, '\0');
  FillRandom(garbage.data(), garbage.size(), 65);
  v1::Job bad = job;
  bad.set_max_sms(0);
  bad.mutable_completion_event()->set_handle(garbage);
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse refused, RunBatch(*session_, {bad}));
  EXPECT_EQ(refused.results(0).state(), v1::JOB_FAILED) << refused.DebugString();
  EXPECT_EQ(refused.results(0).code(), static_cast<int>(StatusCode::kFailedPrecondition));
  EXPECT_NE(refused.results(0).message().find("completion_event"), std::string::npos);
  v1::Job plain = job;
  plain.clear_completion_event();
  plain.set_max_sms(0);
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse after, RunBatch(*session_, {plain}));
  EXPECT_EQ(after.results(0).state(), v1::JOB_DONE) << after.DebugString();
  EXPECT_TRUE(after.results(0).launched());
  cudaStreamDestroy(stream);
  cudaEventDestroy(event);
}

// An interprocess event of this process and its 64-byte handle.
struct IpcEvent {
  IpcEvent() {
    EXPECT_EQ(cudaEventCreateWithFlags(&event, cudaEventInterprocess | cudaEventDisableTiming),
              cudaSuccess);
    cudaIpcEventHandle_t raw;
    EXPECT_EQ(cudaIpcGetEventHandle(&raw, event), cudaSuccess);
    handle.assign(reinterpret_cast<const char*>(&raw), sizeof(raw));
  }
  ~IpcEvent() { cudaEventDestroy(event); }
  IpcEvent(const IpcEvent&) = delete;
  IpcEvent& operator=(const IpcEvent&) = delete;
  cudaEvent_t event = nullptr;
  std::string handle;
};

// GPU-side start dependency (Job.start_event). This process writes a job's source on its own
// stream behind a gate and records an event after the write; the job, submitted right away
// without any synchronization, must convert the new bytes (it would read the old ones if it
// started early). While it waits: another session's job and this session's next job run; a
// job of a session with a short deadline ends DEADLINE_EXCEEDED; a cancelled one ends
// CANCELLED; neither touches its destination, even once their events complete later. A
// handle the driver refuses fails only its job; an event never recorded is complete.
TEST_F(GpuIpcTest, StartEventHoldsAJobUntilTheClientStreamReachesIt) {
  const BlockShape shape{4, 2, 16, 8, 128};  // bf16: 256 KiB per block
  constexpr int64_t kStartBlocks = 16;       // 4 MiB per side
  const LayoutDesc op = MakeLayout(LayoutKind::kOperationalNHD, shape, DType::kBF16);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, shape, DType::kBF16);
  const uint64_t block = BytesPerAddress(op.kind, op.shape, 2);
  const uint64_t side = block * kStartBlocks;
  // Sides: 0 the gated source, 1 its destination, 2 / 3 another session's source and
  // destination, 4 the destination of the jobs that must never run.
  constexpr int kSides = 5;
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<CudaMemory> memory,
                           CudaMemory::Allocate(0, kSides * side));
  std::vector<uint8_t> before(kSides * side);
  FillRandom(before.data(), before.size(), 91);
  KVS_ASSERT_OK(memory->CopyFromHost(0, before.data(), before.size()));
  std::vector<uint8_t> fresh(side);  // what the gated stream writes into side 0
  FillRandom(fresh.data(), fresh.size(), 92);
  KVS_ASSERT_OK_AND_ASSIGN(PinnedBuffer fresh_pinned, PinnedBuffer::Create(side));
  std::memcpy(fresh_pinned.data(), fresh.data(), side);

  // Region and the block sets of `at` (op) → `to` (universal) of one session.
  struct Sets {
    uint64_t src = 0, dst = 0;
  };
  auto register_sets = [&](Session& session, int at, int to) -> absl::StatusOr<Sets> {
    ASSIGN_OR_RETURN(v1::RegisterRegionResponse region,
                     session.RegisterCudaIpcRegion(memory->ipc_handle(), *uuid_, 0,
                                                   kSides * side,
                                                   absl::StrCat("start-region-", at, "-", to)));
    auto strided = [&](int n) {
      v1::StridedPlacement placement;
      v1::SlotBase* slot = placement.add_slots();
      slot->set_region_id(region.region().region_id());
      slot->set_offset(n * side);
      placement.set_block_stride(block);
      return placement;
    };
    Sets sets;
    ASSIGN_OR_RETURN(v1::RegisterBlockSetResponse src,
                     session.RegisterBlockSet(LayoutToProto(op), kStartBlocks, strided(at)));
    ASSIGN_OR_RETURN(v1::RegisterBlockSetResponse dst,
                     session.RegisterBlockSet(LayoutToProto(uni), kStartBlocks, strided(to)));
    sets.src = src.block_set().block_set_id();
    sets.dst = dst.block_set().block_set_id();
    return sets;
  };
  auto job_of = [&](const Sets& sets, const std::string& start_handle) {
    v1::Job job = MakeJob(BlockSet(sets.src), BlockSet(sets.dst), WholeBlocks(op, uni),
                          IdentityPairs(kStartBlocks));
    if (!start_handle.empty()) job.mutable_start_event()->set_handle(start_handle);
    return job;
  };
  auto submit = [](Session& session, const v1::Job& job) -> absl::StatusOr<uint64_t> {
    v1::SubmitBatchRequest request;
    *request.add_jobs() = job;
    ASSIGN_OR_RETURN(v1::SubmitBatchResponse submitted, session.SubmitBatch(request));
    return submitted.job_ids(0);
  };
  // The universal form of `source` bytes (one side).
  auto converted = [&](const uint8_t* source) {
    std::vector<uint8_t> out(side);
    std::vector<uint64_t> src_table, dst_table;
    for (int64_t b = 0; b < kStartBlocks; ++b) {
      src_table.push_back(reinterpret_cast<uint64_t>(source) + b * block);
      dst_table.push_back(reinterpret_cast<uint64_t>(out.data()) + b * block);
    }
    EXPECT_TRUE(ReferenceConvert(WholeBlocks(op, uni), src_table, dst_table,
                                 IdentityPairs(kStartBlocks), 4)
                    .ok());
    return out;
  };
  auto device_side = [&](int n) {
    std::vector<uint8_t> out(side);
    EXPECT_TRUE(memory->CopyToHost(n * side, out.data(), side).ok());
    return out;
  };

  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  KVS_ASSERT_OK_AND_ASSIGN(Sets mine, register_sets(*session_, 0, 1));
  KVS_ASSERT_OK_AND_ASSIGN(Sets never, register_sets(*session_, 2, 4));

  // The gated write and its event, then the job: submitted with no synchronization at all.
  IpcEvent written;
  auto gate = std::make_unique<StreamGate>(stream);
  ASSERT_TRUE(gate->ok()) << "cudaLaunchHostFunc failed";
  ASSERT_EQ(cudaMemcpyAsync(static_cast<uint8_t*>(memory->data()), fresh_pinned.data(), side,
                            cudaMemcpyHostToDevice, stream),
            cudaSuccess);
  ASSERT_EQ(cudaEventRecord(written.event, stream), cudaSuccess);
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t held, submit(*session_, job_of(mine, written.handle)));

  // Meanwhile another session's job and this session's own next job run.
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other,
                           Session::Open(daemon_->client(), "it-gpu-other", true));
  KVS_ASSERT_OK_AND_ASSIGN(Sets theirs, register_sets(*other, 2, 3));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse other_done, RunBatch(*other, {job_of(theirs, "")}));
  EXPECT_EQ(other_done.results(0).state(), v1::JOB_DONE) << other_done.DebugString();
  EXPECT_TRUE(BytesEqual(device_side(3).data(), converted(before.data() + 2 * side)));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse own_next, RunBatch(*session_, {job_of(never, "")}));
  EXPECT_EQ(own_next.results(0).state(), v1::JOB_DONE) << own_next.DebugString();
  KVS_ASSERT_OK(memory->CopyFromHost(4 * side, before.data() + 4 * side, side));  // undo it

  // A cancelled job and a job past its deadline, both behind gates never opened in time.
  IpcEvent cancel_event, deadline_event;
  cudaStream_t late = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&late, cudaStreamNonBlocking), cudaSuccess);
  auto late_gate = std::make_unique<StreamGate>(late);
  ASSERT_TRUE(late_gate->ok()) << "cudaLaunchHostFunc failed";
  ASSERT_EQ(cudaEventRecord(cancel_event.event, late), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(deadline_event.event, late), cudaSuccess);
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t doomed,
                           submit(*session_, job_of(never, cancel_event.handle)));
  KVS_ASSERT_OK_AND_ASSIGN(v1::CancelJobsResponse cancel,
                           session_->CancelJobs(std::vector<uint64_t>{doomed}));
  ASSERT_EQ(cancel.cancelled_size(), 1) << cancel.DebugString() << " (a parked job has not "
                                        << "started: CancelJobs must cancel it, not stop it)";
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> hasty, Client::Connect(daemon_->target(), absl::Seconds(10)));
  hasty->set_call_timeout(absl::Milliseconds(300));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> short_lived,
                           Session::Open(*hasty, "it-gpu-deadline", false));
  hasty->set_call_timeout(absl::Seconds(20));
  KVS_ASSERT_OK_AND_ASSIGN(Sets theirs_never, register_sets(*short_lived, 2, 4));
  hasty->set_call_timeout(absl::Milliseconds(300));
  KVS_ASSERT_OK_AND_ASSIGN(const uint64_t expired,
                           submit(*short_lived, job_of(theirs_never, deadline_event.handle)));
  hasty->set_call_timeout(absl::Seconds(20));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse ended,
                           short_lived->Wait(std::vector<uint64_t>{expired}, absl::Seconds(20)));
  EXPECT_EQ(ended.results(0).state(), v1::JOB_CANCELLED) << ended.DebugString();
  EXPECT_EQ(ended.results(0).code(), static_cast<int>(StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(absl::StrContains(ended.results(0).message(), "start event"))
      << ended.DebugString();
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse cancelled,
                           session_->Wait(std::vector<uint64_t>{doomed}, absl::Seconds(20)));
  EXPECT_EQ(cancelled.results(0).state(), v1::JOB_CANCELLED) << cancelled.DebugString();

  // The first job is still waiting (its event is not complete): not launched, nothing written.
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse waiting,
                           session_->Wait(std::vector<uint64_t>{held}, absl::Milliseconds(50)));
  EXPECT_EQ(waiting.results(0).state(), v1::JOB_QUEUED) << waiting.DebugString();
  EXPECT_FALSE(waiting.results(0).launched());
  EXPECT_TRUE(BytesEqual(device_side(1).data(), std::vector<uint8_t>(before.begin() + side,
                                                              before.begin() + 2 * side)));
  // Open the gate: the write lands, the event completes, the job converts the new bytes.
  gate->Release();
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done,
                           session_->Wait(std::vector<uint64_t>{held}, absl::Seconds(20)));
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(BytesEqual(device_side(1).data(), converted(fresh.data())))
      << "the job read its source before the client's stream wrote it";

  // The ended jobs' events complete now: nothing may run for them.
  late_gate->Release();
  ASSERT_EQ(cudaStreamSynchronize(late), cudaSuccess);
  absl::SleepFor(absl::Milliseconds(50));  // a launch would happen within a poll or two
  EXPECT_TRUE(BytesEqual(device_side(4).data(), std::vector<uint8_t>(before.begin() + 4 * side,
                                                              before.end())))
      << "a job ended while waiting for its start event copied anyway";

  // A handle the driver refuses fails its job only; an event never recorded is complete.
  std::string garbage(64, '\0');
  FillRandom(garbage.data(), garbage.size(), 93);
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse refused, RunBatch(*session_, {job_of(mine, garbage)}));
  EXPECT_EQ(refused.results(0).state(), v1::JOB_FAILED) << refused.DebugString();
  EXPECT_EQ(refused.results(0).code(), static_cast<int>(StatusCode::kFailedPrecondition));
  EXPECT_TRUE(absl::StrContains(refused.results(0).message(), "start_event"));
  IpcEvent unrecorded;
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse ran,
                           RunBatch(*session_, {job_of(mine, unrecorded.handle)}));
  EXPECT_EQ(ran.results(0).state(), v1::JOB_DONE) << ran.DebugString();
  short_lived.reset();
  other.reset();
  cudaStreamDestroy(late);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace kvshuttle::it

// Skips (exit 77, CTest: skipped) when no CUDA device is usable.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: %s)\n",
                error == cudaSuccess ? "0 devices" : cudaGetErrorName(error));
    return 77;
  }
  return RUN_ALL_TESTS();
}
