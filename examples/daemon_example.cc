// The daemon API in one page: a tensor-parallel rank (2 of 8 KV heads) keeps a vLLM-style KV
// cache in host shared memory and offloads two blocks into a shared universal pool through
// kvshuttled. docs/api.md walks through it.
//   kvs_daemon_example unix:/run/kvshuttle/kvshuttle.sock
#include <cstdio>
#include <cstring>

#include "client/client.h"
#include "client/shared_memory.h"
#include "core/status_macros.h"

namespace {

using namespace kvshuttle;

absl::Status Example(const char* target) {
  ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(target, absl::Seconds(5)));
  // 1. A session; attach = true ties its life to this process and streams completions.
  ASSIGN_OR_RETURN(std::unique_ptr<Session> session,
                   Session::Open(*client, "daemon_example", /*attach=*/true));

  // 2. The worker's cache: 4 layers, each a vLLM tensor [2, num_blocks, nt=16, nh=2, hd=128]
  //    in bf16, all in one shared-memory object. Lend it to the daemon as one region.
  const uint32_t nl = 4, nb = 8, rank = 1;
  const uint64_t chunk = 16 * 2 * 128 * 2;  // one block's K (or V) of one layer, bytes
  ASSIGN_OR_RETURN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(nl * 2 * nb * chunk));
  std::memset(shm->data(), 0x5a, shm->size());
  ASSIGN_OR_RETURN(v1::RegisterRegionResponse region,
                   session->RegisterHostShmRegion(shm->name(), 0, shm->size(), "kv-cache"));

  // 3. A block set: NHD stacks, slot l*2+o (layer l, K/V o) starts at its tensor's K or V
  //    half; consecutive blocks are `chunk` bytes apart. One line per slot, no address tables.
  v1::Layout worker;
  worker.set_kind(v1::LAYOUT_NHD);
  worker.set_dtype(v1::DTYPE_BF16);
  *worker.mutable_shape() = [&] {
    v1::BlockShape s;
    s.set_nl(nl), s.set_no(2), s.set_nt(16), s.set_nh(2), s.set_hd(128);
    return s;
  }();
  v1::StridedPlacement strided;
  strided.set_block_stride(chunk);
  for (uint32_t slot = 0; slot < nl * 2; ++slot) {
    v1::SlotBase* base = strided.add_slots();
    base->set_region_id(region.region().region_id());
    base->set_offset(slot * nb * chunk);
  }
  ASSIGN_OR_RETURN(v1::RegisterBlockSetResponse cache,
                   session->RegisterBlockSet(worker, nb, strided, "layers"));

  // 4. A daemon-owned pool in universal layout holding all 8 heads; other ranks share it.
  v1::Layout store = worker;
  store.set_kind(v1::LAYOUT_UNIVERSAL);
  store.mutable_shape()->set_nh(8);
  ASSIGN_OR_RETURN(v1::CreatePoolResponse pool,
                   session->CreatePool("example-store", store, 16, v1::MEMORY_HOST));
  ASSIGN_OR_RETURN(v1::AllocateBlocksResponse blocks, session->AllocateBlocks("example-store", 2));

  // 5. One job: worker blocks 3 and 5 → the pool blocks, written at head offset 2*rank.
  v1::SubmitBatchRequest batch;
  v1::Job* job = batch.add_jobs();
  job->mutable_src()->set_block_set_id(cache.block_set().block_set_id());
  job->mutable_dst()->set_pool("example-store");
  job->mutable_heads()->set_dst_offset(2 * rank);
  job->mutable_heads()->set_count(2);
  const uint32_t worker_blocks[2] = {3, 5};
  for (int i = 0; i < 2; ++i) {
    v1::BlockPair* pair = job->add_pairs();
    pair->set_src_block(worker_blocks[i]);
    pair->set_dst_block(blocks.block_ids(i));
  }
  ASSIGN_OR_RETURN(v1::SubmitBatchResponse submitted, session->SubmitBatch(batch));
  ASSIGN_OR_RETURN(v1::WaitResponse done,
                   session->Wait(submitted.job_ids(), absl::Seconds(30)));
  const v1::JobResult& r = done.results(0);
  std::printf("job %llu: %s, %llu bytes on %s in %.1f us\n",
              static_cast<unsigned long long>(r.job_id()), v1::JobState_Name(r.state()).c_str(),
              static_cast<unsigned long long>(r.bytes()), r.executor().c_str(),
              r.run_seconds() * 1e6);
  if (r.state() != v1::JOB_DONE) return absl::InternalError(r.message());

  // 6. Clean up what is shared; the session's own regions and block sets go with it.
  RETURN_IF_ERROR(session->FreeBlocks("example-store", blocks.block_ids()).status());
  RETURN_IF_ERROR(session->DestroyPool("example-store").status());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s unix:/path/to/kvshuttle.sock\n", argv[0]);
    return 2;
  }
  const absl::Status status = Example(argv[1]);
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
