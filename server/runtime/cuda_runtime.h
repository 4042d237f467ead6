// Internal to server/runtime (CUDA builds only): the CUDA implementation of GpuRuntime and the
// per-GPU worker executor it creates.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/runtime/executor.h"
#include "server/runtime/gpu_runtime.h"

namespace kvshuttle {

// The runtime over every visible GPU. FAILED_PRECONDITION when there is no usable device;
// other CUDA failures with the failing call as context.
absl::StatusOr<std::unique_ptr<GpuRuntime>> CreateCudaRuntime();

// The worker executor of GPU `ordinal` (named "gpu:<uuid>"): one thread, one non-blocking
// stream and one Converter on that device, a queue of `capacity` tasks. The caller's current
// device is preserved.
absl::StatusOr<std::unique_ptr<Executor>> CreateGpuWorker(int ordinal, const std::string& uuid,
                                                          QueueLimits limits);

}  // namespace kvshuttle
