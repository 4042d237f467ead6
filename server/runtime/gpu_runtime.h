// What the daemon needs from CUDA, behind one interface: GPU-less builds and machines use the
// null runtime, GPU builds the CUDA one (server/runtime/cuda_runtime.cc). No CUDA header here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/runtime/executor.h"
#include "server/runtime/memory.h"

namespace kvshuttle {

struct GpuDeviceInfo {
  int ordinal = 0;
  std::string uuid;  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi prints it
  std::string name;
  uint64_t total_memory = 0;
  int sm_count = 0;
};

class GpuRuntime {
 public:
  virtual ~GpuRuntime() = default;

  virtual const std::vector<GpuDeviceInfo>& devices() const = 0;

  // Ordinal of the GPU with `uuid`; FAILED_PRECONDITION naming the uuid and the known ones.
  absl::StatusOr<int> OrdinalOf(absl::string_view uuid) const;

  // Maps bytes [offset, offset + size) of the allocation behind a legacy 64-byte CUDA IPC
  // handle exported on GPU `uuid`. The allocation is opened once per handle and shared by all
  // regions over it (closed when the last one goes). Errors: INVALID_ARGUMENT for a handle that
  // is not 64 bytes or that CUDA rejects (the message names expandable segments / VMM memory as
  // the likely cause); FAILED_PRECONDITION for an unknown uuid; OUT_OF_RANGE when offset + size
  // exceeds the real allocation size (cuMemGetAddressRange), naming both.
  virtual absl::StatusOr<std::shared_ptr<Memory>> OpenIpc(absl::string_view handle,
                                                          absl::string_view uuid, uint64_t offset,
                                                          uint64_t size) = 0;

  // Registers host memory [ptr, ptr + bytes) for GPU access (cudaHostRegister, mapped +
  // portable). Returns a guard that unregisters; nullptr guard and OK when there is no GPU.
  virtual absl::StatusOr<std::shared_ptr<void>> RegisterHost(void* ptr, uint64_t bytes) = 0;

  // Pool memory. AllocateDevice: cudaMalloc on `ordinal`. AllocateHost: pinned (cudaHostAlloc,
  // portable + mapped) with GPUs, 4 KiB-aligned ordinary memory without.
  virtual absl::StatusOr<std::shared_ptr<Memory>> AllocateDevice(int ordinal, uint64_t bytes) = 0;
  virtual absl::StatusOr<std::shared_ptr<Memory>> AllocateHost(uint64_t bytes) = 0;

  // The worker for GPU `ordinal`: one thread, one stream, one Converter, queue of `capacity`.
  virtual absl::StatusOr<std::unique_ptr<Executor>> CreateWorker(int ordinal, QueueLimits limits) = 0;
};

// A runtime with no GPUs: OpenIpc/AllocateDevice/CreateWorker fail with FAILED_PRECONDITION
// ("no GPU"), RegisterHost is a no-op, AllocateHost gives ordinary memory.
std::unique_ptr<GpuRuntime> CreateNullGpuRuntime();

// The CUDA runtime over every visible GPU (the CUDA implementation is built only with CUDA).
// With no usable GPU (no driver, no device) it returns the null runtime and logs why.
std::unique_ptr<GpuRuntime> CreateGpuRuntime();

}  // namespace kvshuttle
