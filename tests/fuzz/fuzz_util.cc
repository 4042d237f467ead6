// Fake regions and GPU runtime of the fuzz targets, and the checks they share.
#include "tests/fuzz/fuzz_util.h"

#include <algorithm>
#include <limits>
#include <set>

#include "core/layout.h"
#include "google/protobuf/stubs/logging.h"
#include "core/status_macros.h"
#include "proto/proto_convert.h"
#include "server/runtime/ipc_request.h"

namespace kvshuttle::fuzz {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kTiB = uint64_t{1} << 40;
// Fake allocations: slot k is [2^50 + k * 2^47, + at most 2^46), below 2^64 for k < 4096.
constexpr uint64_t kSlotBase = uint64_t{1} << 50;
constexpr uint64_t kSlotBytes = uint64_t{1} << 47;
constexpr uint64_t kMaxFakeAllocation = uint64_t{1} << 46;

// Inputs that do not parse are skipped; protobuf's complaints about them (invalid UTF-8 in a
// string field) would only flood the log.
[[maybe_unused]] const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

}  // namespace

void Fail(const char* file, int line, const char* condition, const std::string& detail) {
  std::fprintf(stderr, "%s:%d: KVS_FUZZ_CHECK(%s) failed: %s\n", file, line, condition,
               detail.c_str());
  std::fflush(stderr);
  std::abort();
}

void CheckRequestError(const absl::Status& status, absl::string_view what) {
  KVS_FUZZ_CHECK(!status.ok(), what, ": expected an error");
  const absl::StatusCode code = status.code();
  KVS_FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument ||
                     code == absl::StatusCode::kOutOfRange ||
                     code == absl::StatusCode::kNotFound ||
                     code == absl::StatusCode::kFailedPrecondition ||
                     code == absl::StatusCode::kResourceExhausted ||
                     code == absl::StatusCode::kAlreadyExists,
                 what, ": a request error with code ", absl::StatusCodeToString(code), ": ",
                 status.message().substr(0, 2 * kMaxErrorBytes));
  KVS_FUZZ_CHECK(!status.message().empty(), what, ": error without a message");
  KVS_FUZZ_CHECK(status.message().size() <= kMaxErrorBytes, what, ": error message of ",
                 status.message().size(), " bytes (at most ", kMaxErrorBytes,
                 "); it begins: ", status.message().substr(0, 200));
}

// ------------------------------------------------------------------------------------------
// Fake regions

FakeRegions::FakeRegions() {
  const auto host = MemoryPlace::kHost;
  const auto device = MemoryPlace::kDevice;
  regions_ = {
      {1, kTiB, 4096, host, -1, false, false},
      {2, kTiB + 4096, uint64_t{1} << 20, host, -1, true, false},  // right after region 1
      {3, 2 * kTiB, uint64_t{1} << 36, host, -1, true, false},
      {4, 4 * kTiB, uint64_t{64} << 20, device, 0, true, false},
      {5, 4 * kTiB + (uint64_t{64} << 20), kTiB, device, 0, true, false},  // right after 4
      {6, 8 * kTiB, uint64_t{1} << 20, device, 1, true, false},
      {7, 0, 0, host, -1, false, true},                                  // being released
      {8, kU64Max - (uint64_t{1} << 32) + 1, (uint64_t{1} << 32) - 4096, host, -1, false,
       false},                                                           // top of the space
      {9, 16 * kTiB, 1, host, -1, false, false},                         // one byte
  };
  for (const FakeRegion& r : regions_) {
    if (!r.releasing) {
      memories_[r.id] = FakeMemory(r.base, r.size, r.place, r.device, r.gpu_visible);
    }
  }
}

const FakeRegions& FakeRegions::Get() {
  static const FakeRegions* regions = new FakeRegions();
  return *regions;
}

RegionLookup FakeRegions::Lookup() const {
  return [this](uint64_t id) -> absl::StatusOr<RegionView> {
    const FakeRegion* r = Find(id);
    if (r == nullptr) {
      return absl::NotFoundError(absl::StrCat("region_id: ", id, " is not a region of this session"));
    }
    if (r->releasing) return RegionView{nullptr, true};
    return RegionView{memories_.at(id), false};
  };
}

const FakeRegion* FakeRegions::Find(uint64_t id) const {
  for (const FakeRegion& r : regions_) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

std::shared_ptr<Memory> FakeMemory(uint64_t base, uint64_t size, MemoryPlace place, int device,
                                   bool gpu_visible) {
  return std::make_shared<Memory>(base, size, place, device, gpu_visible, nullptr);
}

// ------------------------------------------------------------------------------------------
// Fake GPU runtime

FakeGpuRuntime::FakeGpuRuntime() {
  for (int i = 0; i < 2; ++i) {
    GpuDeviceInfo d;
    d.ordinal = i;
    d.uuid = kFakeGpuUuids[i];
    d.name = "fake GPU";
    d.total_memory = uint64_t{80} << 30;
    d.sm_count = 132;
    devices_.push_back(d);
  }
}

absl::StatusOr<std::shared_ptr<Memory>> FakeGpuRuntime::OpenIpc(absl::string_view handle,
                                                                absl::string_view uuid,
                                                                uint64_t offset, uint64_t size) {
  RETURN_IF_ERROR(ValidateIpcRequest(handle, offset, size));
  ASSIGN_OR_RETURN(const int ordinal, OrdinalOf(uuid));
  if (offset + size > kMaxFakeAllocation) {
    return absl::OutOfRangeError(absl::StrCat("cuda_ipc: offset ", offset, " + size ", size,
                                              " exceeds the allocation size ",
                                              kMaxFakeAllocation));
  }
  return Allocate(size, MemoryPlace::kDevice, ordinal);
}

absl::StatusOr<std::shared_ptr<void>> FakeGpuRuntime::RegisterHost(void*, uint64_t) {
  return std::shared_ptr<void>();
}

absl::StatusOr<std::shared_ptr<Memory>> FakeGpuRuntime::AllocateDevice(int ordinal,
                                                                       uint64_t bytes) {
  KVS_FUZZ_CHECK(ordinal >= 0 && ordinal < static_cast<int>(devices_.size()),
                 "AllocateDevice on ordinal ", ordinal);
  return Allocate(bytes, MemoryPlace::kDevice, ordinal);
}

absl::StatusOr<std::shared_ptr<Memory>> FakeGpuRuntime::AllocateHost(uint64_t bytes) {
  return Allocate(bytes, MemoryPlace::kHost, -1);
}

absl::StatusOr<std::unique_ptr<Executor>> FakeGpuRuntime::CreateWorker(int ordinal, QueueLimits) {
  return absl::FailedPreconditionError(absl::StrCat("fake GPU ", ordinal, ": no worker"));
}

absl::StatusOr<std::shared_ptr<Memory>> FakeGpuRuntime::Allocate(uint64_t bytes,
                                                                 MemoryPlace place, int device) {
  if (bytes == 0) return absl::InvalidArgumentError("allocation: 0 bytes; must be > 0");
  if (bytes > kMaxFakeAllocation) {
    return absl::ResourceExhaustedError(absl::StrCat("allocation: ", bytes, " bytes"));
  }
  const uint64_t base = kSlotBase + (next_slot_++ % 4096) * kSlotBytes;
  return FakeMemory(base, bytes, place, device, /*gpu_visible=*/true);
}

// ------------------------------------------------------------------------------------------
// Block set invariants

void CheckBlockSet(const v1::RegisterBlockSetRequest& request, const BlockSetRecord& record,
                   const FakeRegions& regions) {
  absl::StatusOr<LayoutDesc> layout = LayoutFromProto(request.layout(), "layout");
  KVS_FUZZ_CHECK(layout.ok(), "accepted a block set with an invalid layout: ", layout.status());
  KVS_FUZZ_CHECK(record.layout == *layout, "layout differs from the request's");
  KVS_FUZZ_CHECK(record.name == request.name(), "name differs");
  KVS_FUZZ_CHECK(record.num_blocks == static_cast<int64_t>(request.num_blocks()) &&
                     record.num_blocks >= 1,
                 "num_blocks ", record.num_blocks, " for request ", request.num_blocks());
  const int64_t slots = AddressesPerBlock(layout->kind, layout->shape);
  const uint64_t extent = static_cast<uint64_t>(
      BytesPerAddress(layout->kind, layout->shape, DTypeSize(layout->dtype)));
  KVS_FUZZ_CHECK(record.num_blocks * slots <= kMaxBlockSetAddresses, "table of ",
                 record.num_blocks * slots, " addresses over the limit");
  KVS_FUZZ_CHECK(record.addresses.size() == static_cast<size_t>(record.num_blocks * slots) &&
                     record.segments.size() == record.addresses.size(),
                 "table size ", record.addresses.size(), ", segments ", record.segments.size(),
                 ", expected ", record.num_blocks * slots);

  // The region and offset each entry comes from, straight from the request.
  std::vector<uint64_t> region_of(record.addresses.size());
  std::vector<uint64_t> expected(record.addresses.size());
  if (request.has_strided()) {
    const v1::StridedPlacement& s = request.strided();
    KVS_FUZZ_CHECK(s.slots_size() == slots, "strided slots ", s.slots_size(), " for ", slots);
    for (int64_t b = 0; b < record.num_blocks; ++b) {
      for (int64_t slot = 0; slot < slots; ++slot) {
        const v1::SlotBase& base = s.slots(static_cast<int>(slot));
        const FakeRegion* r = regions.Find(base.region_id());
        KVS_FUZZ_CHECK(r != nullptr && !r->releasing, "accepted region ", base.region_id());
        region_of[b * slots + slot] = r->id;
        expected[b * slots + slot] =
            r->base + base.offset() + static_cast<uint64_t>(b) * s.block_stride();
      }
    }
  } else {
    KVS_FUZZ_CHECK(request.has_explicit_table(), "accepted a block set without a placement");
    const v1::ExplicitPlacement& e = request.explicit_table();
    KVS_FUZZ_CHECK(static_cast<size_t>(e.addresses_size()) == record.addresses.size(),
                   "explicit table of ", e.addresses_size(), " entries");
    for (int i = 0; i < e.addresses_size(); ++i) {
      const FakeRegion* r = regions.Find(e.addresses(i).region_id());
      KVS_FUZZ_CHECK(r != nullptr && !r->releasing, "accepted region ",
                     e.addresses(i).region_id());
      region_of[i] = r->id;
      expected[i] = r->base + e.addresses(i).offset();
    }
  }

  std::map<uint32_t, uint64_t> region_of_segment;
  std::map<uint64_t, uint32_t> segment_of_region;
  std::set<uint64_t> used;
  for (size_t i = 0; i < record.addresses.size(); ++i) {
    const uint64_t a = record.addresses[i];
    const FakeRegion& r = *regions.Find(region_of[i]);
    KVS_FUZZ_CHECK(a == expected[i], "address[", i, "] = ", a, ", the request says ", expected[i]);
    // [a, a + extent) ⊆ [base, base + size), without overflow.
    KVS_FUZZ_CHECK(a >= r.base && a - r.base <= r.size && extent <= r.size - (a - r.base),
                   "address[", i, "] = ", a, " + ", extent, " bytes leaves region ", r.id, " [",
                   r.base, ", +", r.size, ")");
    const uint32_t seg = record.segments[i];
    KVS_FUZZ_CHECK(region_of_segment.emplace(seg, r.id).first->second == r.id &&
                       segment_of_region.emplace(r.id, seg).first->second == seg,
                   "segment ", seg, " of address[", i, "] names two regions (or region ", r.id,
                   " two segments)");
    used.insert(r.id);
  }
  KVS_FUZZ_CHECK(std::vector<uint64_t>(used.begin(), used.end()) == record.region_ids,
                 "region_ids differ from the regions the table uses");
  KVS_FUZZ_CHECK(record.memories.size() == record.region_ids.size(), "memories vs region_ids");
  const FakeRegion& first = *regions.Find(region_of[0]);
  bool gpu_visible = true;
  for (uint64_t id : used) {
    const FakeRegion& r = *regions.Find(id);
    KVS_FUZZ_CHECK(r.place == first.place && r.device == first.device,
                   "one block set over two memory places (regions ", first.id, " and ", id, ")");
    gpu_visible = gpu_visible && r.gpu_visible;
  }
  KVS_FUZZ_CHECK(record.placement.place == first.place &&
                     record.placement.device == first.device &&
                     record.placement.gpu_visible == gpu_visible,
                 "placement differs from its regions'");
}

}  // namespace kvshuttle::fuzz
