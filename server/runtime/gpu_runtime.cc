// GpuRuntime's shared pieces, the null runtime of GPU-less machines and builds, and the
// factory that picks the CUDA runtime when a usable GPU exists.
#include "server/runtime/gpu_runtime.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "server/ops/logging.h"
#include "server/runtime/ipc_request.h"

#if KVS_HAVE_CUDA
#include "server/runtime/cuda_runtime.h"
#endif

namespace kvshuttle {
namespace {

constexpr uint64_t kHostAlignment = 4096;
// Client-supplied strings are quoted at most this long in messages.
constexpr size_t kMaxQuotedBytes = 64;

std::string Quoted(absl::string_view text) {
  if (text.size() <= kMaxQuotedBytes) return absl::StrCat("\"", text, "\"");
  return absl::StrCat("\"", text.substr(0, kMaxQuotedBytes), "...\" (", text.size(), " bytes)");
}

absl::Status NoGpu(absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": no GPU on this machine (the daemon runs without CUDA)"));
}

class NullGpuRuntime : public GpuRuntime {
 public:
  const std::vector<GpuDeviceInfo>& devices() const override { return devices_; }

  absl::StatusOr<std::shared_ptr<Memory>> OpenIpc(absl::string_view handle, absl::string_view uuid,
                                                  uint64_t offset, uint64_t size) override {
    RETURN_IF_ERROR(ValidateIpcRequest(handle, offset, size));
    RETURN_IF_ERROR(OrdinalOf(uuid).status());  // always fails: there are no devices
    return NoGpu("cuda_ipc");
  }

  absl::StatusOr<std::shared_ptr<void>> RegisterHost(void* /*ptr*/, uint64_t /*bytes*/) override {
    return std::shared_ptr<void>();
  }

  absl::StatusOr<std::shared_ptr<Memory>> AllocateDevice(int ordinal, uint64_t /*bytes*/) override {
    return NoGpu(absl::StrCat("device memory on GPU ", ordinal));
  }

  absl::StatusOr<std::shared_ptr<Memory>> AllocateHost(uint64_t bytes) override {
    if (bytes == 0) return absl::InvalidArgumentError("host allocation: 0 bytes; must be > 0");
    if (bytes > UINT64_MAX - (kHostAlignment - 1)) {
      return absl::ResourceExhaustedError(absl::StrCat("host allocation: ", bytes, " bytes"));
    }
    // aligned_alloc wants a size that is a multiple of the alignment.
    const uint64_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    void* data = std::aligned_alloc(kHostAlignment, rounded);
    if (data == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("host allocation: ", bytes, " bytes: out of memory"));
    }
    std::memset(data, 0, rounded);  // never hand out an earlier owner's bytes
    return std::make_shared<Memory>(reinterpret_cast<uint64_t>(data), bytes, MemoryPlace::kHost, -1,
                                    /*gpu_visible=*/false, [data] { std::free(data); });
  }

  absl::StatusOr<std::unique_ptr<Executor>> CreateWorker(int ordinal, QueueLimits /*limits*/) override {
    return NoGpu(absl::StrCat("worker for GPU ", ordinal));
  }

 private:
  const std::vector<GpuDeviceInfo> devices_{};
};

}  // namespace

absl::Status ValidateIpcRequest(absl::string_view handle, uint64_t offset, uint64_t size) {
  if (handle.size() != kIpcHandleBytes) {
    return absl::InvalidArgumentError(absl::StrCat("cuda_ipc.handle: ", handle.size(),
                                                   " bytes; a CUDA IPC handle is exactly ",
                                                   kIpcHandleBytes, " bytes"));
  }
  if (size == 0) return absl::InvalidArgumentError("cuda_ipc.size: 0; must be > 0");
  if (offset > UINT64_MAX - size) {
    return absl::OutOfRangeError(
        absl::StrCat("cuda_ipc: offset ", offset, " + size ", size, " overflows 64 bits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> GpuRuntime::OrdinalOf(absl::string_view uuid) const {
  std::vector<std::string> known;
  for (const GpuDeviceInfo& device : devices()) {
    if (device.uuid == uuid) return device.ordinal;
    known.push_back(device.uuid);
  }
  return absl::FailedPreconditionError(
      absl::StrCat("gpu uuid ", Quoted(uuid), " is not a GPU of this daemon; known: ",
                   known.empty() ? "none (no GPU)" : absl::StrJoin(known, ", ")));
}

std::unique_ptr<GpuRuntime> CreateNullGpuRuntime() { return std::make_unique<NullGpuRuntime>(); }

std::unique_ptr<GpuRuntime> CreateGpuRuntime() {
#if KVS_HAVE_CUDA
  absl::StatusOr<std::unique_ptr<GpuRuntime>> cuda = CreateCudaRuntime();
  if (cuda.ok()) return std::move(cuda).value();
  LogWarning("no usable GPU; serving host memory with the CPU executor only",
             {{"error", cuda.status().ToString()}});
#else
  LogInfo("built without CUDA; serving host memory with the CPU executor only");
#endif
  return CreateNullGpuRuntime();
}

}  // namespace kvshuttle
