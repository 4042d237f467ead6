// Fuzz target: RegisterBlockSet validation. The input is a binary RegisterBlockSetRequest,
// handed to BuildBlockSet (the daemon's validator) over the fake regions of fuzz_util.h.
// Rejections must be request errors with bounded messages; an accepted block set must be exactly
// what the request describes, with every address + extent inside its region (CheckBlockSet).
#include <cstddef>
#include <cstdint>

#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/block_set.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvshuttle::fuzz {
namespace {

void Run(const v1::RegisterBlockSetRequest& request) {
  const FakeRegions& regions = FakeRegions::Get();
  absl::StatusOr<std::shared_ptr<BlockSetRecord>> record =
      BuildBlockSet(request, regions.Lookup(), kMaxBlockSetAddresses);
  if (!record.ok()) {
    CheckRequestError(record.status(), "BuildBlockSet");
    return;
  }
  CheckBlockSet(request, **record, regions);
}

}  // namespace
}  // namespace kvshuttle::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvshuttle::v1::RegisterBlockSetRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  kvshuttle::fuzz::Run(request);
  return 0;
}
