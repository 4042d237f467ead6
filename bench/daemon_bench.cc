// kvs_daemon_bench: the daemon path end to end beside the physical roof and the in-process
// kernels, in one run on one GPU (issue #14). Users call the daemon, so this is the number
// that says whether kvshuttle is fast.
//
//   kvs_daemon_bench --target=unix:/run/kvshuttle/kvshuttle.sock [--quick] [--out=FILE]
//
// For every case (shape × pool memory × direction × blocks per job × jobs in flight × clients):
//   memcpy      cudaMemcpyAsync of the same bytes, back to back (D2D for device pools, pinned
//               D2H / H2D for host pools) — the roof;
//   in-process  the same conversion through kvshuttle's Converter in this process (what a user
//               linking the kernels gets), auto backend;
//   daemon      the C++ client: SubmitBatch of one job, then Wait, with `inflight` such loops
//               at once per client (threads on one session) and `clients` sessions on their own
//               connections. GB/s over the wall time, latency p50/p99 per job, and its split:
//               client submit (the SubmitBatch RPC), daemon queue and GPU run (the daemon's
//               JobResult timings) and completion delivery (the rest of the Wait).
// The cache is a vLLM-style NHD block stack (per layer [2, num_blocks, nt, nh, hd]) in one
// cudaMalloc allocation lent through CUDA IPC; pools hold universal blocks. Every (shape, pool)
// is first checked byte-exact: offload 8 blocks, onboard them elsewhere, compare.
// Progress on stderr, a table on stdout, JSON to --out.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/cuda_memory.h"
#include "client/stream_gate.h"
#include "core/layout.h"
#include "core/plan.h"
#include "core/status_macros.h"
#include "kernels/buffers.h"
#include "kernels/converter.h"
#include "kernels/cuda_check.h"
#include "proto/proto_convert.h"

ABSL_FLAG(std::string, target, "unix:/run/kvshuttle/kvshuttle.sock", "the daemon");
ABSL_FLAG(bool, quick, false, "a small subset (one shape, device pool, fewer cases)");
ABSL_FLAG(std::string, out, "", "JSON report path (empty: none)");
ABSL_FLAG(std::string, commit, "unknown", "commit of the daemon and this build");
ABSL_FLAG(bool, start_events, true,
          "with small256k: start-event isolation (a neighbour's stalled jobs) and latency");
ABSL_FLAG(int, start_event_repeats, 0,
          "start-event isolation: alone / beside-stalled measurements (0: 3, 1 with --quick)");
ABSL_FLAG(double, case_seconds, 0.4, "measuring time per daemon case");
ABSL_FLAG(std::string, shapes, "", "comma list of shapes (default: all, or llama70b with --quick)");
ABSL_FLAG(std::string, paths, "channel,unary",
          "client paths to measure: channel (attached session: submit over the streaming "
          "channel, completion as its job_done event) and unary (SubmitBatch + Wait RPCs)");

namespace kvshuttle::bench {
namespace {

constexpr int kCacheBlocks = 256;
constexpr int kPoolBlocks = 512;

struct Shape {
  std::string name;
  BlockShape shape;
  DType dtype;
};

const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> shapes = {
      {"llama70b", {80, 2, 16, 8, 128}, DType::kBF16},  // 5 MiB blocks
      {"mla", {61, 1, 64, 1, 576}, DType::kBF16},       // 4.3 MiB blocks
      {"small256k", {4, 2, 16, 8, 128}, DType::kBF16},  // 256 KiB blocks: job-rate cases
  };
  return shapes;
}

struct Stats {
  double p50 = 0, p99 = 0, mean = 0;
};

Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.p50 = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, static_cast<size_t>(v.size() * 0.99))];
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  return s;
}

// The bench's own view of one shape: its cache (lent to the daemon) and scratch for baselines.
struct ShapeKit {
  Shape shape;
  LayoutDesc cache_layout;  // NHD stack
  LayoutDesc pool_layout;   // universal
  uint64_t block_bytes = 0;
  uint64_t chunk_bytes = 0;  // one (layer, k/v) piece of one block
  std::unique_ptr<CudaMemory> cache;
  DeviceBuffer scratch_a, scratch_b;  // memcpy D2D and in-process destination
  PinnedBuffer pinned;                // memcpy D2H/H2D and in-process host destination

  // Cache address of (block, slot) in the vLLM arrangement: slot s = l*no + o has its own
  // [num_blocks, chunk] array.
  uint64_t CacheOffset(int64_t block, int64_t slot) const {
    return (static_cast<uint64_t>(slot) * kCacheBlocks + static_cast<uint64_t>(block)) *
           chunk_bytes;
  }
};

absl::StatusOr<std::unique_ptr<ShapeKit>> MakeKit(const Shape& s) {
  auto kit = std::make_unique<ShapeKit>();
  kit->shape = s;
  kit->cache_layout = LayoutDesc{LayoutKind::kNHDStack, s.shape, s.dtype};
  kit->pool_layout = LayoutDesc{LayoutKind::kUniversal, s.shape, s.dtype};
  const int64_t es = DTypeSize(s.dtype);
  kit->chunk_bytes = static_cast<uint64_t>(BytesPerAddress(LayoutKind::kNHDStack, s.shape, es));
  kit->block_bytes = static_cast<uint64_t>(BytesPerAddress(LayoutKind::kUniversal, s.shape, es));
  const uint64_t bytes = kit->block_bytes * kCacheBlocks;
  ASSIGN_OR_RETURN(kit->cache, CudaMemory::Allocate(0, bytes));
  // Distinct bytes everywhere, so that a misplaced copy cannot pass the check.
  std::vector<uint8_t> fill(bytes);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (size_t i = 0; i < fill.size(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    fill[i] = static_cast<uint8_t>(x);
  }
  RETURN_IF_ERROR(kit->cache->CopyFromHost(0, fill.data(), bytes));
  ASSIGN_OR_RETURN(kit->scratch_a, DeviceBuffer::Create(0, bytes));
  ASSIGN_OR_RETURN(kit->scratch_b, DeviceBuffer::Create(0, bytes));
  ASSIGN_OR_RETURN(kit->pinned, PinnedBuffer::Create(bytes));
  std::memset(kit->pinned.data(), 0, bytes);
  return kit;
}

// What one client holds in the daemon for one shape: its session, the cache block set and a
// device and a host pool.
struct ClientKit {
  std::unique_ptr<Client> client;
  std::unique_ptr<Session> session;
  uint64_t cache_set = 0;
  std::string pool[2];  // [0] device, [1] host
  std::vector<uint32_t> pool_ids[2];
};

absl::StatusOr<std::unique_ptr<ClientKit>> MakeClient(const std::string& target,
                                                      const ShapeKit& kit, int index,
                                                      int pool_blocks, bool host_pool) {
  auto c = std::make_unique<ClientKit>();
  ASSIGN_OR_RETURN(c->client, Client::Connect(target, absl::Seconds(10)));
  ASSIGN_OR_RETURN(c->session,
                   Session::Open(*c->client, absl::StrCat("daemon-bench-", index), true));
  ASSIGN_OR_RETURN(v1::RegisterRegionResponse region,
                   c->session->RegisterCudaIpcRegion(kit.cache->ipc_handle(),
                                                     kit.cache->gpu_uuid(), 0,
                                                     kit.cache->size()));
  v1::StridedPlacement placement;
  const int64_t slots = AddressesPerBlock(LayoutKind::kNHDStack, kit.shape.shape);
  for (int64_t s = 0; s < slots; ++s) {
    v1::SlotBase* slot = placement.add_slots();
    slot->set_region_id(region.region().region_id());
    slot->set_offset(kit.CacheOffset(0, s));
  }
  placement.set_block_stride(kit.chunk_bytes);
  ASSIGN_OR_RETURN(v1::RegisterBlockSetResponse set,
                   c->session->RegisterBlockSet(LayoutToProto(kit.cache_layout), kCacheBlocks,
                                                placement));
  c->cache_set = set.block_set().block_set_id();
  for (int m = 0; m < (host_pool ? 2 : 1); ++m) {
    c->pool[m] = absl::StrCat("bench-", kit.shape.name, "-", m == 0 ? "dev" : "host", "-", index);
    (void)c->session->DestroyPool(c->pool[m]);  // left over from an interrupted run
    RETURN_IF_ERROR(c->session
                        ->CreatePool(c->pool[m], LayoutToProto(kit.pool_layout), pool_blocks,
                                     m == 0 ? v1::MEMORY_DEVICE : v1::MEMORY_HOST)
                        .status());
    ASSIGN_OR_RETURN(v1::AllocateBlocksResponse ids,
                     c->session->AllocateBlocks(c->pool[m], pool_blocks));
    c->pool_ids[m].assign(ids.block_ids().begin(), ids.block_ids().end());
  }
  return c;
}

// One job of `nb` pairs: offload (cache → pool) or onboard (pool → cache), the k-th of its
// stream (block ids rotate so that jobs in flight use distinct blocks where they fit).
v1::Job MakeJob(const ClientKit& c, int memory, bool offload, int nb, int64_t k) {
  v1::Job job;
  v1::Endpoint cache;
  cache.set_block_set_id(c.cache_set);
  v1::Endpoint pool;
  pool.set_pool(c.pool[memory]);
  *job.mutable_src() = offload ? cache : pool;
  *job.mutable_dst() = offload ? pool : cache;
  const std::vector<uint32_t>& ids = c.pool_ids[memory];
  for (int p = 0; p < nb; ++p) {
    const int64_t i = k * nb + p;
    const int64_t cache_block = i % kCacheBlocks;
    const int64_t pool_block = ids[static_cast<size_t>(i % static_cast<int64_t>(ids.size()))];
    v1::BlockPair* pair = job.add_pairs();
    pair->set_src_block(static_cast<uint32_t>(offload ? cache_block : pool_block));
    pair->set_dst_block(static_cast<uint32_t>(offload ? pool_block : cache_block));
  }
  return job;
}

absl::Status RunOne(Session& session, const v1::Job& job) {
  v1::SubmitBatchRequest batch;
  *batch.add_jobs() = job;
  ASSIGN_OR_RETURN(v1::SubmitBatchResponse submitted, session.SubmitBatch(batch));
  ASSIGN_OR_RETURN(v1::WaitResponse done, session.Wait(submitted.job_ids(), absl::Seconds(60)));
  if (done.results_size() != 1 || done.results(0).state() != v1::JOB_DONE) {
    return absl::InternalError(absl::StrCat("job failed: ", done.DebugString()));
  }
  return absl::OkStatus();
}

// Offloads cache blocks 0..7 into the pool, onboards them into cache blocks 8..15 and
// compares every byte of the blocks (per slot) on the host.
absl::Status CheckByteExact(const ShapeKit& kit, ClientKit& c, int memory) {
  constexpr int kBlocks = 8;
  v1::Job out = MakeJob(c, memory, true, kBlocks, 0);
  v1::Job in;
  *in.mutable_src() = out.dst();
  *in.mutable_dst() = out.src();
  for (int p = 0; p < kBlocks; ++p) {
    v1::BlockPair* pair = in.add_pairs();
    pair->set_src_block(out.pairs(p).dst_block());
    pair->set_dst_block(static_cast<uint32_t>(kBlocks + p));
  }
  RETURN_IF_ERROR(RunOne(*c.session, out));
  RETURN_IF_ERROR(RunOne(*c.session, in));
  (void)c.session->TakeEvents();
  std::vector<uint8_t> a(kit.chunk_bytes), b(kit.chunk_bytes);
  const int64_t slots = AddressesPerBlock(LayoutKind::kNHDStack, kit.shape.shape);
  for (int p = 0; p < kBlocks; ++p) {
    for (int64_t s = 0; s < slots; ++s) {
      RETURN_IF_ERROR(kit.cache->CopyToHost(kit.CacheOffset(p, s), a.data(), a.size()));
      RETURN_IF_ERROR(kit.cache->CopyToHost(kit.CacheOffset(kBlocks + p, s), b.data(), b.size()));
      if (a != b) {
        return absl::DataLossError(absl::StrCat(kit.shape.name, " ", memory == 0 ? "device" : "host",
                                                " pool: block ", p, " slot ", s,
                                                " differs after offload + onboard"));
      }
    }
  }
  // Put the original bytes back where the check wrote.
  for (int p = 0; p < kBlocks; ++p) {
    for (int64_t s = 0; s < slots; ++s) {
      RETURN_IF_ERROR(kit.cache->CopyToHost(kit.CacheOffset(p, s), a.data(), a.size()));
      RETURN_IF_ERROR(kit.cache->CopyFromHost(kit.CacheOffset(kBlocks + p, s), a.data(),
                                              a.size()));
    }
  }
  return absl::OkStatus();
}

// Seconds per call of `enqueue` with `depth` calls back to back on `stream` (median of 5
// timed rounds of at least 20 calls).
template <typename F>
absl::StatusOr<double> TimeBackToBack(F enqueue, cudaStream_t stream, int calls) {
  for (int i = 0; i < 3; ++i) RETURN_IF_ERROR(enqueue());
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    const absl::Time t0 = absl::Now();
    for (int i = 0; i < calls; ++i) RETURN_IF_ERROR(enqueue());
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    rounds.push_back(absl::ToDoubleSeconds(absl::Now() - t0) / calls);
  }
  return Summarize(rounds).p50;
}

struct Baselines {
  double memcpy_gbps = 0;
  double memcpy_us = 0;  // one copy from idle
  double kernel_gbps = 0;
  double kernel_strided_gbps = 0;  // the same through a strided plan (what the daemon builds)
};

absl::StatusOr<Baselines> MeasureBaselines(ShapeKit& kit, Converter& conv, cudaStream_t stream,
                                           int memory, bool offload, int nb) {
  Baselines b;
  const uint64_t bytes = kit.block_bytes * static_cast<uint64_t>(nb);
  void* host_or_dev = memory == 0 ? kit.scratch_b.data() : kit.pinned.data();
  void* src = offload ? kit.cache->data() : host_or_dev;
  void* dst = offload ? host_or_dev : kit.scratch_a.data();
  auto copy = [&]() -> absl::Status {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
    return absl::OkStatus();
  };
  const int calls = std::max(4, static_cast<int>((uint64_t{2} << 30) / std::max<uint64_t>(bytes, 1)));
  ASSIGN_OR_RETURN(const double per_copy, TimeBackToBack(copy, stream, std::min(calls, 400)));
  b.memcpy_gbps = static_cast<double>(bytes) / per_copy / 1e9;
  ASSIGN_OR_RETURN(const double one_copy, TimeBackToBack(copy, stream, 1));
  b.memcpy_us = one_copy * 1e6;
  // The same conversion in process: the cache's blocks ↔ universal blocks in scratch / pinned.
  const int64_t slots = AddressesPerBlock(LayoutKind::kNHDStack, kit.shape.shape);
  const uint64_t cache_base = reinterpret_cast<uint64_t>(kit.cache->data());
  const uint64_t pool_base = memory == 0 ? kit.scratch_a.address() : kit.pinned.address();
  std::vector<uint64_t> cache_table(static_cast<size_t>(kCacheBlocks * slots));
  for (int64_t blk = 0; blk < kCacheBlocks; ++blk) {
    for (int64_t s = 0; s < slots; ++s) {
      cache_table[static_cast<size_t>(blk * slots + s)] = cache_base + kit.CacheOffset(blk, s);
    }
  }
  std::vector<uint64_t> pool_table(kCacheBlocks);
  for (int64_t blk = 0; blk < kCacheBlocks; ++blk) pool_table[blk] = pool_base + blk * kit.block_bytes;
  std::vector<BlockPair> pairs(static_cast<size_t>(nb));
  for (int i = 0; i < nb; ++i) pairs[static_cast<size_t>(i)] = {i, i, 0, 0};
  TransferSpec spec;
  spec.src = offload ? kit.cache_layout : kit.pool_layout;
  spec.dst = offload ? kit.pool_layout : kit.cache_layout;
  ASSIGN_OR_RETURN(const TransferPlan plan,
                   TransferPlan::Build(spec, offload ? cache_table : pool_table,
                                       offload ? pool_table : cache_table, pairs));
  auto convert = [&]() { return conv.Enqueue(plan, LaunchOptions{}, stream).status(); };
  ASSIGN_OR_RETURN(const double per_convert, TimeBackToBack(convert, stream, std::min(calls, 400)));
  b.kernel_gbps = static_cast<double>(bytes) / per_convert / 1e9;
  // The same pairs through TransferPlan::BuildStrided: block 0's table and the block stride
  // of each side, as the daemon plans jobs between its strided block sets and pools.
  std::vector<uint64_t> cache_bases(static_cast<size_t>(slots));
  for (int64_t s = 0; s < slots; ++s) cache_bases[s] = cache_table[static_cast<size_t>(s)];
  const StridedSide cache_side{cache_bases, kit.CacheOffset(1, 0) - kit.CacheOffset(0, 0),
                               kCacheBlocks, {}};
  const StridedSide pool_side{absl::MakeConstSpan(pool_table).subspan(0, 1), kit.block_bytes,
                              kCacheBlocks, {}};
  ASSIGN_OR_RETURN(const TransferPlan strided,
                   TransferPlan::BuildStrided(spec, offload ? cache_side : pool_side,
                                              offload ? pool_side : cache_side, pairs));
  auto convert_strided = [&]() { return conv.Enqueue(strided, LaunchOptions{}, stream).status(); };
  ASSIGN_OR_RETURN(const double per_strided,
                   TimeBackToBack(convert_strided, stream, std::min(calls, 400)));
  b.kernel_strided_gbps = static_cast<double>(bytes) / per_strided / 1e9;
  return b;
}

struct DaemonResult {
  double gbps = 0;
  int64_t jobs = 0;
  Stats latency_us, submit_us, daemon_submit_us, queue_us, run_us, completion_us;
  int64_t errors = 0;
  std::string first_error;
};

// `clients` clients × `inflight` loops of SubmitBatch + Wait for `seconds`.
DaemonResult MeasureDaemon(std::vector<std::unique_ptr<ClientKit>>& clients, int nclients,
                           int memory, bool offload, int nb, int inflight, double seconds,
                           uint64_t block_bytes, bool channel) {
  std::mutex mu;
  std::vector<double> latency, submit, daemon_submit, queue, run, completion;
  std::atomic<int64_t> jobs{0}, errors{0};
  std::string first_error;
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  for (int c = 0; c < nclients; ++c) {
    for (int f = 0; f < inflight; ++f) {
      threads.emplace_back([&, c, f] {
        ClientKit& kit = *clients[c];
        std::vector<double> my_latency, my_submit, my_daemon_submit, my_queue, my_run,
            my_completion;
        for (int64_t k = f; absl::Now() < end; k += inflight) {
          v1::SubmitBatchRequest batch;
          *batch.add_jobs() = MakeJob(kit, memory, offload, nb, k);
          const absl::Time t0 = absl::Now();
          absl::StatusOr<v1::SubmitBatchResponse> submitted =
              channel ? kit.session->SubmitBatch(batch) : kit.session->SubmitBatchUnary(batch);
          const absl::Time t1 = absl::Now();
          absl::StatusOr<v1::JobResult> done = absl::UnknownError("not submitted");
          if (!submitted.ok()) {
            done = submitted.status();
          } else if (channel) {
            done = kit.session->AwaitJob(submitted->job_ids(0), absl::Seconds(60));
          } else {
            absl::StatusOr<v1::WaitResponse> waited =
                kit.session->Wait(submitted->job_ids(), absl::Seconds(60));
            if (!waited.ok()) {
              done = waited.status();
            } else if (waited->results_size() == 1) {
              done = waited->results(0);
            } else {
              done = absl::InternalError(waited->DebugString());
            }
          }
          const absl::Time t2 = absl::Now();
          if (!done.ok() || done->state() != v1::JOB_DONE) {
            ++errors;
            std::lock_guard<std::mutex> lock(mu);
            if (first_error.empty()) {
              first_error = done.ok() ? done->DebugString() : done.status().ToString();
            }
            continue;
          }
          // The unary path does not use the session's job_done events: drop them.
          if (!channel) (void)kit.session->TakeEvents();
          const v1::JobResult& r = *done;
          const double total = absl::ToDoubleMicroseconds(t2 - t0);
          const double sub = absl::ToDoubleMicroseconds(t1 - t0);
          my_latency.push_back(total);
          my_submit.push_back(sub);
          my_daemon_submit.push_back(r.submit_seconds() * 1e6);
          my_queue.push_back(r.queue_seconds() * 1e6);
          my_run.push_back(r.run_seconds() * 1e6);
          my_completion.push_back(
              std::max(0.0, total - sub - (r.queue_seconds() + r.run_seconds()) * 1e6));
          ++jobs;
        }
        std::lock_guard<std::mutex> lock(mu);
        latency.insert(latency.end(), my_latency.begin(), my_latency.end());
        submit.insert(submit.end(), my_submit.begin(), my_submit.end());
        daemon_submit.insert(daemon_submit.end(), my_daemon_submit.begin(),
                             my_daemon_submit.end());
        queue.insert(queue.end(), my_queue.begin(), my_queue.end());
        run.insert(run.end(), my_run.begin(), my_run.end());
        completion.insert(completion.end(), my_completion.begin(), my_completion.end());
      });
    }
  }
  for (std::thread& t : threads) t.join();
  const double wall = absl::ToDoubleSeconds(absl::Now() - start);
  DaemonResult r;
  r.jobs = jobs;
  r.errors = errors;
  r.first_error = first_error;
  r.gbps = static_cast<double>(jobs) * nb * static_cast<double>(block_bytes) / wall / 1e9;
  r.latency_us = Summarize(latency);
  r.submit_us = Summarize(submit);
  r.daemon_submit_us = Summarize(daemon_submit);
  r.queue_us = Summarize(queue);
  r.run_us = Summarize(run);
  r.completion_us = Summarize(completion);
  return r;
}

std::string StatsJson(const Stats& s) {
  return absl::StrFormat("{\"p50\":%.2f,\"p99\":%.2f,\"mean\":%.2f}", s.p50, s.p99, s.mean);
}

absl::StatusOr<std::string> IpcEventHandle(cudaEvent_t* event) {
  CUDA_RETURN_IF_ERROR(
      cudaEventCreateWithFlags(event, cudaEventInterprocess | cudaEventDisableTiming));
  cudaIpcEventHandle_t handle;
  CUDA_RETURN_IF_ERROR(cudaIpcGetEventHandle(&handle, *event));
  return std::string(reinterpret_cast<const char*>(&handle), sizeof(handle));
}

// Start events (Job.start_event), small256k jobs of one block into the device pool:
//   isolation: 8 clients' job loop (channel, one in flight each) alone and while a neighbour
//     session has kStalledJobs jobs waiting on start events that never complete (recorded
//     behind a gate opened only afterwards), alternating `repeats` times; the p99 ratio
//     (median over repeats) is the "stalled session" target (≤ 1.10);
//   latency: one job with an event that is already complete, against the same job without
//     one; and one whose event completes (gate opened) right after its submit, from the gate's
//     opening to the client having the completion — gated by a host function, and (where the
//     driver has it) by cuStreamWaitValue32 on a mapped host word, whose release the GPU sees
//     within microseconds.
absl::StatusOr<std::string> MeasureStartEvents(const std::string& target, const ShapeKit& kit,
                                               std::vector<std::unique_ptr<ClientKit>>& clients,
                                               double seconds, int repeats) {
  constexpr int kStalledJobs = 64;
  const int nclients = static_cast<int>(clients.size());
  std::vector<double> alone_p99, stalled_p99, alone_p50, stalled_p50;
  ASSIGN_OR_RETURN(std::unique_ptr<ClientKit> neighbour, MakeClient(target, kit, 99, 64, false));
  cudaStream_t stream = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<cudaEvent_t> events(kStalledJobs + 3, nullptr);
  std::vector<std::string> handles;
  for (cudaEvent_t& e : events) {
    ASSIGN_OR_RETURN(std::string h, IpcEventHandle(&e));
    handles.push_back(std::move(h));
  }
  for (int r = 0; r < repeats; ++r) {
    const DaemonResult alone = MeasureDaemon(clients, nclients, 0, true, 1, 1, seconds,
                                             kit.block_bytes, true);
    auto gate = std::make_unique<StreamGate>(stream);
    if (!gate->ok()) return absl::InternalError("cudaLaunchHostFunc failed");
    for (int j = 0; j < kStalledJobs; ++j) {
      CUDA_RETURN_IF_ERROR(cudaEventRecord(events[j], stream));
    }
    std::vector<uint64_t> stalled_ids;
    for (int j = 0; j < kStalledJobs; ++j) {
      v1::SubmitBatchRequest batch;
      v1::Job* job = batch.add_jobs();
      *job = MakeJob(*neighbour, 0, true, 1, j);
      job->mutable_start_event()->set_handle(handles[j]);
      ASSIGN_OR_RETURN(v1::SubmitBatchResponse submitted, neighbour->session->SubmitBatch(batch));
      stalled_ids.push_back(submitted.job_ids(0));
    }
    const DaemonResult stalled = MeasureDaemon(clients, nclients, 0, true, 1, 1, seconds,
                                               kit.block_bytes, true);
    ASSIGN_OR_RETURN(v1::WaitResponse before,  // a poll: the daemon does not wait
                     neighbour->session->Wait(stalled_ids, absl::Seconds(-1)));
    for (const v1::JobResult& jr : before.results()) {
      if (jr.state() != v1::JOB_QUEUED) {
        return absl::InternalError(absl::StrCat("a stalled job did not wait: ", jr.DebugString()));
      }
    }
    gate->Release();
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    for (uint64_t id : stalled_ids) {
      ASSIGN_OR_RETURN(v1::JobResult jr, neighbour->session->AwaitJob(id, absl::Seconds(60)));
      if (jr.state() != v1::JOB_DONE) {
        return absl::InternalError(absl::StrCat("a stalled job failed: ", jr.DebugString()));
      }
    }
    if (alone.errors > 0 || stalled.errors > 0) {
      return absl::InternalError(absl::StrCat("start-event isolation: jobs failed: ",
                                              alone.first_error, stalled.first_error));
    }
    alone_p99.push_back(alone.latency_us.p99);
    stalled_p99.push_back(stalled.latency_us.p99);
    alone_p50.push_back(alone.latency_us.p50);
    stalled_p50.push_back(stalled.latency_us.p50);
    std::fprintf(stderr, "  start events, repeat %d: p99 %.1f µs alone, %.1f µs beside %d "
                 "stalled jobs\n", r + 1, alone.latency_us.p99, stalled.latency_us.p99,
                 kStalledJobs);
  }
  // Latency of one job: no event, an event already complete, an event completing right after
  // the submit (gate opened once the submit is answered).
  Session& session = *clients[0]->session;
  std::vector<double> none, complete, pending, event_us, pending_dev, event_dev_us;
  // A gate on the GPU itself (cuStreamWaitValue32 on a mapped host word, released by a host
  // store): the event completes within microseconds of the release, unlike a host function's.
  using WaitValue32 = int (*)(cudaStream_t, unsigned long long, unsigned int, unsigned int);
  void* wait_value_fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  if (cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", &wait_value_fn, 12000,
                                       cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess) {
    wait_value_fn = nullptr;
  }
  ASSIGN_OR_RETURN(PinnedBuffer gate_word, PinnedBuffer::Create(64));
  auto* word = static_cast<volatile uint32_t*>(gate_word.data());
  *word = 0;
  uint32_t gate_value = 0;
  const int modes = wait_value_fn != nullptr ? 4 : 3;
  const absl::Time end = absl::Now() + absl::Seconds(seconds * 2);
  cudaEvent_t done_event = events[kStalledJobs], pending_event = events[kStalledJobs + 1];
  CUDA_RETURN_IF_ERROR(cudaEventRecord(done_event, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  for (int64_t k = 0; absl::Now() < end; ++k) {
    for (int mode = 0; mode < modes; ++mode) {
      v1::SubmitBatchRequest batch;
      v1::Job* job = batch.add_jobs();
      *job = MakeJob(*clients[0], 0, true, 1, k);
      std::unique_ptr<StreamGate> gate;
      if (mode == 1) job->mutable_start_event()->set_handle(handles[kStalledJobs]);
      if (mode == 2) {
        gate = std::make_unique<StreamGate>(stream);
        if (!gate->ok()) return absl::InternalError("cudaLaunchHostFunc failed");
        CUDA_RETURN_IF_ERROR(cudaEventRecord(pending_event, stream));
        job->mutable_start_event()->set_handle(handles[kStalledJobs + 1]);
      }
      if (mode == 3) {
        ++gate_value;
        const int error = reinterpret_cast<WaitValue32>(wait_value_fn)(
            stream, reinterpret_cast<unsigned long long>(gate_word.data()), gate_value,
            0 /* CU_STREAM_WAIT_VALUE_GEQ */);
        if (error != 0) return absl::InternalError(absl::StrCat("cuStreamWaitValue32: ", error));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(pending_event, stream));
        job->mutable_start_event()->set_handle(handles[kStalledJobs + 1]);
      }
      const absl::Time t0 = absl::Now();
      ASSIGN_OR_RETURN(v1::SubmitBatchResponse submitted, session.SubmitBatch(batch));
      absl::Time from = t0;
      if (mode == 3) {
        from = absl::Now();
        *word = gate_value;
        while (cudaEventQuery(pending_event) == cudaErrorNotReady) {
        }
        event_dev_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - from));
      }
      if (gate) {
        from = absl::Now();
        gate->Release();
        // How long the event itself takes to complete once the gate opens (CUDA's host
        // function returning, the stream going on), seen from this process.
        while (cudaEventQuery(pending_event) == cudaErrorNotReady) {
        }
        event_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - from));
      }
      ASSIGN_OR_RETURN(v1::JobResult jr, session.AwaitJob(submitted.job_ids(0), absl::Seconds(60)));
      const double us = absl::ToDoubleMicroseconds(absl::Now() - from);
      if (jr.state() != v1::JOB_DONE) {
        return absl::InternalError(absl::StrCat("start-event latency job: ", jr.DebugString()));
      }
      (mode == 0 ? none : mode == 1 ? complete : mode == 2 ? pending : pending_dev).push_back(us);
      if (mode >= 2) CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    }
  }
  for (cudaEvent_t e : events) cudaEventDestroy(e);
  cudaStreamDestroy(stream);
  (void)neighbour->session->DestroyPool(neighbour->pool[0]);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  std::vector<double> ratios;
  for (size_t i = 0; i < alone_p99.size(); ++i) ratios.push_back(stalled_p99[i] / alone_p99[i]);
  const Stats n = Summarize(none), c = Summarize(complete), p = Summarize(pending),
              e = Summarize(event_us), pd = Summarize(pending_dev), ed = Summarize(event_dev_us);
  std::printf("start events (small256k, device pool): %d clients x 1 in flight, p99 %.1f µs "
              "alone, %.1f µs beside %d stalled jobs (ratio %.3f, median of %d; target <= "
              "1.10); one job: p50 %.1f µs without an event, %.1f µs with a complete one, "
              "%.1f µs from its gate opening to its completion (of which %.1f µs until the event "
              "completes, seen in this process)\n",
              nclients, median(alone_p99), median(stalled_p99), kStalledJobs, median(ratios),
              repeats, n.p50, c.p50, p.p50, e.p50);
  std::printf("  with a GPU-side gate (cuStreamWaitValue32%s): %.1f µs from its release to the "
              "completion, of which %.1f µs until the event completes\n",
              wait_value_fn != nullptr ? "" : ": not available", pd.p50, ed.p50);
  return absl::StrFormat(
      "{\"shape\":\"%s\",\"clients\":%d,\"stalled_jobs\":%d,\"repeats\":%d,"
      "\"alone_p99_us\":[%s],\"stalled_p99_us\":[%s],\"alone_p50_us\":[%s],"
      "\"stalled_p50_us\":[%s],\"p99_ratio_median\":%.4f,\"one_job_no_event_us\":%s,"
      "\"one_job_complete_event_us\":%s,\"gate_open_to_done_us\":%s,"
      "\"gate_open_to_event_complete_us\":%s,\"device_gate_open_to_done_us\":%s,"
      "\"device_gate_open_to_event_complete_us\":%s}",
      kit.shape.name, nclients, kStalledJobs, repeats, absl::StrJoin(alone_p99, ","),
      absl::StrJoin(stalled_p99, ","), absl::StrJoin(alone_p50, ","),
      absl::StrJoin(stalled_p50, ","), median(ratios), StatsJson(n), StatsJson(c),
      StatsJson(p), StatsJson(e), StatsJson(pd), StatsJson(ed));
}

struct CaseSpec {
  std::string shape;
  int memory;  // 0 device pool, 1 pinned host pool
  bool offload;
  int nb;
  int inflight;
  int clients;
};

std::vector<CaseSpec> Cases(bool quick, const std::vector<std::string>& shapes) {
  std::vector<CaseSpec> out;
  for (const std::string& shape : shapes) {
    if (shape == "small256k") {
      for (int clients : {1, 8}) {
        for (int inflight : {1, 4}) out.push_back({shape, 0, true, 1, inflight, clients});
      }
      continue;
    }
    const std::vector<int> memories = quick ? std::vector<int>{0} : std::vector<int>{0, 1};
    const std::vector<int> nbs = quick ? std::vector<int>{1, 64} : std::vector<int>{1, 8, 64, 256};
    const std::vector<int> inflights = quick ? std::vector<int>{1, 4} : std::vector<int>{1, 4, 16};
    for (int memory : memories) {
      for (bool offload : {true, false}) {
        for (int nb : nbs) {
          for (int inflight : inflights) {
            if (nb * inflight > kPoolBlocks * 2 && inflight > 4) continue;
            out.push_back({shape, memory, offload, nb, inflight, 1});
          }
        }
      }
    }
    if (shape == "llama70b") out.push_back({shape, 0, true, 8, 1, 8});
  }
  return out;
}

std::string DeviceJson() {
  cudaDeviceProp prop{};
  int driver = 0, runtime = 0;
  cudaGetDeviceProperties(&prop, 0);
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  // The NVIDIA driver's version, as nvidia-smi shows it ("580.159.04").
  std::string nvidia = "unknown";
  std::ifstream version("/proc/driver/nvidia/version");
  std::string line;
  if (std::getline(version, line)) {
    for (absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      if (!word.empty() && absl::ascii_isdigit(word[0]) && absl::StrContains(word, '.')) {
        nvidia = std::string(word);
        break;
      }
    }
  }
  return absl::StrFormat(
      "\"device\":\"%s\",\"sms\":%d,\"driver\":\"%s\",\"cuda_driver\":%d,"
      "\"cuda_runtime\":%d,\"date\":\"%s\"",
      prop.name, prop.multiProcessorCount, nvidia, driver, runtime, date);
}

absl::Status Main() {
  const bool quick = absl::GetFlag(FLAGS_quick);
  const std::string target = absl::GetFlag(FLAGS_target);
  std::vector<std::string> shapes;
  if (!absl::GetFlag(FLAGS_shapes).empty()) {
    shapes = absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',');
  } else if (quick) {
    shapes = {"llama70b", "small256k"};
  } else {
    shapes = {"llama70b", "mla", "small256k"};
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Converter> conv, Converter::Create(0));
  cudaStream_t stream = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const std::vector<CaseSpec> cases = Cases(quick, shapes);
  const std::vector<std::string> paths = absl::StrSplit(absl::GetFlag(FLAGS_paths), ',');
  for (const std::string& path : paths) {
    if (path != "channel" && path != "unary") {
      return absl::InvalidArgumentError("--paths: unknown path " + path);
    }
  }
  std::vector<std::string> json_cases;
  std::string start_events_json = "null";
  std::printf("%-9s %-4s %-7s %4s %3s %3s %-7s | %8s %6s %6s | %9s %9s | %7s %7s %7s %7s %7s "
              "%7s\n",
              "shape", "pool", "dir", "nb", "inf", "cli", "path", "GB/s", "x mcpy", "x kern",
              "lat p50", "lat p99", "submit", "(daemon", "queue", "run", "compl", "mcpy us");
  size_t done = 0;
  for (const std::string& shape_name : shapes) {
    auto shape = std::find_if(Shapes().begin(), Shapes().end(),
                              [&](const Shape& s) { return s.name == shape_name; });
    if (shape == Shapes().end()) return absl::InvalidArgumentError("unknown shape " + shape_name);
    ASSIGN_OR_RETURN(std::unique_ptr<ShapeKit> kit, MakeKit(*shape));
    int max_clients = 1;
    bool host_pool = false;
    for (const CaseSpec& c : cases) {
      if (c.shape != shape_name) continue;
      max_clients = std::max(max_clients, c.clients);
      host_pool = host_pool || c.memory == 1;
    }
    std::vector<std::unique_ptr<ClientKit>> clients;
    for (int i = 0; i < max_clients; ++i) {
      // Extra clients (the job-rate cases) get small pools.
      ASSIGN_OR_RETURN(std::unique_ptr<ClientKit> c,
                       MakeClient(target, *kit, i, i == 0 ? kPoolBlocks : 64, i == 0 && host_pool));
      clients.push_back(std::move(c));
    }
    for (int memory = 0; memory < (host_pool ? 2 : 1); ++memory) {
      RETURN_IF_ERROR(CheckByteExact(*kit, *clients[0], memory));
      std::fprintf(stderr, "%s, %s pool: offload + onboard byte-exact\n", shape_name.c_str(),
                   memory == 0 ? "device" : "host");
    }
    for (const CaseSpec& c : cases) {
      if (c.shape != shape_name) continue;
      ++done;
      std::fprintf(stderr, "[%zu/%zu] %s %s %s nb %d, %d in flight, %d clients\n", done,
                   cases.size(), c.shape.c_str(), c.memory == 0 ? "device" : "host",
                   c.offload ? "offload" : "onboard", c.nb, c.inflight, c.clients);
      ASSIGN_OR_RETURN(const Baselines b,
                       MeasureBaselines(*kit, *conv, stream, c.memory, c.offload, c.nb));
      std::printf("  in process: memcpy %.1f GB/s, kernel %.1f GB/s (explicit plan), %.1f GB/s "
                  "(strided plan)\n",
                  b.memcpy_gbps, b.kernel_gbps, b.kernel_strided_gbps);
      for (const std::string& path : paths) {
      const DaemonResult d =
          MeasureDaemon(clients, c.clients, c.memory, c.offload, c.nb, c.inflight,
                        quick ? 0.25 : absl::GetFlag(FLAGS_case_seconds), kit->block_bytes,
                        path == "channel");
      if (d.errors > 0) {
        return absl::InternalError(absl::StrCat(d.errors, " daemon jobs failed: ", d.first_error));
      }
      std::printf("%-9s %-4s %-7s %4d %3d %3d %-7s | %8.1f %6.3f %6.3f | %9.1f %9.1f | %7.1f "
                  "%7.1f %7.1f %7.1f %7.1f %7.1f\n",
                  c.shape.c_str(), c.memory == 0 ? "dev" : "host",
                  c.offload ? "offload" : "onboard", c.nb, c.inflight, c.clients, path.c_str(),
                  d.gbps,
                  d.gbps / b.memcpy_gbps, d.gbps / b.kernel_gbps, d.latency_us.p50,
                  d.latency_us.p99, d.submit_us.p50, d.daemon_submit_us.p50, d.queue_us.p50,
                  d.run_us.p50,
                  d.completion_us.p50, b.memcpy_us);
      std::fflush(stdout);
      json_cases.push_back(absl::StrFormat(
          "{\"shape\":\"%s\",\"pool\":\"%s\",\"direction\":\"%s\",\"nb\":%d,\"inflight\":%d,"
          "\"clients\":%d,\"bytes_per_job\":%d,\"jobs\":%d,\"gbps\":%.2f,\"memcpy_gbps\":%.2f,"
          "\"memcpy_us\":%.2f,\"kernel_gbps\":%.2f,\"ratio_memcpy\":%.4f,\"ratio_kernel\":%.4f,"
          "\"jobs_per_second\":%.1f,\"latency_us\":%s,\"submit_us\":%s,\"queue_us\":%s,"
          "\"run_us\":%s,\"completion_us\":%s,\"path\":\"%s\",\"daemon_submit_us\":%s,"
          "\"kernel_strided_gbps\":%.2f}",
          c.shape, c.memory == 0 ? "device" : "host", c.offload ? "offload" : "onboard", c.nb,
          c.inflight, c.clients, kit->block_bytes * c.nb, d.jobs, d.gbps, b.memcpy_gbps,
          b.memcpy_us, b.kernel_gbps, d.gbps / b.memcpy_gbps, d.gbps / b.kernel_gbps,
          d.gbps * 1e9 / static_cast<double>(kit->block_bytes * c.nb), StatsJson(d.latency_us),
          StatsJson(d.submit_us), StatsJson(d.queue_us), StatsJson(d.run_us),
          StatsJson(d.completion_us), path, StatsJson(d.daemon_submit_us),
          b.kernel_strided_gbps));
      }
    }
    if (shape_name == "small256k" && absl::GetFlag(FLAGS_start_events)) {
      std::fprintf(stderr, "start events: isolation and latency\n");
      ASSIGN_OR_RETURN(start_events_json,
                       MeasureStartEvents(target, *kit, clients,
                                          quick ? 0.25 : absl::GetFlag(FLAGS_case_seconds),
                                          absl::GetFlag(FLAGS_start_event_repeats) > 0
                                              ? absl::GetFlag(FLAGS_start_event_repeats)
                                              : (quick ? 1 : 3)));
    }
    for (auto& c : clients) {
      for (const std::string& pool : c->pool) {
        if (!pool.empty()) (void)c->session->DestroyPool(pool);
      }
    }
  }
  cudaStreamDestroy(stream);
  const std::string json = absl::StrCat(
      "{\"bench\":\"daemon\",", DeviceJson(), ",\"commit\":\"", absl::GetFlag(FLAGS_commit),
      "\",\"quick\":", quick ? "true" : "false", ",\"target\":\"", target,
      "\",\"start_events\":", start_events_json, ",\"cases\":[\n",
      absl::StrJoin(json_cases, ",\n"), "]}\n");
  if (!absl::GetFlag(FLAGS_out).empty()) {
    std::ofstream out(absl::GetFlag(FLAGS_out));
    out << json;
    if (!out) return absl::InternalError("cannot write " + absl::GetFlag(FLAGS_out));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace kvshuttle::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = kvshuttle::bench::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "kvs_daemon_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
