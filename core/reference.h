// The CPU reference converter: element by element, straight from the logical shapes of
// DESIGN §1, sharing nothing with the plan/stride machinery it is used to check.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/transfer.h"

namespace kvshuttle {

// Where element (l, o, t, h, d) of one block lives: index of the block's address (0 for the
// contiguous layouts, l*no + o for stacks) and the byte offset from that address.
struct ElementLocation {
  int64_t slot = 0;
  int64_t byte_offset = 0;
};

// Locates one element of a block of layout `desc`. Preconditions: indices inside the shape.
ElementLocation LocateElement(const LayoutDesc& desc, int64_t l, int64_t o, int64_t t, int64_t h,
                              int64_t d);

// Converts like TransferPlan::Build + an executor would, on host-addressable memory, one
// element at a time, with the pairs split over `num_threads` threads. Validates the spec, table
// sizes and pairs first (same codes as the plan builder) and touches nothing on error.
absl::Status ReferenceConvert(const TransferSpec& spec, absl::Span<const uint64_t> src_addresses,
                              absl::Span<const uint64_t> dst_addresses,
                              absl::Span<const BlockPair> pairs, int num_threads);

}  // namespace kvshuttle
