// Block set validation and address-table construction.
#include "server/block_set.h"

#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/transfer.h"
#include "proto/proto_convert.h"

namespace kvshuttle {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// Checks [offset, offset + extent) ⊆ [0, size) without overflow.
bool Fits(uint64_t offset, uint64_t extent, uint64_t size) {
  return offset <= size && extent <= size - offset;
}

// Builds the records of distinct regions and checks that they share one placement.
absl::Status AddRegion(uint64_t region_id, const RegionLookup& lookup, const std::string& field,
                       std::map<uint64_t, std::shared_ptr<Memory>>& used,
                       BlockSetRecord& record) {
  if (used.count(region_id) != 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(const RegionView view, lookup(region_id));
  if (view.releasing) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ".region_id: region ", region_id, " is being released"));
  }
  const Memory& m = *view.memory;
  const Placement p{m.place(), m.device(), m.gpu_visible()};
  if (used.empty()) {
    record.placement = p;
  } else if (p.place != record.placement.place || p.device != record.placement.device) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".region_id: region ", region_id,
        " is in another memory place or device than the block set's first region; one block "
        "set lives in one place"));
  }
  record.placement.gpu_visible = record.placement.gpu_visible && p.gpu_visible;
  used.emplace(region_id, view.memory);
  return absl::OkStatus();
}

}  // namespace

int64_t BlockSetMetadataBytes(const v1::RegisterBlockSetRequest& request,
                              int64_t max_addresses) {
  absl::StatusOr<LayoutDesc> layout = LayoutFromProto(request.layout(), "layout");
  if (!layout.ok()) return 0;
  const int64_t slots = AddressesPerBlock(layout->kind, layout->shape);
  if (static_cast<int64_t>(request.num_blocks()) > max_addresses / slots) return 0;
  // One 8-byte address and one 4-byte segment per (block, slot). Both factors are < 2^32.
  return static_cast<int64_t>(request.num_blocks()) * slots * 12 +
         static_cast<int64_t>(sizeof(BlockSetRecord));
}

absl::StatusOr<std::shared_ptr<BlockSetRecord>> BuildBlockSet(
    const v1::RegisterBlockSetRequest& request, const RegionLookup& lookup,
    int64_t max_addresses) {
  auto record = std::make_shared<BlockSetRecord>();
  record->name = request.name();
  ASSIGN_OR_RETURN(record->layout, LayoutFromProto(request.layout(), "layout"));
  const LayoutDesc& layout = record->layout;
  if (request.num_blocks() == 0) {
    return absl::InvalidArgumentError("num_blocks: 0 is outside [1, 4294967295]");
  }
  record->num_blocks = request.num_blocks();
  const int64_t slots = AddressesPerBlock(layout.kind, layout.shape);
  const uint64_t extent =
      static_cast<uint64_t>(BytesPerAddress(layout.kind, layout.shape, DTypeSize(layout.dtype)));
  if (record->num_blocks > max_addresses / slots) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_blocks: ", record->num_blocks, " blocks × ", slots, " slots exceeds ",
        max_addresses, " addresses per block set"));
  }
  std::map<uint64_t, std::shared_ptr<Memory>> used;
  record->addresses.resize(static_cast<size_t>(record->num_blocks * slots));
  record->segments.resize(record->addresses.size());
  // Each distinct region is one segment: runs of a job never merge across two regions.
  std::map<uint64_t, uint32_t> segment_of;
  auto segment = [&segment_of](uint64_t region_id) {
    return segment_of.emplace(region_id, static_cast<uint32_t>(segment_of.size())).first->second;
  };

  if (request.has_strided()) {
    const v1::StridedPlacement& s = request.strided();
    if (s.slots_size() != slots) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strided.slots: ", s.slots_size(), " entries; ", LayoutKindName(layout.kind),
          " needs ", slots, (slots == 1 ? "" : " (nl*no, slot = l*no + o)")));
    }
    const uint64_t stride = s.block_stride();
    const uint64_t last = static_cast<uint64_t>(record->num_blocks - 1);
    if (last > 0 && stride > (kU64Max - extent) / last) {
      return absl::OutOfRangeError(absl::StrCat("strided.block_stride: ", stride, " × ", last,
                                                " blocks overflows 64 bits"));
    }
    const uint64_t span = last * stride + extent;  // bytes from a slot's first block start
    record->block_stride = stride;
    for (int64_t slot = 0; slot < slots; ++slot) {
      const v1::SlotBase& base = s.slots(static_cast<int>(slot));
      const std::string field = absl::StrCat("strided.slots[", slot, "]");
      RETURN_IF_ERROR(AddRegion(base.region_id(), lookup, field, used, *record));
      const Memory& m = *used.at(base.region_id());
      if (!Fits(base.offset(), span, m.size())) {
        return absl::OutOfRangeError(absl::StrCat(
            field, ": offset ", base.offset(), " + ", last, " × block_stride ", stride, " + ",
            extent, " bytes exceeds region ", base.region_id(), " size ", m.size()));
      }
      const uint32_t seg = segment(base.region_id());
      record->strided_bases.push_back(m.base() + base.offset());
      record->strided_segments.push_back(seg);
      for (int64_t b = 0; b < record->num_blocks; ++b) {
        record->addresses[b * slots + slot] = m.base() + base.offset() + b * stride;
        record->segments[b * slots + slot] = seg;
      }
    }
  } else if (request.has_explicit_table()) {
    const v1::ExplicitPlacement& e = request.explicit_table();
    if (e.addresses_size() != static_cast<int64_t>(record->addresses.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "explicit_table.addresses: ", e.addresses_size(), " entries; expected num_blocks ",
          record->num_blocks, " × ", slots, " slots = ", record->addresses.size()));
    }
    for (int i = 0; i < e.addresses_size(); ++i) {
      const v1::SlotBase& a = e.addresses(i);
      const std::string field = absl::StrCat("explicit_table.addresses[", i, "]");
      RETURN_IF_ERROR(AddRegion(a.region_id(), lookup, field, used, *record));
      const Memory& m = *used.at(a.region_id());
      if (!Fits(a.offset(), extent, m.size())) {
        return absl::OutOfRangeError(absl::StrCat(field, ": offset ", a.offset(), " + ", extent,
                                                  " bytes exceeds region ", a.region_id(),
                                                  " size ", m.size()));
      }
      record->addresses[i] = m.base() + a.offset();
      record->segments[i] = segment(a.region_id());
    }
  } else {
    return absl::InvalidArgumentError("placement: neither strided nor explicit_table is set");
  }
  for (auto& [id, memory] : used) {
    record->region_ids.push_back(id);
    record->memories.push_back(memory);
  }
  return record;
}

}  // namespace kvshuttle
