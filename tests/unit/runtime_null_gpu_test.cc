// The null GPU runtime (GPU-less machines and builds): no devices, GPU operations fail with
// FAILED_PRECONDITION after the same input checks as the CUDA runtime, host registration is a
// no-op, and host allocations are ordinary 4 KiB-aligned memory.
#include <cstdint>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "server/runtime/gpu_runtime.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

constexpr char kUuid[] = "GPU-00000000-0000-0000-0000-000000000000";

TEST(NullGpuRuntimeTest, HasNoDevicesAndUnknownUuidsFail) {
  std::unique_ptr<GpuRuntime> gpu = CreateNullGpuRuntime();
  EXPECT_TRUE(gpu->devices().empty());
  EXPECT_TRUE(HasStatus(gpu->OrdinalOf(kUuid), absl::StatusCode::kFailedPrecondition,
                        {kUuid, "known: none"}));
  // A huge uuid is quoted only in part.
  const std::string huge(1 << 20, 'u');
  const absl::StatusOr<int> ordinal = gpu->OrdinalOf(huge);
  EXPECT_TRUE(HasStatus(ordinal, absl::StatusCode::kFailedPrecondition, {"1048576 bytes"}));
  EXPECT_LT(ordinal.status().message().size(), 400u);
}

TEST(NullGpuRuntimeTest, OpenIpcChecksInputThenNeedsAGpu) {
  std::unique_ptr<GpuRuntime> gpu = CreateNullGpuRuntime();
  for (size_t bytes : {size_t{0}, size_t{63}, size_t{65}, size_t{1} << 20}) {
    const std::string handle(bytes, '\x5a');
    EXPECT_TRUE(HasStatus(gpu->OpenIpc(handle, kUuid, 0, 16), absl::StatusCode::kInvalidArgument,
                          {"cuda_ipc.handle", std::to_string(bytes) + " bytes", "exactly 64"}))
        << bytes << "-byte handle";
  }
  const std::string handle(64, '\x5a');
  EXPECT_TRUE(HasStatus(gpu->OpenIpc(handle, kUuid, 0, 0), absl::StatusCode::kInvalidArgument,
                        {"cuda_ipc.size"}));
  EXPECT_TRUE(HasStatus(gpu->OpenIpc(handle, kUuid, UINT64_MAX - 3, 8),
                        absl::StatusCode::kOutOfRange, {"overflows"}));
  EXPECT_TRUE(HasStatus(gpu->OpenIpc(handle, kUuid, 0, 16), absl::StatusCode::kFailedPrecondition,
                        {kUuid}));
}

TEST(NullGpuRuntimeTest, DeviceOperationsAreFailedPrecondition) {
  std::unique_ptr<GpuRuntime> gpu = CreateNullGpuRuntime();
  EXPECT_TRUE(
      HasStatus(gpu->AllocateDevice(0, 4096), absl::StatusCode::kFailedPrecondition, {"no GPU"}));
  EXPECT_TRUE(
      HasStatus(gpu->CreateWorker(0, 16), absl::StatusCode::kFailedPrecondition, {"no GPU"}));
}

TEST(NullGpuRuntimeTest, RegisterHostIsANoOpWithANullGuard) {
  std::unique_ptr<GpuRuntime> gpu = CreateNullGpuRuntime();
  char buffer[64];
  absl::StatusOr<std::shared_ptr<void>> guard = gpu->RegisterHost(buffer, sizeof(buffer));
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_EQ(*guard, nullptr);
}

TEST(NullGpuRuntimeTest, AllocateHostGivesAlignedWritableMemory) {
  std::unique_ptr<GpuRuntime> gpu = CreateNullGpuRuntime();
  for (uint64_t bytes : {uint64_t{1}, uint64_t{4096}, uint64_t{10000}}) {
    absl::StatusOr<std::shared_ptr<Memory>> memory = gpu->AllocateHost(bytes);
    ASSERT_TRUE(memory.ok()) << memory.status();
    const Memory& m = **memory;
    EXPECT_EQ(m.base() % 4096, 0u);
    EXPECT_EQ(m.size(), bytes);
    EXPECT_EQ(m.place(), MemoryPlace::kHost);
    EXPECT_EQ(m.device(), -1);
    EXPECT_FALSE(m.gpu_visible());
    std::memset(reinterpret_cast<void*>(m.base()), 0x5a, bytes);  // ASan: in bounds
  }
  EXPECT_TRUE(HasStatus(gpu->AllocateHost(0), absl::StatusCode::kInvalidArgument, {"0 bytes"}));
  EXPECT_TRUE(HasStatus(gpu->AllocateHost(UINT64_MAX), absl::StatusCode::kResourceExhausted, {}));
}

}  // namespace
}  // namespace kvshuttle
