// Launch interface of the chunk-copy kernel (kernels/convert_kernel.cu). Internal to kernels/;
// users go through Converter.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "core/plan.h"

namespace kvshuttle {

// Launches one kernel over every chunk of `plan`. `device_chunks` points to a device-visible
// copy of plan.chunks() ([num_chunks] {src, dst} address pairs). `grid_limit` caps the CTAs
// (so the SMs) used; `threads` is the CTA size. Checks the launch.
absl::Status LaunchChunkCopy(const TransferPlan& plan, const ChunkAddress* device_chunks,
                             int grid_limit, int threads, cudaStream_t stream);

}  // namespace kvshuttle
