// Host shared memory regions: POSIX shm objects named by clients, mapped into the daemon.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/runtime/gpu_runtime.h"
#include "server/runtime/memory.h"

namespace kvshuttle {

// Maps bytes [offset, offset + size) of the shm object `name` (shm_open name: a leading '/',
// no other '/', ≤ 255 bytes) read-write, and registers the mapping with `gpu` so kernels can
// use it. INVALID_ARGUMENT for a bad name or size 0; NOT_FOUND when the object does not exist;
// OUT_OF_RANGE when offset + size exceeds the object's size (or overflows), naming both. The
// mapping (and registration) is released when the returned Memory is destroyed.
absl::StatusOr<std::shared_ptr<Memory>> MapSharedMemory(absl::string_view name, uint64_t offset,
                                                        uint64_t size, GpuRuntime& gpu);

// The pure checks MapSharedMemory runs before any system call: INVALID_ARGUMENT for a bad name
// (quoted at most 64 bytes long) or size 0; OUT_OF_RANGE when offset + size overflows 64 bits.
absl::Status ValidateShmRequest(absl::string_view name, uint64_t offset, uint64_t size);

}  // namespace kvshuttle
