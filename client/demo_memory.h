// The memory `kvshuttle demo` lends the daemon: host shared memory, or device memory shared
// through CUDA IPC when the CLI is built with CUDA; one interface for filling and reading back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/client.h"

namespace kvshuttle::cli {

// Which memory the demo uses and why ("--memory auto" explains its pick).
struct DemoMemoryChoice {
  v1::MemoryKind kind = v1::MEMORY_HOST;
  int ordinal = 0;     // device memory: local CUDA ordinal
  std::string reason;  // for people, e.g. "device GPU-…: visible here and to the daemon"
};

// Resolves "host", "device" or "auto" against this process's GPUs and the daemon's devices.
// "device" without a usable GPU → FAILED_PRECONDITION saying what is missing.
absl::StatusOr<DemoMemoryChoice> ChooseDemoMemory(absl::string_view mode,
                                                  const v1::GetInfoResponse& info);

// One buffer of `size()` bytes the daemon can address as a single region.
class DemoMemory {
 public:
  static absl::StatusOr<std::unique_ptr<DemoMemory>> Create(const DemoMemoryChoice& choice,
                                                            size_t bytes);
  virtual ~DemoMemory() = default;

  virtual size_t size() const = 0;
  // "host shm /kvshuttle-…" or "device GPU-…".
  virtual std::string Describe() const = 0;
  // Registers the whole buffer as one region of `session`; returns its id.
  virtual absl::StatusOr<uint64_t> Register(Session& session) const = 0;
  // Copies host bytes into [offset, offset + bytes.size()) and back out.
  virtual absl::Status Write(size_t offset, absl::Span<const uint8_t> bytes) = 0;
  virtual absl::Status Read(size_t offset, absl::Span<uint8_t> bytes) const = 0;
};

}  // namespace kvshuttle::cli
