// DeviceBuffer and PinnedBuffer.
#include "kernels/buffers.h"

#include <utility>

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_check.h"

namespace kvshuttle {

absl::StatusOr<DeviceBuffer> DeviceBuffer::Create(int device, size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("DeviceBuffer: bytes must be > 0");
  int previous = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&previous));
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  DeviceBuffer buffer;
  const cudaError_t error = cudaMalloc(&buffer.data_, bytes);
  cudaSetDevice(previous);
  if (error != cudaSuccess) {
    return CudaStatus(error, absl::StrCat("cudaMalloc(", bytes, " bytes) on device ", device));
  }
  buffer.size_ = bytes;
  buffer.device_ = device;
  return buffer;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      device_(other.device_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    this->~DeviceBuffer();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    device_ = other.device_;
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);  // cudaFree needs no current-device switch.
  data_ = nullptr;
}

absl::StatusOr<PinnedBuffer> PinnedBuffer::Create(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("PinnedBuffer: bytes must be > 0");
  PinnedBuffer buffer;
  CUDA_RETURN_IF_ERROR(
      cudaHostAlloc(&buffer.data_, bytes, cudaHostAllocPortable | cudaHostAllocMapped));
  buffer.size_ = bytes;
  return buffer;
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    this->~PinnedBuffer();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);
  data_ = nullptr;
}

}  // namespace kvshuttle
