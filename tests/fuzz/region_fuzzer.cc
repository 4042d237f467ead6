// Fuzz target: RegisterRegion validation. The input is a binary RegisterRegionRequest. CUDA IPC
// requests go through ValidateIpcRequest (the checks every OpenIpc runs before CUDA), the null
// runtime's OpenIpc and a fake two-GPU runtime's; host shm requests through ValidateShmRequest
// (MapSharedMemory's checks before any system call; nothing is ever opened or mapped here).
// Acceptance must match an independent statement of the rules, errors must be request errors
// with bounded messages, and an IPC error never echoes the handle's bytes.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/runtime/gpu_runtime.h"
#include "server/memory/host_mapping.h"
#include "server/runtime/ipc_request.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvshuttle::fuzz {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

void CheckCudaIpc(const v1::CudaIpcMemory& m) {
  const std::string& handle = m.handle();
  const bool valid = handle.size() == kIpcHandleBytes && m.size() > 0 &&
                     m.offset() <= kU64Max - m.size();
  const absl::Status status = ValidateIpcRequest(handle, m.offset(), m.size());
  KVS_FUZZ_CHECK(status.ok() == valid, "ValidateIpcRequest(", handle.size(), "-byte handle, ",
                 m.offset(), ", ", m.size(), ") = ", status);
  if (!status.ok()) {
    CheckRequestError(status, "ValidateIpcRequest");
    KVS_FUZZ_CHECK(handle.size() < 16 || status.message().find(handle) == absl::string_view::npos,
                   "an IPC error echoes the handle's bytes");
  }

  static GpuRuntime* const null_gpu = CreateNullGpuRuntime().release();
  const absl::StatusOr<std::shared_ptr<Memory>> none =
      null_gpu->OpenIpc(handle, m.gpu_uuid(), m.offset(), m.size());
  KVS_FUZZ_CHECK(!none.ok(), "the null runtime opened an IPC handle");
  CheckRequestError(none.status(), "null OpenIpc");
  if (!status.ok()) {
    KVS_FUZZ_CHECK(none.status() == status, "null OpenIpc ", none.status(), " vs ", status);
  } else {
    KVS_FUZZ_CHECK(none.status().code() == absl::StatusCode::kFailedPrecondition,
                   "null OpenIpc of a valid request: ", none.status());
  }

  FakeGpuRuntime gpu;
  const absl::StatusOr<std::shared_ptr<Memory>> opened =
      gpu.OpenIpc(handle, m.gpu_uuid(), m.offset(), m.size());
  if (!status.ok()) {
    KVS_FUZZ_CHECK(opened.status() == status, "OpenIpc ", opened.status(), " vs ", status);
    return;
  }
  int ordinal = -1;
  for (const GpuDeviceInfo& d : gpu.devices()) {
    if (d.uuid == m.gpu_uuid()) ordinal = d.ordinal;
  }
  if (ordinal < 0) {
    KVS_FUZZ_CHECK(opened.status().code() == absl::StatusCode::kFailedPrecondition,
                   "unknown uuid: ", opened.status());
  }
  if (!opened.ok()) {
    CheckRequestError(opened.status(), "OpenIpc");
    return;
  }
  KVS_FUZZ_CHECK(ordinal >= 0 && (*opened)->device() == ordinal &&
                     (*opened)->place() == MemoryPlace::kDevice && (*opened)->size() == m.size(),
                 "OpenIpc mapped the wrong device or size");
}

// The shm name rules of host_mapping.h, stated independently: '/', then 1 to 254 bytes with no
// '/' and no NUL, and not "." or "..".
bool ValidShmName(const std::string& name) {
  if (name.size() < 2 || name.size() > 255 || name[0] != '/') return false;
  if (name == "/." || name == "/..") return false;
  for (size_t i = 1; i < name.size(); ++i) {
    if (name[i] == '/' || name[i] == '\0') return false;
  }
  return true;
}

void CheckHostShm(const v1::HostShmMemory& m) {
  const bool valid = ValidShmName(m.name()) && m.size() > 0 && m.offset() <= kU64Max - m.size();
  const absl::Status status = ValidateShmRequest(m.name(), m.offset(), m.size());
  KVS_FUZZ_CHECK(status.ok() == valid, "ValidateShmRequest(", m.name().size(), "-byte name, ",
                 m.offset(), ", ", m.size(), ") = ", status);
  if (!status.ok()) CheckRequestError(status, "ValidateShmRequest");
}

}  // namespace
}  // namespace kvshuttle::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvshuttle::v1::RegisterRegionRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  switch (request.memory_case()) {
    case kvshuttle::v1::RegisterRegionRequest::kCudaIpc:
      kvshuttle::fuzz::CheckCudaIpc(request.cuda_ipc());
      break;
    case kvshuttle::v1::RegisterRegionRequest::kHostShm:
      kvshuttle::fuzz::CheckHostShm(request.host_shm());
      break;
    default:
      break;
  }
  return 0;
}
