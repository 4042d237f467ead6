// The copy backends a conversion can run on, by name. Pure C++ so the daemon, the client and
// GPU-less builds share one definition; kernels/converter.h implements them.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvshuttle {

enum class Backend : uint8_t {
  kAuto = 0,  // chosen per plan (Converter::Choose)
  kKernel,    // SM copy kernel: any conversion, device or pinned host memory on either side
  kBatch,     // one cudaMemcpyBatchAsync over the plan's contiguous runs
  kAsync,     // one cudaMemcpyAsync per contiguous run
  kStaged,    // pinned-host side moved by the copy engines through a device staging buffer,
              // pipelined with the SM kernel on device memory (falls back to kernel when the
              // job does not qualify; see kernels/converter.h)
};

// "auto", "kernel", "batch", "async", "staged".
absl::string_view BackendName(Backend backend);
// Parses a name above; unknown → INVALID_ARGUMENT listing the accepted names.
absl::StatusOr<Backend> ParseBackend(absl::string_view name);

}  // namespace kvshuttle
