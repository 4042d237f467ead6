// Launch interface of the chunk-copy kernel (kernels/convert_kernel.cu). Internal to kernels/;
// users go through Converter.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "core/plan.h"

namespace kvshuttle {

// Launches one kernel over every chunk of `plan`. `device_chunks` points to a device-visible
// copy of plan.Chunks() ([num_chunks] {src, dst} address pairs). `grid_limit` caps the CTAs
// (so the SMs) used; `threads` is the CTA size. Checks the launch.
absl::Status LaunchChunkCopy(const TransferPlan& plan, const ChunkAddress* device_chunks,
                             int grid_limit, int threads, cudaStream_t stream);

// Plans of at most this many chunk copies can pass their table in the kernel parameters.
inline constexpr int kInlineChunks = 256;

// Launches `plan` (≤ kInlineChunks chunk copies) with its chunk table in the kernel's
// parameters: no device table and no copy before the launch (one-block jobs).
absl::Status LaunchChunkCopyInline(const TransferPlan& plan, int grid_limit, int threads,
                                   cudaStream_t stream);

// Factored plans of at most this many steps launch with the steps in the kernel's parameters.
inline constexpr int kInlineSteps = 256;

// Launches `plan` (≤ kInlineSteps steps) with its factored table (TransferPlan's outer ×
// steps): steps in the kernel's parameters, outer entries at `device_outer` (a device-visible
// copy of plan.outer(), one entry per pair for strided plans).
absl::Status LaunchChunkCopyFactored(const TransferPlan& plan, const ChunkAddress* device_outer,
                                     int grid_limit, int threads, cudaStream_t stream);

// CTAs of `threads` threads that fit on one SM at once for the kernel of this vector width;
// the grid of an uncapped launch is this × the SM count (a persistent grid, one wave).
int ResidentCtasPerSm(int alignment, int threads);

// The same over `num_chunks` chunk copies of `geometry` whose addresses (device table) are all
// multiples of `alignment` (1, 2, 4, 8 or 16) — e.g. one window of a staged job.
absl::Status LaunchChunkCopy(const ChunkGeometry& geometry, int alignment,
                             const ChunkAddress* device_chunks, uint64_t num_chunks,
                             int grid_limit, int threads, cudaStream_t stream);

}  // namespace kvshuttle
