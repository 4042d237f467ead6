// CudaMemory: cudaMalloc + cudaIpcGetMemHandle, and the UUIDs of the visible GPUs.
#include "client/cuda_memory.h"

#include <cstring>

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "kernels/cuda_check.h"

namespace kvshuttle {
namespace {

absl::StatusOr<std::string> DeviceUuid(int ordinal) {
  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, ordinal));
  std::array<uint8_t, 16> bytes;
  static_assert(sizeof(prop.uuid.bytes) == 16);
  std::memcpy(bytes.data(), prop.uuid.bytes, bytes.size());
  return FormatGpuUuid(bytes);
}

}  // namespace

std::string FormatGpuUuid(const std::array<uint8_t, 16>& b) {
  return absl::StrFormat(
      "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
      b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

std::vector<CudaDeviceId> VisibleCudaDevices() {
  std::vector<CudaDeviceId> devices;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: clear the error, report none
    return devices;
  }
  for (int ordinal = 0; ordinal < count; ++ordinal) {
    absl::StatusOr<std::string> uuid = DeviceUuid(ordinal);
    if (uuid.ok()) devices.push_back({ordinal, *std::move(uuid)});
  }
  return devices;
}

absl::StatusOr<std::unique_ptr<CudaMemory>> CudaMemory::Allocate(int ordinal, size_t bytes) {
  ASSIGN_OR_RETURN(std::string uuid, DeviceUuid(ordinal));
  ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::Create(ordinal, bytes));
  cudaIpcMemHandle_t handle;
  static_assert(sizeof(handle) == 64);
  CUDA_RETURN_IF_ERROR(cudaIpcGetMemHandle(&handle, buffer.data()));
  std::string handle_bytes(reinterpret_cast<const char*>(&handle), sizeof(handle));
  return std::unique_ptr<CudaMemory>(
      new CudaMemory(ordinal, std::move(buffer), std::move(handle_bytes), std::move(uuid)));
}

absl::Status CudaMemory::CheckRange(size_t offset, size_t bytes) const {
  if (offset > size() || bytes > size() - offset) {
    return absl::OutOfRangeError(absl::StrCat("CudaMemory copy: [", offset, ", +", bytes,
                                              ") is outside the allocation of ", size(),
                                              " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CudaMemory::CopyFromHost(size_t offset, const void* src, size_t bytes) {
  RETURN_IF_ERROR(CheckRange(offset, bytes));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpy(static_cast<char*>(data()) + offset, src, bytes, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status CudaMemory::CopyToHost(size_t offset, void* dst, size_t bytes) const {
  RETURN_IF_ERROR(CheckRange(offset, bytes));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, static_cast<const char*>(data()) + offset, bytes,
                                  cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

}  // namespace kvshuttle
