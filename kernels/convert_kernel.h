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

// The kernel's parameters hold up to kInlineSteps steps of a factored plan (TransferPlan's
// outer × steps table) and up to kInlineOuter outer entries.
inline constexpr int kInlineSteps = 256;
inline constexpr int kInlineOuter = 16;

// True when `plan` can launch with LaunchChunkCopyFactored: at most kInlineSteps chunk copies
// (they all go in the parameters) or at most kInlineSteps steps.
bool LaunchesFactored(const TransferPlan& plan);
// True when LaunchChunkCopyFactored needs a device-visible copy of plan.outer(): over
// kInlineSteps chunk copies and over kInlineOuter outer entries.
bool NeedsOuterTable(const TransferPlan& plan);

// Launches `plan` (LaunchesFactored) with its factored table: steps in the kernel's
// parameters, outer entries there too or at `device_outer` (a device-visible copy of
// plan.outer(), when NeedsOuterTable; else ignored). A strided job's table is one entry per
// pair, not one per chunk; a one-block job needs none (no copy before the launch).
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
