// The model the plan property test's cases are built on (tests/unit/plan_property_cases.cc):
// a seedable generator, fake regions looked up like a session's, block sets with an oracle of
// where each table entry lies, and the random invalid mutations (plan_property_mutations.cc)
// with the code and field each must be refused with.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/transfer.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/block_set.h"
#include "server/runtime/memory.h"

namespace kvshuttle::property {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();
constexpr int64_t kMaxAddresses = int64_t{1} << 22;  // the daemon's default (Limits)

// SplitMix64: tiny, fast, and any (seed, case) pair starts its own stream.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi]; precondition lo ≤ hi.
  int64_t In(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Next() % (static_cast<uint64_t>(hi - lo) + 1));
  }
  bool OneIn(int n) { return Next() % static_cast<uint64_t>(n) == 0; }

 private:
  uint64_t state_;
};

// A region as registered: where it is, how big, and in which memory place.
struct Region {
  uint64_t id = 0;
  uint64_t base = 0;
  uint64_t size = 0;
  MemoryPlace place = MemoryPlace::kHost;
  int device = -1;
  bool releasing = false;
  std::shared_ptr<Memory> memory;
};

// Every region of one case, looked up the way a session looks them up.
struct Regions {
  std::vector<Region> all;

  Region& Add(Rng& rng, MemoryPlace place, int device) {
    Region r;
    r.id = all.size() + 1;
    r.base = 4096 + rng.Next() % (uint64_t{1} << 46);
    if (rng.OneIn(2)) r.base &= ~uint64_t{255};
    r.place = place;
    r.device = device;
    all.push_back(r);
    return all.back();
  }
  void Materialize() {
    for (Region& r : all) {
      r.memory = std::make_shared<Memory>(r.base, r.size, r.place, r.device, false, nullptr);
    }
  }
  RegionLookup Lookup() const {
    return [this](uint64_t id) -> absl::StatusOr<RegionView> {
      for (const Region& r : all) {
        if (r.id == id) return RegionView{r.releasing ? nullptr : r.memory, r.releasing};
      }
      return absl::NotFoundError(
          absl::StrCat("region_id: ", id, " is not a region of this session"));
    };
  }
};

// One block set of a case and the oracle for it: which region and offset each table entry
// (block-major, AddressesPerBlock per block) must have.
struct Side {
  LayoutDesc layout;
  int64_t num_blocks = 0;
  bool strided = true;
  uint64_t stride = 0;
  std::vector<size_t> region_index;  // the regions this block set may use (into Regions::all)
  std::vector<size_t> entry_region;  // per entry: index into Regions::all
  std::vector<uint64_t> entry_offset;
  v1::RegisterBlockSetRequest request;
  std::shared_ptr<BlockSetRecord> record;

  int64_t slots() const { return AddressesPerBlock(layout.kind, layout.shape); }
  uint64_t extent() const {
    return static_cast<uint64_t>(
        BytesPerAddress(layout.kind, layout.shape, DTypeSize(layout.dtype)));
  }
};

// "nhd bf16 nl 2 ...", and a block set or a job with all its numbers, for failure messages.
std::string Describe(const LayoutDesc& l);
std::string Describe(const Side& s, const Regions& regions);
std::string Describe(const TransferSpec& spec, const std::vector<BlockPair>& pairs);

// What a refused input must produce.
struct Expected {
  std::string mutation;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string fragment;  // the field the message names
};

// "" when `status` is what `expected` documents, else what differs.
std::string Mismatch(const absl::Status& status, const Expected& expected);

// Applies a random applicable block set mutation to `req` (a copy of `side`'s request) and
// says what BuildBlockSet must answer. `max_addresses` may be lowered; `kind` receives the
// mutation's number (< kBlockSetMutations).
Expected MutateBlockSet(Rng& rng, const Side& side, Regions& regions,
                        v1::RegisterBlockSetRequest& req, int64_t& max_addresses, int* kind);

// Applies a random job mutation to `spec`/`pairs` (valid before; `resolved` is the valid spec
// resolved) and says what TransferPlan::Build must answer; `kind` < kJobMutations.
Expected MutateJob(Rng& rng, const TransferSpec& resolved, const Side& src, const Side& dst,
                   TransferSpec& spec, std::vector<BlockPair>& pairs, int* kind);

}  // namespace kvshuttle::property
