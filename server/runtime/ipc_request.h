// Internal to server/runtime: the pure checks every GpuRuntime::OpenIpc implementation runs
// before touching CUDA, so GPU and GPU-less builds reject malformed requests the same way.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvshuttle {

// Bytes of a legacy CUDA IPC memory handle (cudaIpcMemHandle_t).
inline constexpr size_t kIpcHandleBytes = 64;

// INVALID_ARGUMENT when `handle` is not exactly kIpcHandleBytes long (the message gives only
// its length, never its bytes) or `size` is 0; OUT_OF_RANGE when offset + size overflows
// 64 bits. OK otherwise.
absl::Status ValidateIpcRequest(absl::string_view handle, uint64_t offset, uint64_t size);

}  // namespace kvshuttle
