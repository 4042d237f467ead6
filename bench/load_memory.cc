// LoadMemory over SharedMemory (always) and CudaMemory (KVS_CLIENT_HAVE_CUDA builds).
#include "bench/load_memory.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "client/shared_memory.h"
#include "core/status_macros.h"
#ifdef KVS_CLIENT_HAVE_CUDA
#include "client/cuda_memory.h"
#endif

namespace kvshuttle::load {
namespace {

class HostMemory : public LoadMemory {
 public:
  explicit HostMemory(std::unique_ptr<SharedMemory> shm) : shm_(std::move(shm)) {}
  size_t size() const override { return shm_->size(); }
  std::string gpu_uuid() const override { return ""; }
  absl::StatusOr<uint64_t> Register(Session& session) const override {
    ASSIGN_OR_RETURN(const v1::RegisterRegionResponse registered,
                     session.RegisterHostShmRegion(shm_->name(), 0, shm_->size(), "kvs_load"));
    return registered.region().region_id();
  }
  absl::Status Write(size_t offset, absl::Span<const uint8_t> bytes) override {
    RETURN_IF_ERROR(CheckRange(offset, bytes.size()));
    std::memcpy(static_cast<uint8_t*>(shm_->data()) + offset, bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  absl::Status Read(size_t offset, absl::Span<uint8_t> bytes) const override {
    RETURN_IF_ERROR(CheckRange(offset, bytes.size()));
    std::memcpy(bytes.data(), static_cast<const uint8_t*>(shm_->data()) + offset, bytes.size());
    return absl::OkStatus();
  }

 private:
  absl::Status CheckRange(size_t offset, size_t bytes) const {
    if (offset > size() || bytes > size() - offset) {
      return absl::OutOfRangeError(
          absl::StrCat("host memory: [", offset, ", +", bytes, ") is outside ", size(), " bytes"));
    }
    return absl::OkStatus();
  }

  std::unique_ptr<SharedMemory> shm_;
};

#ifdef KVS_CLIENT_HAVE_CUDA
class DeviceMemory : public LoadMemory {
 public:
  explicit DeviceMemory(std::unique_ptr<CudaMemory> memory) : memory_(std::move(memory)) {}
  size_t size() const override { return memory_->size(); }
  std::string gpu_uuid() const override { return memory_->gpu_uuid(); }
  absl::StatusOr<uint64_t> Register(Session& session) const override {
    ASSIGN_OR_RETURN(const v1::RegisterRegionResponse registered,
                     session.RegisterCudaIpcRegion(memory_->ipc_handle(), memory_->gpu_uuid(), 0,
                                                   memory_->size(), "kvs_load"));
    return registered.region().region_id();
  }
  absl::Status Write(size_t offset, absl::Span<const uint8_t> bytes) override {
    return memory_->CopyFromHost(offset, bytes.data(), bytes.size());
  }
  absl::Status Read(size_t offset, absl::Span<uint8_t> bytes) const override {
    return memory_->CopyToHost(offset, bytes.data(), bytes.size());
  }

 private:
  std::unique_ptr<CudaMemory> memory_;
};
#endif

}  // namespace

absl::StatusOr<std::unique_ptr<LoadMemory>> LoadMemory::CreateHost(size_t bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(bytes));
  return std::unique_ptr<LoadMemory>(new HostMemory(std::move(shm)));
}

absl::StatusOr<std::unique_ptr<LoadMemory>> LoadMemory::CreateDevice(int ordinal, size_t bytes) {
#ifdef KVS_CLIENT_HAVE_CUDA
  ASSIGN_OR_RETURN(std::unique_ptr<CudaMemory> memory, CudaMemory::Allocate(ordinal, bytes));
  return std::unique_ptr<LoadMemory>(new DeviceMemory(std::move(memory)));
#else
  (void)ordinal;
  (void)bytes;
  return absl::FailedPreconditionError("--memory=device: kvs_load was built without CUDA");
#endif
}

absl::StatusOr<std::vector<int>> SharedGpuOrdinals(const v1::GetInfoResponse& info) {
#ifdef KVS_CLIENT_HAVE_CUDA
  if (info.devices().empty()) {
    return absl::FailedPreconditionError(
        "--memory=device: the daemon reports no GPUs (started with --gpus=false?)");
  }
  const std::vector<CudaDeviceId> local = VisibleCudaDevices();
  if (local.empty()) {
    return absl::FailedPreconditionError("--memory=device: no GPU is visible to kvs_load");
  }
  std::vector<int> shared;
  for (const CudaDeviceId& mine : local) {
    for (const v1::DeviceInfo& theirs : info.devices()) {
      if (mine.uuid == theirs.uuid()) shared.push_back(mine.ordinal);
    }
  }
  if (shared.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("--memory=device: none of kvs_load's ",
                                                      local.size(), " GPUs is among the daemon's ",
                                                      info.devices_size(), " GPUs"));
  }
  return shared;
#else
  (void)info;
  return absl::FailedPreconditionError("--memory=device: kvs_load was built without CUDA");
#endif
}

}  // namespace kvshuttle::load
