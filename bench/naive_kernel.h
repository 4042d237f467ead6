// The baseline every benchmark reports against: an element-wise kernel written the way the
// seed's was — one thread per element, per-element 64-bit div/mod over [nh, nl, no, nt, hd].
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "core/transfer.h"

namespace kvshuttle {

// Converts `num_pairs` block pairs (block i of the tables → block i; no token offsets) of a
// resolved spec. Tables are device arrays in the block-set form (AddressesPerBlock per block).
absl::Status LaunchNaiveConvert(const TransferSpec& resolved, const uint64_t* src_table,
                                const uint64_t* dst_table, int64_t num_pairs,
                                cudaStream_t stream);

}  // namespace kvshuttle

namespace kvshuttle {

// A plain 16-byte grid-stride copy of `bytes` (a multiple of 16) with 4 loads in flight per
// thread: what an SM copy kernel reaches on contiguous memory, for reference.
absl::Status LaunchPlainCopy(void* dst, const void* src, uint64_t bytes, cudaStream_t stream);
// The same bytes with one 8-vector tile per CTA of `threads` and a grid covering them all
// (no persistent loop) — the chunk-per-CTA shape of copy kernel.
absl::Status LaunchPlainTileCopy(void* dst, const void* src, uint64_t bytes, int threads,
                                 cudaStream_t stream);

}  // namespace kvshuttle
