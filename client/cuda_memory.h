// Device memory a client lends the daemon through CUDA IPC: a cudaMalloc allocation with the
// 64-byte IPC handle of its base and its GPU's UUID, ready for Session::RegisterCudaIpcRegion.
// Built only with CUDA (KVS_HAVE_CUDA).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/buffers.h"

namespace kvshuttle {

// A visible CUDA device as the daemon names it.
struct CudaDeviceId {
  int ordinal = 0;
  std::string uuid;  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
};

// The devices this process sees; empty (not an error) when there is no GPU or no driver.
std::vector<CudaDeviceId> VisibleCudaDevices();

// nvidia-smi's spelling of a 16-byte CUDA UUID: "GPU-" then 8-4-4-4-12 lower-case hex digits.
std::string FormatGpuUuid(const std::array<uint8_t, 16>& bytes);

// One device allocation exported for IPC. Frees on destruction (the daemon's mapping keeps
// the memory alive until it closes the handle).
class CudaMemory {
 public:
  // Allocates `bytes` (> 0) on device `ordinal` and exports its IPC handle.
  static absl::StatusOr<std::unique_ptr<CudaMemory>> Allocate(int ordinal, size_t bytes);
  CudaMemory(const CudaMemory&) = delete;
  CudaMemory& operator=(const CudaMemory&) = delete;

  void* data() const { return buffer_.data(); }
  size_t size() const { return buffer_.size(); }
  int ordinal() const { return ordinal_; }
  // The cudaIpcMemHandle_t of the allocation base, 64 bytes.
  const std::string& ipc_handle() const { return ipc_handle_; }
  const std::string& gpu_uuid() const { return gpu_uuid_; }

  // Synchronous copies between host memory and [offset, offset + bytes) of this allocation.
  // OUT_OF_RANGE when the range leaves the allocation.
  absl::Status CopyFromHost(size_t offset, const void* src, size_t bytes);
  absl::Status CopyToHost(size_t offset, void* dst, size_t bytes) const;

 private:
  CudaMemory(int ordinal, DeviceBuffer buffer, std::string ipc_handle, std::string gpu_uuid)
      : ordinal_(ordinal),
        buffer_(std::move(buffer)),
        ipc_handle_(std::move(ipc_handle)),
        gpu_uuid_(std::move(gpu_uuid)) {}
  absl::Status CheckRange(size_t offset, size_t bytes) const;

  int ordinal_ = 0;
  DeviceBuffer buffer_;
  std::string ipc_handle_;
  std::string gpu_uuid_;
};

}  // namespace kvshuttle
