// DemoMemory over SharedMemory (always) and CudaMemory (KVS_CLIENT_HAVE_CUDA builds).
#include "client/demo_memory.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/shared_memory.h"
#include "core/status_macros.h"
#ifdef KVS_CLIENT_HAVE_CUDA
#include "client/cuda_memory.h"
#endif

namespace kvshuttle::cli {
namespace {

absl::Status CheckRange(size_t offset, size_t bytes, size_t size) {
  if (offset > size || bytes > size - offset) {
    return absl::OutOfRangeError(absl::StrCat("demo memory: [", offset, ", +", bytes,
                                              ") is outside ", size, " bytes"));
  }
  return absl::OkStatus();
}

class HostDemoMemory : public DemoMemory {
 public:
  explicit HostDemoMemory(std::unique_ptr<SharedMemory> shm) : shm_(std::move(shm)) {}
  size_t size() const override { return shm_->size(); }
  std::string Describe() const override { return absl::StrCat("host shm ", shm_->name()); }
  absl::StatusOr<uint64_t> Register(Session& session) const override {
    ASSIGN_OR_RETURN(const v1::RegisterRegionResponse registered,
                     session.RegisterHostShmRegion(shm_->name(), 0, shm_->size(), "demo"));
    return registered.region().region_id();
  }
  absl::Status Write(size_t offset, absl::Span<const uint8_t> bytes) override {
    RETURN_IF_ERROR(CheckRange(offset, bytes.size(), size()));
    std::memcpy(static_cast<uint8_t*>(shm_->data()) + offset, bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  absl::Status Read(size_t offset, absl::Span<uint8_t> bytes) const override {
    RETURN_IF_ERROR(CheckRange(offset, bytes.size(), size()));
    std::memcpy(bytes.data(), static_cast<const uint8_t*>(shm_->data()) + offset, bytes.size());
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<SharedMemory> shm_;
};

#ifdef KVS_CLIENT_HAVE_CUDA
class DeviceDemoMemory : public DemoMemory {
 public:
  explicit DeviceDemoMemory(std::unique_ptr<CudaMemory> memory) : memory_(std::move(memory)) {}
  size_t size() const override { return memory_->size(); }
  std::string Describe() const override {
    return absl::StrCat("device ", memory_->gpu_uuid(), " (CUDA IPC)");
  }
  absl::StatusOr<uint64_t> Register(Session& session) const override {
    ASSIGN_OR_RETURN(const v1::RegisterRegionResponse registered,
                     session.RegisterCudaIpcRegion(memory_->ipc_handle(), memory_->gpu_uuid(),
                                                   0, memory_->size(), "demo"));
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

// A GPU this process sees that the daemon also serves, or a reason why there is none.
absl::StatusOr<DemoMemoryChoice> UsableDevice(const v1::GetInfoResponse& info) {
#ifdef KVS_CLIENT_HAVE_CUDA
  if (info.devices().empty()) {
    return absl::FailedPreconditionError("the daemon reports no GPUs");
  }
  const std::vector<CudaDeviceId> local = VisibleCudaDevices();
  if (local.empty()) return absl::FailedPreconditionError("no GPU is visible to this process");
  for (const CudaDeviceId& mine : local) {
    for (const v1::DeviceInfo& theirs : info.devices()) {
      if (mine.uuid == theirs.uuid()) {
        return DemoMemoryChoice{v1::MEMORY_DEVICE, mine.ordinal,
                                absl::StrCat("device ", mine.uuid)};
      }
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("none of this process's ", local.size(),
                   " GPUs is among the daemon's ", info.devices_size(), " GPUs"));
#else
  (void)info;
  return absl::FailedPreconditionError("this kvshuttle was built without CUDA");
#endif
}

}  // namespace

absl::StatusOr<DemoMemoryChoice> ChooseDemoMemory(absl::string_view mode,
                                                  const v1::GetInfoResponse& info) {
  if (mode == "host") return DemoMemoryChoice{v1::MEMORY_HOST, 0, "host shared memory"};
  if (mode != "device" && mode != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--memory: \"", mode, "\" is not one of host, device, auto"));
  }
  absl::StatusOr<DemoMemoryChoice> device = UsableDevice(info);
  if (device.ok() || mode == "device") {
    if (!device.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("--memory device: ", device.status().message()));
    }
    return device;
  }
  return DemoMemoryChoice{v1::MEMORY_HOST, 0,
                          absl::StrCat("host shared memory (", device.status().message(), ")")};
}

absl::StatusOr<std::unique_ptr<DemoMemory>> DemoMemory::Create(const DemoMemoryChoice& choice,
                                                               size_t bytes) {
  if (choice.kind == v1::MEMORY_DEVICE) {
#ifdef KVS_CLIENT_HAVE_CUDA
    ASSIGN_OR_RETURN(std::unique_ptr<CudaMemory> memory,
                     CudaMemory::Allocate(choice.ordinal, bytes));
    return std::unique_ptr<DemoMemory>(new DeviceDemoMemory(std::move(memory)));
#else
    return absl::FailedPreconditionError("device memory: this kvshuttle was built without CUDA");
#endif
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(bytes));
  return std::unique_ptr<DemoMemory>(new HostDemoMemory(std::move(shm)));
}

}  // namespace kvshuttle::cli
