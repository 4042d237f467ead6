// The memory a kvs_load client lends the daemon: host shared memory, or device memory shared
// through CUDA IPC when built with CUDA (KVS_CLIENT_HAVE_CUDA). One interface for registering,
// filling and reading back, so the client loop does not care which.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/client.h"

namespace kvshuttle::load {

// One buffer the daemon addresses as a single region of a session.
class LoadMemory {
 public:
  // `bytes` (> 0) of POSIX shared memory, zero-filled.
  static absl::StatusOr<std::unique_ptr<LoadMemory>> CreateHost(size_t bytes);
  // `bytes` (> 0) of device memory on local CUDA ordinal `ordinal`, exported for IPC.
  // FAILED_PRECONDITION in a build without CUDA.
  static absl::StatusOr<std::unique_ptr<LoadMemory>> CreateDevice(int ordinal, size_t bytes);
  virtual ~LoadMemory() = default;

  virtual size_t size() const = 0;
  // The GPU uuid of device memory ("GPU-…"); empty for host memory.
  virtual std::string gpu_uuid() const = 0;
  // Registers the whole buffer as one region of `session`; returns its id.
  virtual absl::StatusOr<uint64_t> Register(Session& session) const = 0;
  // Copies host bytes into [offset, offset + bytes.size()) and back out; OUT_OF_RANGE when the
  // range leaves the buffer.
  virtual absl::Status Write(size_t offset, absl::Span<const uint8_t> bytes) = 0;
  virtual absl::Status Read(size_t offset, absl::Span<uint8_t> bytes) const = 0;
};

// Local CUDA ordinals of the GPUs this process sees that the daemon (`info`) also serves, in
// ordinal order. FAILED_PRECONDITION naming what is missing when there are none (no GPU here,
// none at the daemon, no overlap, or a build without CUDA).
absl::StatusOr<std::vector<int>> SharedGpuOrdinals(const v1::GetInfoResponse& info);

}  // namespace kvshuttle::load
