// What the fuzz targets share: a check that aborts (libFuzzer then reports the input as a
// crash), the rules every error of a request validator must follow, fake regions and a fake GPU
// runtime whose memory is never touched (block sets, pools and plans are pure address
// arithmetic), and the invariants of a registered block set.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/block_set.h"
#include "server/runtime/gpu_runtime.h"
#include "server/runtime/memory.h"

namespace kvshuttle::fuzz {

// Aborts with file, line, the condition and the streamed `...` when `condition` is false. A
// real check: unlike assert it stays on in every build type.
[[noreturn]] void Fail(const char* file, int line, const char* condition, const std::string& detail);
#define KVS_FUZZ_CHECK(condition, ...)                                                        \
  do {                                                                                        \
    if (!(condition)) {                                                                       \
      ::kvshuttle::fuzz::Fail(__FILE__, __LINE__, #condition,                                 \
                              ::kvshuttle::fuzz::Detail(__VA_ARGS__));                        \
    }                                                                                         \
  } while (0)

// The message of a failed check: every argument streamed (absl::Status included).
template <typename... Args>
std::string Detail(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// Longest error message a request validator may return for any input: client-supplied strings
// are quoted only in part (DESIGN §4: hostile input never inflates what goes back or into logs).
inline constexpr size_t kMaxErrorBytes = 1024;

// Checks an error of a request validator: not OK, a code the API documents for request errors
// (never INTERNAL/UNKNOWN), a non-empty message of at most kMaxErrorBytes.
void CheckRequestError(const absl::Status& status, absl::string_view what);

// Largest num_blocks × slots of a block set in the targets (the daemon's default limit is
// 2^22; a smaller one keeps every execution fast and still reaches the limit check).
inline constexpr int64_t kMaxBlockSetAddresses = 4096;

// A region of the fake session: an address range that is never dereferenced.
struct FakeRegion {
  uint64_t id = 0;
  uint64_t base = 0;
  uint64_t size = 0;
  MemoryPlace place = MemoryPlace::kHost;
  int device = -1;
  bool gpu_visible = false;
  bool releasing = false;  // unregistered while in use: lookups report it as being released
};

// The regions every target sees (ids 1..9, see fuzz_util.cc): host and device, adjacent pairs
// (so runs that wrongly continue across two allocations are caught), one at the top of the
// 64-bit address space, a one-byte one, one being released. Other ids are NOT_FOUND.
class FakeRegions {
 public:
  static const FakeRegions& Get();

  // The lookup BuildBlockSet takes, behaving like Session::FindRegion.
  RegionLookup Lookup() const;
  // nullptr for unknown ids.
  const FakeRegion* Find(uint64_t id) const;
  const std::vector<FakeRegion>& all() const { return regions_; }

 private:
  FakeRegions();

  std::vector<FakeRegion> regions_;
  std::map<uint64_t, std::shared_ptr<Memory>> memories_;
};

// Memory of [base, base + size) that nothing ever reads or writes; nothing to release.
std::shared_ptr<Memory> FakeMemory(uint64_t base, uint64_t size, MemoryPlace place, int device,
                                   bool gpu_visible);

// A GPU runtime with two fake GPUs (kFakeGpuUuids, ordinals 0 and 1) whose allocations and IPC
// mappings are fake address ranges, each in its own 2^47-byte slot from 2^50 up.
inline constexpr const char* kFakeGpuUuids[] = {"GPU-00000000-0000-0000-0000-000000000000",
                                                "GPU-11111111-1111-1111-1111-111111111111"};

class FakeGpuRuntime : public GpuRuntime {
 public:
  FakeGpuRuntime();
  const std::vector<GpuDeviceInfo>& devices() const override { return devices_; }
  // The CUDA runtime's checks (ValidateIpcRequest, then the uuid), then a fake mapping.
  absl::StatusOr<std::shared_ptr<Memory>> OpenIpc(absl::string_view handle, absl::string_view uuid,
                                                  uint64_t offset, uint64_t size) override;
  absl::StatusOr<std::shared_ptr<void>> RegisterHost(void* ptr, uint64_t bytes) override;
  absl::StatusOr<std::shared_ptr<Memory>> AllocateDevice(int ordinal, uint64_t bytes) override;
  absl::StatusOr<std::shared_ptr<Memory>> AllocateHost(uint64_t bytes) override;
  absl::StatusOr<std::unique_ptr<Executor>> CreateWorker(int ordinal, QueueLimits limits) override;

 private:
  absl::StatusOr<std::shared_ptr<Memory>> Allocate(uint64_t bytes, MemoryPlace place, int device);

  std::vector<GpuDeviceInfo> devices_;
  uint64_t next_slot_ = 0;
};

// Checks a block set BuildBlockSet accepted against `request` and the fake regions: the table
// is exactly what the request describes (strided or explicit), every address plus its piece's
// extent lies inside the region it came from, segments name regions one to one, and the
// placement is that of its regions.
void CheckBlockSet(const v1::RegisterBlockSetRequest& request, const BlockSetRecord& record,
                   const FakeRegions& regions);

}  // namespace kvshuttle::fuzz
