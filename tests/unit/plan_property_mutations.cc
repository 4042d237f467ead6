// The invalid mutations of the plan property test: each changes one thing of a valid block
// set request or job and says which code and field the refusal must name.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/proto_convert.h"
#include "tests/unit/plan_property_cases.h"
#include "tests/unit/plan_property_model.h"

namespace kvshuttle::property {
namespace {

// Block set mutations, each of which BuildBlockSet must refuse with its code.
enum class BlockSetMutation {
  kSlotPastRegionEnd,
  kStrideOverflows,
  kStrideBeyondRegion,
  kEntryPastRegionEnd,
  kSlotCount,
  kTableCount,
  kZeroBlocks,
  kUnknownRegion,
  kReleasingRegion,
  kMixedPlaces,
  kBadShape,
  kBadDType,
  kBadKind,
  kTooManyAddresses,
  kNoPlacement,
  kCount,
};

// Job mutations, each of which TransferPlan::Build must refuse with its code.
enum class JobMutation {
  kSrcBlock,
  kDstBlock,
  kSrcTokenOffset,
  kDstTokenOffset,
  kHeadsSrcOffset,
  kHeadsDstOffset,
  kHeadsCount,
  kLayersSrcOffset,
  kLayersDstOffset,
  kLayersCount,
  kTokenCount,
  kDTypeMismatch,
  kHdMismatch,
  kNoMismatch,
  kCount,
};

// How far past a boundary a mutation goes: one byte a third of the time (off-by-one bugs).
uint64_t Beyond(Rng& rng) { return rng.OneIn(3) ? 1 : static_cast<uint64_t>(rng.In(1, 4096)); }

static_assert(kBlockSetMutations == static_cast<int>(BlockSetMutation::kCount));
static_assert(kJobMutations == static_cast<int>(JobMutation::kCount));

}  // namespace

Expected MutateBlockSet(Rng& rng, const Side& side, Regions& regions,
                        v1::RegisterBlockSetRequest& req, int64_t& max_addresses, int* kind) {
  const int64_t slots = side.slots();
  const uint64_t extent = side.extent();
  const int64_t entries = slots * side.num_blocks;
  const uint64_t span = static_cast<uint64_t>(side.num_blocks - 1) * side.stride + extent;
  while (true) {
    const auto m = static_cast<BlockSetMutation>(rng.In(0, kBlockSetMutations - 1));
    *kind = static_cast<int>(m);
    using absl::StatusCode;
    switch (m) {
      case BlockSetMutation::kSlotPastRegionEnd: {
        if (!side.strided) continue;
        const int64_t slot = rng.In(0, slots - 1);
        const uint64_t size = regions.all[side.entry_region[slot]].size;
        req.mutable_strided()->mutable_slots(slot)->set_offset(
            rng.OneIn(4) ? kU64Max - static_cast<uint64_t>(rng.In(0, 1 << 20))
                         : size - span + Beyond(rng));
        return {"slot past its region's end", StatusCode::kOutOfRange,
                absl::StrCat("strided.slots[", slot, "]")};
      }
      case BlockSetMutation::kStrideOverflows: {
        if (!side.strided || side.num_blocks < 2) continue;
        const uint64_t last = static_cast<uint64_t>(side.num_blocks - 1);
        const uint64_t limit = (kU64Max - extent) / last;
        // Any stride in (limit, UINT64_MAX] makes last × stride + extent overflow.
        const uint64_t room = std::min<uint64_t>(1000, kU64Max - limit);
        req.mutable_strided()->set_block_stride(rng.OneIn(2) ? kU64Max
                                                             : limit + 1 + rng.Next() % room);
        return {"block stride overflowing 64 bits", StatusCode::kOutOfRange,
                "strided.block_stride"};
      }
      case BlockSetMutation::kStrideBeyondRegion: {
        if (!side.strided || side.num_blocks < 2) continue;
        uint64_t largest = 0;
        for (const Region& r : regions.all) largest = std::max(largest, r.size);
        req.mutable_strided()->set_block_stride(largest + static_cast<uint64_t>(rng.In(1, 4096)));
        return {"block stride past every region", StatusCode::kOutOfRange, "strided.slots[0]"};
      }
      case BlockSetMutation::kEntryPastRegionEnd: {
        if (side.strided) continue;
        const int64_t e = rng.In(0, entries - 1);
        const uint64_t size = regions.all[side.entry_region[e]].size;
        req.mutable_explicit_table()->mutable_addresses(e)->set_offset(
            rng.OneIn(4) ? kU64Max - static_cast<uint64_t>(rng.In(0, 1 << 20))
                         : size - extent + Beyond(rng));
        return {"table entry past its region's end", StatusCode::kOutOfRange,
                absl::StrCat("explicit_table.addresses[", e, "]")};
      }
      case BlockSetMutation::kSlotCount: {
        if (!side.strided) continue;
        auto* s = req.mutable_strided()->mutable_slots();
        if (rng.OneIn(2)) {
          *s->Add() = s->Get(0);
        } else {
          s->RemoveLast();
        }
        return {"wrong slot count", StatusCode::kInvalidArgument, "strided.slots"};
      }
      case BlockSetMutation::kTableCount: {
        if (side.strided) continue;
        auto* a = req.mutable_explicit_table()->mutable_addresses();
        if (rng.OneIn(2)) {
          *a->Add() = a->Get(0);
        } else {
          a->RemoveLast();
        }
        return {"wrong table size", StatusCode::kInvalidArgument, "explicit_table.addresses"};
      }
      case BlockSetMutation::kZeroBlocks:
        req.set_num_blocks(0);
        return {"zero blocks", StatusCode::kInvalidArgument, "num_blocks: 0"};
      case BlockSetMutation::kUnknownRegion: {
        const uint64_t unknown = 1000000 + rng.Next() % 1000000;
        v1::SlotBase* base =
            side.strided ? req.mutable_strided()->mutable_slots(rng.In(0, slots - 1))
                         : req.mutable_explicit_table()->mutable_addresses(rng.In(0, entries - 1));
        base->set_region_id(unknown);
        return {"unknown region", StatusCode::kNotFound, absl::StrCat("region_id: ", unknown)};
      }
      case BlockSetMutation::kReleasingRegion: {
        const size_t r = side.entry_region[rng.In(0, entries - 1)];
        regions.all[r].releasing = true;
        return {"releasing region", StatusCode::kFailedPrecondition, "is being released"};
      }
      case BlockSetMutation::kMixedPlaces: {
        if ((side.strided ? slots : entries) < 2) continue;
        const bool host = regions.all[side.region_index[0]].place == MemoryPlace::kHost;
        Region& other =
            regions.Add(rng, host ? MemoryPlace::kDevice : MemoryPlace::kHost, host ? 0 : -1);
        other.size = span + extent;
        other.memory = std::make_shared<Memory>(other.base, other.size, other.place, other.device,
                                                false, nullptr);
        v1::SlotBase* base =
            side.strided ? req.mutable_strided()->mutable_slots(rng.In(0, slots - 1))
                         : req.mutable_explicit_table()->mutable_addresses(rng.In(0, entries - 1));
        base->set_region_id(other.id);
        base->set_offset(0);
        return {"regions in two memory places", StatusCode::kInvalidArgument,
                "another memory place"};
      }
      case BlockSetMutation::kBadShape: {
        static constexpr const char* kDims[] = {"nl", "no", "nt", "nh", "hd"};
        const int dim = static_cast<int>(rng.In(0, 4));
        const uint32_t value =
            rng.OneIn(2) ? 0u : static_cast<uint32_t>(kMaxDim + rng.In(1, kU32Max - kMaxDim - 1));
        v1::BlockShape* shape = req.mutable_layout()->mutable_shape();
        using Setter = void (v1::BlockShape::*)(uint32_t);
        static constexpr Setter kSetters[] = {&v1::BlockShape::set_nl, &v1::BlockShape::set_no,
                                              &v1::BlockShape::set_nt, &v1::BlockShape::set_nh,
                                              &v1::BlockShape::set_hd};
        (shape->*kSetters[dim])(value);
        return {"dimension outside [1, 2^24]", StatusCode::kInvalidArgument,
                absl::StrCat("layout.shape.", kDims[dim])};
      }
      case BlockSetMutation::kBadDType:
        req.mutable_layout()->set_dtype(rng.OneIn(2) ? v1::DTYPE_UNSPECIFIED
                                                     : static_cast<v1::DType>(rng.In(9, 1000)));
        return {"unknown dtype", StatusCode::kInvalidArgument, "layout.dtype"};
      case BlockSetMutation::kBadKind:
        req.mutable_layout()->set_kind(rng.OneIn(2) ? v1::LAYOUT_UNSPECIFIED
                                                    : static_cast<v1::LayoutKind>(rng.In(6, 1000)));
        return {"unknown layout kind", StatusCode::kInvalidArgument, "layout.kind"};
      case BlockSetMutation::kTooManyAddresses:
        max_addresses = entries - 1;
        return {"more addresses than the limit", StatusCode::kInvalidArgument,
                "addresses per block set"};
      case BlockSetMutation::kNoPlacement:
        req.clear_placement();
        return {"no placement", StatusCode::kInvalidArgument, "placement"};
      case BlockSetMutation::kCount:
        break;
    }
  }
}

Expected MutateJob(Rng& rng, const TransferSpec& resolved, const Side& src, const Side& dst,
                   TransferSpec& spec, std::vector<BlockPair>& pairs, int* kind) {
  using absl::StatusCode;
  if (pairs.empty()) pairs.push_back(BlockPair{0, 0, 0, 0});
  const int64_t i = rng.In(0, static_cast<int64_t>(pairs.size()) - 1);
  const std::string pair = absl::StrCat("pairs[", i, "]");
  const BlockShape& ss = resolved.src.shape;
  const BlockShape& ds = resolved.dst.shape;
  const auto past = [&rng](int64_t limit) {  // a value ≥ limit: often limit, sometimes far
    return rng.OneIn(4) ? int64_t{kU32Max} : rng.OneIn(2) ? limit : limit + rng.In(1, 100);
  };
  const auto m = static_cast<JobMutation>(rng.In(0, kJobMutations - 1));
  *kind = static_cast<int>(m);
  switch (m) {
    case JobMutation::kSrcBlock:
      pairs[i].src_block = past(src.num_blocks);
      return {"source block id ≥ num_blocks", StatusCode::kOutOfRange, pair + ".src_block"};
    case JobMutation::kDstBlock:
      pairs[i].dst_block = past(dst.num_blocks);
      return {"destination block id ≥ num_blocks", StatusCode::kOutOfRange, pair + ".dst_block"};
    case JobMutation::kSrcTokenOffset:
      pairs[i].src_token_offset = past(ss.nt - resolved.token_count + 1);
      return {"source token offset", StatusCode::kOutOfRange, pair + ".src_token_offset"};
    case JobMutation::kDstTokenOffset:
      pairs[i].dst_token_offset = past(ds.nt - resolved.token_count + 1);
      return {"destination token offset", StatusCode::kOutOfRange, pair + ".dst_token_offset"};
    case JobMutation::kHeadsSrcOffset:
      spec.heads.src_offset = past(ss.nh);
      return {"heads.src_offset ≥ nh", StatusCode::kOutOfRange, "heads.src_offset"};
    case JobMutation::kHeadsDstOffset:
      spec.heads.dst_offset = past(ds.nh);
      return {"heads.dst_offset ≥ nh", StatusCode::kOutOfRange, "heads.dst_offset"};
    case JobMutation::kHeadsCount:
      spec.heads.count =
          past(std::min(ss.nh - resolved.heads.src_offset, ds.nh - resolved.heads.dst_offset) + 1);
      return {"heads.count past a side", StatusCode::kOutOfRange, "heads.count"};
    case JobMutation::kLayersSrcOffset:
      spec.layers.src_offset = past(ss.nl);
      return {"layers.src_offset ≥ nl", StatusCode::kOutOfRange, "layers.src_offset"};
    case JobMutation::kLayersDstOffset:
      spec.layers.dst_offset = past(ds.nl);
      return {"layers.dst_offset ≥ nl", StatusCode::kOutOfRange, "layers.dst_offset"};
    case JobMutation::kLayersCount:
      spec.layers.count = past(
          std::min(ss.nl - resolved.layers.src_offset, ds.nl - resolved.layers.dst_offset) + 1);
      return {"layers.count past a side", StatusCode::kOutOfRange, "layers.count"};
    case JobMutation::kTokenCount:
      spec.token_count = past(std::min(ss.nt, ds.nt) + 1);
      return {"token_count past a side", StatusCode::kOutOfRange, "token_count"};
    case JobMutation::kDTypeMismatch:
      spec.dst.dtype = static_cast<DType>(
          (static_cast<int>(spec.dst.dtype) + rng.In(1, kNumDTypes - 1)) % kNumDTypes);
      return {"dtype mismatch", StatusCode::kInvalidArgument, "dst.dtype"};
    case JobMutation::kHdMismatch:
      spec.dst.shape.hd += rng.In(1, 8);
      return {"hd mismatch", StatusCode::kInvalidArgument, "dst.shape.hd"};
    case JobMutation::kNoMismatch:
      spec.dst.shape.no = 3 - spec.dst.shape.no;
      return {"no mismatch", StatusCode::kInvalidArgument, "dst.shape.no"};
    case JobMutation::kCount:
      break;
  }
  return {};
}

}  // namespace kvshuttle::property
