// Block sets: a layout over client regions with every address checked once, at registration.
// After that a job only checks block ids against num_blocks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/layout.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/budget.h"
#include "server/runtime/memory.h"

namespace kvshuttle {

// Where a job side's memory is: every address of its table lies in `memories`.
struct Placement {
  MemoryPlace place = MemoryPlace::kHost;
  int device = -1;           // ordinal for device memory
  bool gpu_visible = false;  // host memory registered/pinned for GPU access
};

// A validated block set (immutable once built).
struct BlockSetRecord {
  uint64_t id = 0;
  std::string name;
  LayoutDesc layout;
  int64_t num_blocks = 0;
  std::vector<uint64_t> addresses;  // num_blocks × AddressesPerBlock, block-major
  std::vector<uint32_t> segments;   // per address: which of its regions (AddressSegments)
  // Strided registrations: block 0's addresses and segments and the block stride, so that jobs
  // between two strided sides plan in O(pairs) (TransferPlan::BuildStrided). Empty otherwise.
  std::vector<uint64_t> strided_bases;
  std::vector<uint32_t> strided_segments;
  uint64_t block_stride = 0;
  Placement placement;
  std::vector<uint64_t> region_ids;               // distinct regions used
  std::vector<std::shared_ptr<Memory>> memories;  // keeps them mapped
  Budget::Charge charge;                          // its metadata bytes (BlockSetMetadataBytes)
};

// Daemon memory the block set of `request` takes (its address and segment tables), computed
// from the request before anything is built; 0 when BuildBlockSet refuses it before allocating
// anything (a malformed layout, over `max_addresses` addresses).
int64_t BlockSetMetadataBytes(const v1::RegisterBlockSetRequest& request, int64_t max_addresses);

// A region as the block set builder sees it.
struct RegionView {
  std::shared_ptr<Memory> memory;
  bool releasing = false;
};

// Looks a region id up in the caller's session; NOT_FOUND for unknown ids.
using RegionLookup = std::function<absl::StatusOr<RegionView>(uint64_t region_id)>;

// Validates `request` and builds the address table. INVALID_ARGUMENT for malformed layouts,
// slot counts, num_blocks 0, mixed memory places/devices or tables over `max_addresses`;
// OUT_OF_RANGE for any block address whose extent leaves its region (names block, slot,
// offset and region size); NOT_FOUND for unknown regions; FAILED_PRECONDITION for releasing
// ones. Overflow-safe for offsets and strides near UINT64_MAX.
absl::StatusOr<std::shared_ptr<BlockSetRecord>> BuildBlockSet(
    const v1::RegisterBlockSetRequest& request, const RegionLookup& lookup,
    int64_t max_addresses);

}  // namespace kvshuttle
