// kvs_it_kill_me_client TARGET PAIRS: a client that lifecycle_test SIGKILLs mid-batch
// (DESIGN §4.7). It opens an attached session, registers a host shm object, and submits
// batches of slow jobs (PAIRS repeated 256×256 byte transposes each) in a loop, retrying when
// the queue is full. After the first accepted batch it prints "READY <shm name>" so the test
// knows what to look for in the daemon's mappings (and what to unlink afterwards). It gives up
// by itself after 60 s.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/shared_memory.h"
#include "core/layout.h"
#include "proto/proto_convert.h"

namespace kvshuttle {
namespace {

constexpr BlockShape kShape{1, 1, 256, 256, 1};
constexpr uint64_t kBlockBytes = 256 * 256;

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "kill_me_client: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

v1::StridedPlacement At(uint64_t region_id, uint64_t offset) {
  v1::StridedPlacement placement;
  v1::SlotBase* slot = placement.add_slots();
  slot->set_region_id(region_id);
  slot->set_offset(offset);
  placement.set_block_stride(kBlockBytes);
  return placement;
}

int Run(const std::string& target, int pairs) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(target, absl::Seconds(5));
  if (!client.ok()) return Fail("connect", client.status());
  absl::StatusOr<std::unique_ptr<Session>> session =
      Session::Open(**client, "kill-me-client", /*attach=*/true);
  if (!session.ok()) return Fail("open session", session.status());
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm = SharedMemory::Create(2 * kBlockBytes);
  if (!shm.ok()) return Fail("shm", shm.status());
  absl::StatusOr<v1::RegisterRegionResponse> region =
      (*session)->RegisterHostShmRegion((*shm)->name(), 0, 2 * kBlockBytes);
  if (!region.ok()) return Fail("region", region.status());
  const uint64_t rid = region->region().region_id();

  LayoutDesc layout;
  layout.shape = kShape;
  layout.dtype = DType::kUInt8;
  layout.kind = LayoutKind::kNHDStack;
  absl::StatusOr<v1::RegisterBlockSetResponse> src =
      (*session)->RegisterBlockSet(LayoutToProto(layout), 1, At(rid, 0));
  if (!src.ok()) return Fail("source block set", src.status());
  layout.kind = LayoutKind::kHNDStack;
  absl::StatusOr<v1::RegisterBlockSetResponse> dst =
      (*session)->RegisterBlockSet(LayoutToProto(layout), 1, At(rid, kBlockBytes));
  if (!dst.ok()) return Fail("destination block set", dst.status());

  v1::SubmitBatchRequest batch;
  for (int j = 0; j < 2; ++j) {
    v1::Job* job = batch.add_jobs();
    job->mutable_src()->set_block_set_id(src->block_set().block_set_id());
    job->mutable_dst()->set_block_set_id(dst->block_set().block_set_id());
    for (int p = 0; p < pairs; ++p) job->add_pairs();  // block 0 → block 0
  }
  bool ready = false;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (absl::Now() < give_up) {
    absl::StatusOr<v1::SubmitBatchResponse> submitted = (*session)->SubmitBatch(batch);
    if (submitted.ok()) {
      if (!ready) {
        std::printf("READY %s\n", (*shm)->name().c_str());
        std::fflush(stdout);
        ready = true;
      }
      continue;
    }
    if (submitted.status().code() != absl::StatusCode::kResourceExhausted) {
      return Fail("submit", submitted.status());
    }
    absl::SleepFor(absl::Milliseconds(10));  // queue full: try again
  }
  std::fprintf(stderr, "kill_me_client: nobody killed me within 60 s\n");
  return 2;
}

}  // namespace
}  // namespace kvshuttle

int main(int argc, char** argv) {
  int pairs = 0;
  if (argc != 3 || !absl::SimpleAtoi(argv[2], &pairs) || pairs < 1) {
    std::fprintf(stderr, "usage: kvs_it_kill_me_client TARGET PAIRS\n");
    return 2;
  }
  return kvshuttle::Run(argv[1], pairs);
}
