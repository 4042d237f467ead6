// The cases of the plan property test: generators of valid block sets and jobs over fake
// regions, the oracle checks of block set tables and of every planned row, and RunCase.
#include "tests/unit/plan_property_cases.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/plan.h"
#include "proto/proto_convert.h"
#include "server/block_set.h"
#include "tests/unit/plan_property_model.h"

namespace kvshuttle::property {

std::string Describe(const LayoutDesc& l) {
  return absl::StrCat(LayoutKindName(l.kind), " ", DTypeName(l.dtype), " nl ", l.shape.nl, " no ",
                      l.shape.no, " nt ", l.shape.nt, " nh ", l.shape.nh, " hd ", l.shape.hd);
}

std::string Describe(const Side& s, const Regions& regions) {
  std::string out = absl::StrCat(
      Describe(s.layout), ", ", s.num_blocks, " blocks, ",
      s.strided ? absl::StrCat("strided (stride ", s.stride, ")") : std::string("explicit"),
      ", regions");
  for (size_t i : s.region_index) {
    const Region& r = regions.all[i];
    absl::StrAppend(&out, " [id ", r.id, " base ", r.base, " size ", r.size, "]");
  }
  absl::StrAppend(&out, ", request ", s.request.ShortDebugString());
  return out;
}

std::string Describe(const TransferSpec& spec, const std::vector<BlockPair>& pairs) {
  std::string out = absl::StrCat("heads {", spec.heads.src_offset, ", ", spec.heads.dst_offset,
                                 ", ", spec.heads.count, "} layers {", spec.layers.src_offset, ", ",
                                 spec.layers.dst_offset, ", ", spec.layers.count, "} token_count ",
                                 spec.token_count, " pairs");
  for (const BlockPair& p : pairs) {
    absl::StrAppend(&out, " (", p.src_block, "→", p.dst_block, " t ", p.src_token_offset, "→",
                    p.dst_token_offset, ")");
  }
  return out;
}

// The documented outcome of `status` for `expected`; empty when it matches.
std::string Mismatch(const absl::Status& status, const Expected& expected) {
  if (status.code() == expected.code && absl::StrContains(status.message(), expected.fragment)) {
    return "";
  }
  return absl::StrCat("mutation ", expected.mutation, ": want ",
                      absl::StatusCodeToString(expected.code), " naming \"", expected.fragment,
                      "\", got ", status.ToString());
}

namespace {

LayoutDesc RandomLayout(Rng& rng, DType dtype, int64_t no, int64_t hd) {
  LayoutDesc l;
  l.kind = static_cast<LayoutKind>(rng.In(0, kNumLayoutKinds - 1));
  l.dtype = dtype;
  l.shape = BlockShape{rng.In(1, 4), no, rng.In(1, 16), rng.In(1, 8), hd};
  return l;
}

uint64_t RandomOffset(Rng& rng, uint64_t extent) {
  if (rng.OneIn(3)) return static_cast<uint64_t>(rng.In(0, 16)) * extent;  // packed, vLLM-like
  return static_cast<uint64_t>(rng.In(0, 1 << 16));
}

// A valid block set over 1-3 fresh regions of one memory place, strided or explicit; region
// sizes fit the farthest piece exactly half of the time (boundary cases).
Side MakeSide(Rng& rng, const LayoutDesc& layout, Regions& regions) {
  Side s;
  s.layout = layout;
  s.num_blocks = rng.In(1, 8);
  s.strided = !rng.OneIn(3);
  const int64_t slots = s.slots();
  const uint64_t extent = s.extent();
  const MemoryPlace place = rng.OneIn(2) ? MemoryPlace::kHost : MemoryPlace::kDevice;
  const int device = place == MemoryPlace::kHost ? -1 : static_cast<int>(rng.In(0, 1));
  const int64_t count = rng.In(1, std::min<int64_t>(3, s.strided ? slots : slots * s.num_blocks));
  for (int64_t i = 0; i < count; ++i) {
    regions.Add(rng, place, device);
    s.region_index.push_back(regions.all.size() - 1);
  }
  const size_t entries = static_cast<size_t>(slots * s.num_blocks);
  s.entry_region.resize(entries);
  s.entry_offset.resize(entries);
  std::vector<uint64_t> need(regions.all.size(), 0);
  s.request.set_num_blocks(static_cast<uint32_t>(s.num_blocks));
  *s.request.mutable_layout() = LayoutToProto(layout);
  if (s.strided) {
    // 0: every block aliases block 0 (allowed); packed; padded; slots interleaved (vLLM-like).
    const uint64_t strides[] = {0, extent, extent + static_cast<uint64_t>(rng.In(1, 256)),
                                extent * static_cast<uint64_t>(slots)};
    s.stride = strides[rng.In(0, 3)];
    v1::StridedPlacement* p = s.request.mutable_strided();
    p->set_block_stride(s.stride);
    for (int64_t slot = 0; slot < slots; ++slot) {
      const size_t r = s.region_index[rng.In(0, count - 1)];
      const uint64_t offset = RandomOffset(rng, extent);
      v1::SlotBase* base = p->add_slots();
      base->set_region_id(regions.all[r].id);
      base->set_offset(offset);
      for (int64_t b = 0; b < s.num_blocks; ++b) {
        s.entry_region[b * slots + slot] = r;
        s.entry_offset[b * slots + slot] = offset + static_cast<uint64_t>(b) * s.stride;
      }
      need[r] =
          std::max(need[r], offset + static_cast<uint64_t>(s.num_blocks - 1) * s.stride + extent);
    }
  } else {
    v1::ExplicitPlacement* p = s.request.mutable_explicit_table();
    for (size_t e = 0; e < entries; ++e) {
      const size_t r = s.region_index[rng.In(0, count - 1)];
      const uint64_t offset = RandomOffset(rng, extent);
      v1::SlotBase* address = p->add_addresses();
      address->set_region_id(regions.all[r].id);
      address->set_offset(offset);
      s.entry_region[e] = r;
      s.entry_offset[e] = offset;
      need[r] = std::max(need[r], offset + extent);
    }
  }
  for (size_t r : s.region_index) {
    regions.all[r].size = need[r] == 0 ? static_cast<uint64_t>(rng.In(1, 1 << 16))
                                       : need[r] + (rng.OneIn(2) ? 0 : rng.In(1, 4096));
  }
  return s;
}

AxisRange RandomRange(Rng& rng, int64_t src_n, int64_t dst_n) {
  AxisRange r;
  if (rng.OneIn(3)) {  // the whole axis, as most jobs ask
    r.count = src_n <= dst_n ? 0 : dst_n;
    return r;
  }
  r.src_offset = rng.In(0, src_n - 1);
  r.dst_offset = rng.In(0, dst_n - 1);
  const int64_t src_left = src_n - r.src_offset;
  const int64_t dst_left = dst_n - r.dst_offset;
  r.count = src_left <= dst_left && rng.OneIn(3) ? 0 : rng.In(1, std::min(src_left, dst_left));
  return r;
}

// [address, address + bytes) ⊆ [begin, begin + size), without overflow.
bool Inside(uint64_t address, uint64_t bytes, uint64_t begin, uint64_t size) {
  return address >= begin && bytes <= size && address - begin <= size - bytes;
}

// Checks every row of every chunk of `plan` against the oracle of both sides.
std::string CheckPlan(const TransferPlan& plan, const std::vector<BlockPair>& pairs,
                      const Side& src, const Side& dst, const Regions& regions, Tally& tally) {
  const TransferSpec& r = plan.spec();
  const ChunkGeometry& g = plan.geometry();
  const int64_t no = r.src.shape.no;
  const int64_t per_pair = r.layers.count * no;
  const uint64_t row = static_cast<uint64_t>(g.row_bytes);
  const int64_t expected_chunks = static_cast<int64_t>(pairs.size()) * per_pair;
  const std::vector<ChunkAddress> chunks = plan.Chunks();
  if (static_cast<int64_t>(chunks.size()) != expected_chunks) {
    return absl::StrCat("plan has ", chunks.size(), " chunks; want ", expected_chunks);
  }
  const int64_t row_elements_moved =
      r.heads.count * r.token_count * r.src.shape.hd * DTypeSize(r.src.dtype);
  if (plan.bytes() != expected_chunks * row_elements_moved) {
    return absl::StrCat("plan moves ", plan.bytes(), " bytes; want ",
                        expected_chunks * row_elements_moved);
  }
  struct View {
    const Side& side;
    bool is_src;
  };
  for (size_t k = 0; k < chunks.size(); ++k) {
    const BlockPair& p = pairs[k / per_pair];
    const int64_t l = static_cast<int64_t>(k / no) % r.layers.count;
    const int64_t o = static_cast<int64_t>(k % no);
    for (const View v : {View{src, true}, View{dst, false}}) {
      const LayoutDesc& d = v.is_src ? r.src : r.dst;
      const int64_t block = v.is_src ? p.src_block : p.dst_block;
      const int64_t layer = (v.is_src ? r.layers.src_offset : r.layers.dst_offset) + l;
      const int64_t entry = IsStack(d.kind) ? block * d.shape.nl * no + layer * no + o : block;
      const Region& region = regions.all[v.side.entry_region[entry]];
      const uint64_t piece = region.base + v.side.entry_offset[entry];
      const uint64_t piece_bytes = v.side.extent();
      const uint64_t first = v.is_src ? chunks[k].src : chunks[k].dst;
      const int64_t inner_stride = v.is_src ? g.src_inner_stride : g.dst_inner_stride;
      const int64_t outer_stride = v.is_src ? g.src_outer_stride : g.dst_outer_stride;
      for (int64_t oi = 0; oi < g.outer_count; ++oi) {
        for (int64_t ii = 0; ii < g.inner_count; ++ii) {
          const uint64_t a = first + static_cast<uint64_t>(oi * outer_stride + ii * inner_stride);
          if (!Inside(a, row, piece, piece_bytes) || !Inside(a, row, region.base, region.size)) {
            return absl::StrCat(v.is_src ? "src" : "dst", " row (chunk ", k, ", outer ", oi,
                                ", inner ", ii, ") at ", a, " + ", row, " bytes leaves entry ",
                                entry, " [", piece, ", +", piece_bytes, ") of region ", region.id,
                                " [", region.base, ", +", region.size, ")");
          }
          ++tally.rows;
        }
      }
    }
  }
  tally.chunks += expected_chunks;
  return "";
}

// BuildBlockSet's table must be the oracle's, entry for entry.
std::string CheckTable(const Side& side, const Regions& regions) {
  const BlockSetRecord& rec = *side.record;
  if (rec.addresses.size() != side.entry_region.size()) {
    return absl::StrCat("table has ", rec.addresses.size(), " entries; want ",
                        side.entry_region.size());
  }
  for (size_t e = 0; e < rec.addresses.size(); ++e) {
    const uint64_t want = regions.all[side.entry_region[e]].base + side.entry_offset[e];
    if (rec.addresses[e] != want) {
      return absl::StrCat("table entry ", e, " is ", rec.addresses[e], "; want ", want);
    }
  }
  return "";
}

}  // namespace

std::string RunCase(uint64_t seed, int64_t index, Tally& tally) {
  Rng rng(seed ^ (0xd1b54a32d192ed03ULL * static_cast<uint64_t>(index + 1)));
  rng.Next();
  ++tally.cases;
  const DType dtype = static_cast<DType>(rng.In(0, kNumDTypes - 1));
  const int64_t no = rng.In(1, 2);
  static constexpr int64_t kWideHeads[] = {64, 128, 576};
  const int64_t hd = rng.OneIn(8) ? kWideHeads[rng.In(0, 2)] : rng.In(1, 32);
  Regions regions;
  regions.all.reserve(8);
  Side src = MakeSide(rng, RandomLayout(rng, dtype, no, hd), regions);
  Side dst = MakeSide(rng, RandomLayout(rng, dtype, no, hd), regions);
  regions.Materialize();
  const auto context = [&] {
    return absl::StrCat("\n  src: ", Describe(src, regions), "\n  dst: ", Describe(dst, regions));
  };

  for (Side* side : {&src, &dst}) {
    absl::StatusOr<std::shared_ptr<BlockSetRecord>> record =
        BuildBlockSet(side->request, regions.Lookup(), kMaxAddresses);
    if (!record.ok()) {
      return absl::StrCat("valid block set refused: ", record.status().ToString(), context());
    }
    side->record = *std::move(record);
    if (std::string bad = CheckTable(*side, regions); !bad.empty()) return bad + context();
  }

  TransferSpec spec;
  spec.src = src.layout;
  spec.dst = dst.layout;
  spec.heads = RandomRange(rng, src.layout.shape.nh, dst.layout.shape.nh);
  spec.layers = RandomRange(rng, src.layout.shape.nl, dst.layout.shape.nl);
  const int64_t max_tokens = std::min(src.layout.shape.nt, dst.layout.shape.nt);
  spec.token_count =
      src.layout.shape.nt <= dst.layout.shape.nt && rng.OneIn(3) ? 0 : rng.In(1, max_tokens);
  const int64_t tokens = spec.token_count == 0 ? src.layout.shape.nt : spec.token_count;
  std::vector<BlockPair> pairs(rng.OneIn(20) ? 0 : rng.In(1, 4));
  for (BlockPair& p : pairs) {
    p.src_block = rng.In(0, src.num_blocks - 1);
    p.dst_block = rng.In(0, dst.num_blocks - 1);
    p.src_token_offset = rng.In(0, src.layout.shape.nt - tokens);
    p.dst_token_offset = rng.In(0, dst.layout.shape.nt - tokens);
  }
  const AddressSegments segments{src.record->segments, dst.record->segments};
  absl::StatusOr<TransferPlan> plan =
      TransferPlan::Build(spec, src.record->addresses, dst.record->addresses, pairs, segments);
  if (!plan.ok()) {
    return absl::StrCat("valid job refused: ", plan.status().ToString(),
                        "\n  job: ", Describe(spec, pairs), context());
  }
  ++tally.plans;
  if (std::string bad = CheckPlan(*plan, pairs, src, dst, regions, tally); !bad.empty()) {
    return absl::StrCat(bad, "\n  job: ", Describe(spec, pairs), context());
  }
  // Between two strided block sets the daemon plans with BuildStrided: every address of that
  // plan too must lie in its region.
  const bool strided = !src.record->strided_bases.empty() && !dst.record->strided_bases.empty();
  auto strided_side = [](const BlockSetRecord& r) {
    return StridedSide{r.strided_bases, r.block_stride, r.num_blocks, r.strided_segments};
  };
  if (strided) {
    absl::StatusOr<TransferPlan> factored = TransferPlan::BuildStrided(
        spec, strided_side(*src.record), strided_side(*dst.record), pairs);
    if (!factored.ok()) {
      return absl::StrCat("valid job refused by BuildStrided: ", factored.status().ToString(),
                          "\n  job: ", Describe(spec, pairs), context());
    }
    ++tally.strided_plans;
    if (std::string bad = CheckPlan(*factored, pairs, src, dst, regions, tally); !bad.empty()) {
      return absl::StrCat("strided plan: ", bad, "\n  job: ", Describe(spec, pairs), context());
    }
  }

  // One invalid mutation: of a block set or of the job.
  if (rng.OneIn(2)) {
    Side& side = rng.OneIn(2) ? src : dst;
    v1::RegisterBlockSetRequest mutated = side.request;
    int64_t max_addresses = kMaxAddresses;
    int kind = 0;
    const Expected expected = MutateBlockSet(rng, side, regions, mutated, max_addresses, &kind);
    ++tally.block_set_mutations[kind];
    absl::StatusOr<std::shared_ptr<BlockSetRecord>> record =
        BuildBlockSet(mutated, regions.Lookup(), max_addresses);
    const absl::Status status = record.ok() ? absl::OkStatus() : record.status();
    if (std::string bad = Mismatch(status, expected); !bad.empty()) {
      return absl::StrCat(bad, "\n  mutated request: ", mutated.ShortDebugString(), context());
    }
  } else {
    TransferSpec mutated = spec;
    std::vector<BlockPair> mutated_pairs = pairs;
    int kind = 0;
    const Expected expected = MutateJob(rng, plan->spec(), src, dst, mutated, mutated_pairs, &kind);
    ++tally.job_mutations[kind];
    absl::StatusOr<TransferPlan> refused = TransferPlan::Build(
        mutated, src.record->addresses, dst.record->addresses, mutated_pairs, segments);
    const absl::Status status = refused.ok() ? absl::OkStatus() : refused.status();
    if (std::string bad = Mismatch(status, expected); !bad.empty()) {
      return absl::StrCat(bad, "\n  mutated job: ", Describe(mutated, mutated_pairs), " src ",
                          Describe(mutated.src), " dst ", Describe(mutated.dst), context());
    }
    if (strided) {
      absl::StatusOr<TransferPlan> refused_strided = TransferPlan::BuildStrided(
          mutated, strided_side(*src.record), strided_side(*dst.record), mutated_pairs);
      const absl::Status s = refused_strided.ok() ? absl::OkStatus() : refused_strided.status();
      if (std::string bad = Mismatch(s, expected); !bad.empty()) {
        return absl::StrCat("BuildStrided: ", bad, "\n  mutated job: ",
                            Describe(mutated, mutated_pairs), context());
      }
    }
  }
  return "";
}

}  // namespace kvshuttle::property
