// The CUDA GpuRuntime: device discovery, legacy CUDA IPC mappings (opened once per handle and
// shared), host registration and pool allocations. libcuda is never linked: the one driver
// call we need (cuMemGetAddressRange) comes through cudaGetDriverEntryPointByVersion, so the
// daemon still starts where no driver is installed.
#include "server/runtime/cuda_runtime.h"

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "kernels/cuda_check.h"
#include "server/ops/logging.h"
#include "server/runtime/ipc_request.h"

namespace kvshuttle {
namespace {

// Restores the calling thread's current device on scope exit.
class DeviceGuard {
 public:
  DeviceGuard() {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// For failures in destructors and release paths, which cannot return a Status.
void LogCudaError(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) return;
  LogError(absl::StrCat(what, ": ", cudaGetErrorName(error)),
           {{"error", cudaGetErrorString(error)}});
}

// CudaStatus for a failed call, also clearing the (non-sticky) error from this thread's
// last-error slot so that it does not surface later in an unrelated check.
absl::Status FailedCall(cudaError_t error, absl::string_view context) {
  cudaGetLastError();
  return CudaStatus(error, context);
}

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi prints it.
std::string FormatUuid(const cudaUUID_t& uuid) {
  const auto* b = reinterpret_cast<const unsigned char*>(uuid.bytes);
  return absl::StrFormat("GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                         b[12], b[13], b[14], b[15]);
}

// One opened IPC allocation: the whole allocation as mapped into this process.
struct IpcAllocation {
  std::string key;  // the 64 handle bytes
  int device = 0;
  uint64_t mapped = 0;  // what cudaIpcOpenMemHandle returned
  uint64_t bytes = 0;   // from `mapped` to the end of the allocation
};

// Open allocations by handle. An entry whose weak_ptr has expired is being closed by its last
// user; it is erased (under `mutex`, right after the close) before the handle can be opened
// again, which CUDA requires.
struct IpcCache {
  struct Entry {
    std::weak_ptr<IpcAllocation> allocation;
    const IpcAllocation* raw = nullptr;
  };
  std::mutex mutex;
  std::condition_variable erased;
  std::unordered_map<std::string, Entry> entries;
};

class CudaRuntime : public GpuRuntime {
 public:
  CudaRuntime(std::vector<GpuDeviceInfo> devices, PFN_cuMemGetAddressRange_v3020 address_range)
      : devices_(std::move(devices)), address_range_(address_range) {}

  const std::vector<GpuDeviceInfo>& devices() const override { return devices_; }

  absl::StatusOr<std::shared_ptr<Memory>> OpenIpc(absl::string_view handle, absl::string_view uuid,
                                                  uint64_t offset, uint64_t size) override {
    RETURN_IF_ERROR(ValidateIpcRequest(handle, offset, size));
    ASSIGN_OR_RETURN(const int ordinal, OrdinalOf(uuid));
    ASSIGN_OR_RETURN(std::shared_ptr<IpcAllocation> allocation,
                     Acquire(std::string(handle), ordinal));
    if (offset + size > allocation->bytes) {
      // Dropping `allocation` closes the mapping unless other regions use it.
      return absl::OutOfRangeError(absl::StrCat(
          "cuda_ipc: offset ", offset, " + size ", size, " = ", offset + size,
          " bytes exceeds the allocation behind the handle (", allocation->bytes, " bytes)"));
    }
    const uint64_t base = allocation->mapped + offset;
    return std::make_shared<Memory>(
        base, size, MemoryPlace::kDevice, ordinal,
        /*gpu_visible=*/true,
        [allocation = std::move(allocation)]() mutable { allocation.reset(); });
  }

  absl::StatusOr<std::shared_ptr<void>> RegisterHost(void* ptr, uint64_t bytes) override {
    if (ptr == nullptr || bytes == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("host registration: null pointer or 0 bytes (", bytes, ")"));
    }
    const cudaError_t error =
        cudaHostRegister(ptr, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable);
    if (error != cudaSuccess) {
      return FailedCall(error, absl::StrCat("cudaHostRegister(", bytes, " bytes)"));
    }
    void* device_ptr = nullptr;
    const cudaError_t query = cudaHostGetDevicePointer(&device_ptr, ptr, 0);
    if (query != cudaSuccess || device_ptr != ptr) {
      cudaGetLastError();
      LogCudaError(cudaHostUnregister(ptr), "cudaHostUnregister after a failed registration");
      return absl::FailedPreconditionError(
          absl::StrCat("host registration: GPUs do not see the memory at its host address (",
                       query == cudaSuccess ? "different device address" : cudaGetErrorName(query),
                       "); kernels need unified addressing"));
    }
    return std::shared_ptr<void>(
        ptr, [](void* p) { LogCudaError(cudaHostUnregister(p), "cudaHostUnregister"); });
  }

  absl::StatusOr<std::shared_ptr<Memory>> AllocateDevice(int ordinal, uint64_t bytes) override {
    RETURN_IF_ERROR(CheckOrdinal(ordinal));
    if (bytes == 0) return absl::InvalidArgumentError("device allocation: 0 bytes; must be > 0");
    DeviceGuard guard;
    CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal));
    void* data = nullptr;
    const cudaError_t error = cudaMalloc(&data, bytes);
    if (error != cudaSuccess) {
      return FailedCall(error, absl::StrCat("cudaMalloc(", bytes, " bytes) on GPU ", ordinal));
    }
    // Pools are shared across sessions: never hand out bytes an earlier owner left behind.
    if (const cudaError_t zero = cudaMemset(data, 0, bytes); zero != cudaSuccess) {
      cudaFree(data);
      return FailedCall(zero, absl::StrCat("cudaMemset(", bytes, " bytes) on GPU ", ordinal));
    }
    return std::make_shared<Memory>(reinterpret_cast<uint64_t>(data), bytes, MemoryPlace::kDevice,
                                    ordinal, /*gpu_visible=*/true,
                                    [data] { LogCudaError(cudaFree(data), "cudaFree"); });
  }

  absl::StatusOr<std::shared_ptr<Memory>> AllocateHost(uint64_t bytes) override {
    if (bytes == 0) return absl::InvalidArgumentError("host allocation: 0 bytes; must be > 0");
    void* data = nullptr;
    const cudaError_t error =
        cudaHostAlloc(&data, bytes, cudaHostAllocPortable | cudaHostAllocMapped);
    if (error != cudaSuccess) {
      return FailedCall(error, absl::StrCat("cudaHostAlloc(", bytes, " bytes)"));
    }
    std::memset(data, 0, bytes);  // never hand out an earlier owner's bytes
    return std::make_shared<Memory>(reinterpret_cast<uint64_t>(data), bytes, MemoryPlace::kHost, -1,
                                    /*gpu_visible=*/true,
                                    [data] { LogCudaError(cudaFreeHost(data), "cudaFreeHost"); });
  }

  absl::StatusOr<std::unique_ptr<Executor>> CreateWorker(int ordinal, QueueLimits limits) override {
    RETURN_IF_ERROR(CheckOrdinal(ordinal));
    return CreateGpuWorker(ordinal, devices_[ordinal].uuid, limits);
  }

 private:
  absl::Status CheckOrdinal(int ordinal) const {
    if (ordinal >= 0 && ordinal < static_cast<int>(devices_.size())) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("gpu ordinal ", ordinal, " is outside [0, ", devices_.size(), ")"));
  }

  // The open allocation behind `key`, opening it on `ordinal` when no region uses it yet.
  absl::StatusOr<std::shared_ptr<IpcAllocation>> Acquire(const std::string& key, int ordinal) {
    std::shared_ptr<IpcAllocation> allocation;  // before the lock: dropped after unlocking
    std::unique_lock<std::mutex> lock(cache_->mutex);
    while (true) {
      auto it = cache_->entries.find(key);
      if (it == cache_->entries.end()) break;
      allocation = it->second.allocation.lock();
      if (allocation != nullptr) break;
      cache_->erased.wait(lock);  // its last user is closing it right now
    }
    if (allocation != nullptr) {
      if (allocation->device != ordinal) {
        return absl::FailedPreconditionError(
            absl::StrCat("cuda_ipc: this handle is already open on ",
                         devices_[allocation->device].uuid, ", not on ", devices_[ordinal].uuid));
      }
      return allocation;
    }
    ASSIGN_OR_RETURN(allocation, Open(key, ordinal));
    cache_->entries[key] = IpcCache::Entry{allocation, allocation.get()};
    return allocation;
  }

  // Maps the allocation (caller holds the cache lock). The result closes it when dropped.
  absl::StatusOr<std::shared_ptr<IpcAllocation>> Open(const std::string& key, int ordinal) {
    cudaIpcMemHandle_t handle;
    static_assert(sizeof(handle.reserved) == kIpcHandleBytes);
    std::memcpy(handle.reserved, key.data(), kIpcHandleBytes);
    DeviceGuard guard;
    CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal));
    void* mapped = nullptr;
    const cudaError_t error = cudaIpcOpenMemHandle(&mapped, handle, cudaIpcMemLazyEnablePeerAccess);
    if (error == cudaErrorMemoryAllocation) {
      return FailedCall(error, absl::StrCat("cudaIpcOpenMemHandle on ", devices_[ordinal].uuid));
    }
    if (error != cudaSuccess) {
      cudaGetLastError();
      return absl::InvalidArgumentError(absl::StrCat(
          "cuda_ipc.handle: CUDA cannot open it on ", devices_[ordinal].uuid,
          " (cudaIpcOpenMemHandle: ", cudaGetErrorName(error), " (", cudaGetErrorString(error),
          ")); legacy CUDA IPC cannot share memory from expandable segments "
          "(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True) or cuMemCreate/VMM allocations, "
          "nor memory of this daemon's own process"));
    }
    CUdeviceptr range_base = 0;
    size_t range_bytes = 0;
    const CUresult range =
        address_range_(&range_base, &range_bytes, reinterpret_cast<CUdeviceptr>(mapped));
    const uint64_t end = static_cast<uint64_t>(range_base) + range_bytes;
    const uint64_t start = reinterpret_cast<uint64_t>(mapped);
    if (range != CUDA_SUCCESS || start < range_base || start >= end) {
      LogCudaError(cudaIpcCloseMemHandle(mapped),
                   "cudaIpcCloseMemHandle after a failed size query");
      return absl::InternalError(
          absl::StrCat("cuda_ipc: cuMemGetAddressRange on the mapped allocation failed (CUresult ",
                       static_cast<int>(range), ")"));
    }
    auto* raw = new IpcAllocation{key, ordinal, start, end - start};
    return std::shared_ptr<IpcAllocation>(raw, [cache = cache_](IpcAllocation* a) {
      {
        std::lock_guard<std::mutex> lock(cache->mutex);
        DeviceGuard close_guard;
        const cudaError_t set = cudaSetDevice(a->device);
        LogCudaError(set, "cudaSetDevice before cudaIpcCloseMemHandle");
        if (set == cudaSuccess) {
          LogCudaError(cudaIpcCloseMemHandle(reinterpret_cast<void*>(a->mapped)),
                       "cudaIpcCloseMemHandle");
        }
        auto it = cache->entries.find(a->key);
        if (it != cache->entries.end() && it->second.raw == a) cache->entries.erase(it);
      }
      cache->erased.notify_all();
      delete a;
    });
  }

  const std::vector<GpuDeviceInfo> devices_;
  const PFN_cuMemGetAddressRange_v3020 address_range_;
  // Shared with every open allocation, which may outlive the runtime.
  const std::shared_ptr<IpcCache> cache_ = std::make_shared<IpcCache>();
};

}  // namespace

absl::StatusOr<std::unique_ptr<GpuRuntime>> CreateCudaRuntime() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) return FailedCall(error, "cudaGetDeviceCount");
  if (count == 0) return absl::FailedPreconditionError("cudaGetDeviceCount: 0 devices");

  void* entry = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  CUDA_RETURN_IF_ERROR(cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &entry, 12000,
                                                        cudaEnableDefault, &found));
  if (found != cudaDriverEntryPointSuccess || entry == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CUDA driver lacks cuMemGetAddressRange (entry point query result ",
                     static_cast<int>(found), ")"));
  }

  std::vector<GpuDeviceInfo> devices;
  for (int ordinal = 0; ordinal < count; ++ordinal) {
    cudaDeviceProp prop{};
    CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, ordinal));
    GpuDeviceInfo info;
    info.ordinal = ordinal;
    info.uuid = FormatUuid(prop.uuid);
    info.name = prop.name;
    info.total_memory = prop.totalGlobalMem;
    info.sm_count = prop.multiProcessorCount;
    devices.push_back(std::move(info));
  }
  return std::make_unique<CudaRuntime>(std::move(devices),
                                       reinterpret_cast<PFN_cuMemGetAddressRange_v3020>(entry));
}

}  // namespace kvshuttle
