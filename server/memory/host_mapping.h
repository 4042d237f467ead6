// Host memory regions: a client's memory object (a named POSIX shm object or a memfd the client
// sent over the descriptor side channel) mapped into the daemon and registered with the GPU
// runtime so kernels can use it.
//
// What may shrink is never touched unguarded: a memfd must carry F_SEAL_SHRINK (the client can
// then never truncate it), and a named shm object, which its owner can truncate at any time,
// is only copied by the CPU executor under a SIGBUS guard (server/runtime/sigbus_guard.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/runtime/gpu_runtime.h"
#include "server/runtime/memory.h"

namespace kvshuttle {

// Who may lend a named shm object: its owner must be `uid`, or its group `trust_gid` (≥ 0).
struct ShmAccess {
  uid_t uid = 0;
  int trust_gid = -1;
};

// Maps bytes [offset, offset + size) of the shm object `name` (shm_open name: a leading '/', no
// other '/', ≤ 255 bytes) read-write and registers the mapping with `gpu`. INVALID_ARGUMENT for
// a bad name, size 0, a symbolic link or an object that is not a regular shm object (a socket,
// FIFO, directory); NOT_FOUND when it does not exist; PERMISSION_DENIED when the object is not
// `access.uid`'s (nor of the trusted group), naming its owner; OUT_OF_RANGE when offset + size
// exceeds the object's size (or overflows). Released when the returned Memory is destroyed.
absl::StatusOr<std::shared_ptr<Memory>> MapSharedMemory(absl::string_view name, uint64_t offset,
                                                        uint64_t size, const ShmAccess& access,
                                                        GpuRuntime& gpu);

// The pure checks MapSharedMemory runs before any system call: INVALID_ARGUMENT for a bad name
// (quoted at most 64 bytes long) or size 0; OUT_OF_RANGE when offset + size overflows 64 bits.
absl::Status ValidateShmRequest(absl::string_view name, uint64_t offset, uint64_t size);

// Maps bytes [offset, offset + size) of the memfd `fd` (the caller keeps ownership; the mapping
// outlives it). INVALID_ARGUMENT for size 0, overflow, or a descriptor that is not a memfd (a
// regular file, pipe, socket, directory, named shm object: anything without seals);
// FAILED_PRECONDITION when it is not sealed against shrinking (F_SEAL_SHRINK), which would let
// the client truncate it under the daemon; OUT_OF_RANGE past its size.
absl::StatusOr<std::shared_ptr<Memory>> MapMemfd(int fd, uint64_t offset, uint64_t size,
                                                 GpuRuntime& gpu);

}  // namespace kvshuttle
