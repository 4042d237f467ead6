// The daemon in one process under concurrent clients (CPU executor over host shared memory, no
// GPU): sessions register shm regions and block sets, move blocks into a shared pool and back,
// and meanwhile wait, cancel, unregister regions under running jobs, close sessions with jobs
// queued, leave sessions to the lease reaper and attach/detach event streams, while another
// thread scrapes stats and metrics. Round trips must come back byte-exact. Written for the
// sanitizer tiers (`make tsan-test` runs it under TSan: the scheduler, sessions, reaper and
// metrics share state across these threads); in a plain build it is a quick unit test.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/proto_convert.h"
#include "server/daemon.h"
#include "server/runtime/gpu_runtime.h"

namespace kvshuttle {
namespace {

constexpr int kClients = 4;
constexpr int kRounds = 24;
constexpr uint32_t kPoolBlocks = 64;
// Lease of sessions without an Attach stream: long enough for one round on a loaded machine
// under TSan, short enough to wait out at the end.
constexpr absl::Duration kLease = absl::Seconds(3);
// NHD stack, f16: 4 slots (nl*no) of 128-byte chunks per block; blocks 0,1 go out, 2,3 come back.
constexpr int64_t kBlocks = 4;
constexpr int64_t kChunk = 4 * 2 * 8 * 2;
constexpr int64_t kSlots = 4;
constexpr size_t kShmBytes = kSlots * kBlocks * kChunk;

LayoutDesc Stack() {
  return {LayoutKind::kNHDStack, {.nl = 2, .no = 2, .nt = 4, .nh = 2, .hd = 8}, DType::kF16};
}
LayoutDesc Universal() {
  LayoutDesc d = Stack();
  d.kind = LayoutKind::kUniversal;
  return d;
}

// A POSIX shm object the test owns: created, mapped, unlinked at the end.
class Shm {
 public:
  explicit Shm(std::string name) : name_(std::move(name)) {
    const int fd = ::shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    EXPECT_GE(fd, 0) << name_ << ": " << std::strerror(errno);
    EXPECT_EQ(::ftruncate(fd, kShmBytes), 0);
    data_ = static_cast<uint8_t*>(
        ::mmap(nullptr, kShmBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    EXPECT_NE(data_, MAP_FAILED);
    ::close(fd);
  }
  ~Shm() {
    ::munmap(data_, kShmBytes);
    ::shm_unlink(name_.c_str());
  }
  const std::string& name() const { return name_; }
  // Chunk (block, slot) of the strided placement below: slot-major, blocks kChunk apart.
  uint8_t* chunk(int64_t block, int64_t slot) { return data_ + (slot * kBlocks + block) * kChunk; }

 private:
  std::string name_;
  uint8_t* data_ = nullptr;
};

v1::Job MakeJob(const v1::Endpoint& src, const v1::Endpoint& dst,
                const std::vector<std::pair<uint32_t, uint32_t>>& pairs) {
  v1::Job job;
  *job.mutable_src() = src;
  *job.mutable_dst() = dst;
  for (const auto& [s, d] : pairs) {
    v1::BlockPair* p = job.add_pairs();
    p->set_src_block(s);
    p->set_dst_block(d);
  }
  return job;
}

class Client {
 public:
  Client(Daemon& daemon, int index)
      : daemon_(daemon),
        index_(index),
        shm_(absl::StrCat("/kvs-concurrency-", ::getpid(), "-", index)) {}

  void Run() {
    for (int round = 0; round < kRounds; ++round) Round(round);
  }

 private:
  void Round(int round) {
    v1::OpenSessionResponse opened;
    ASSERT_TRUE(daemon_.OpenSession(CallContext{}, Named<v1::OpenSessionRequest>(), &opened).ok());
    const std::string id = opened.session_id();

    // An Attach stream holds the session until it closes, except in the rounds left to the
    // lease reaper (5 mod 8).
    const bool to_reaper = round % 8 == 5;
    std::thread attach;
    if (!to_reaper) {
      attach = std::thread([this, id] {
        v1::AttachRequest req;
        req.set_session_id(id);
        int events = 0;
        (void)daemon_.Attach(CallContext{}, req, [&events](const v1::SessionEvent&) {
          ++events;
          return true;
        });
      });
    }

    v1::RegisterRegionRequest region_req;
    region_req.set_session_id(id);
    region_req.mutable_host_shm()->set_name(shm_.name());
    region_req.mutable_host_shm()->set_size(kShmBytes);
    v1::RegisterRegionResponse region;
    ASSERT_TRUE(daemon_.RegisterRegion(CallContext{}, region_req, &region).ok());

    v1::RegisterBlockSetRequest bs_req;
    bs_req.set_session_id(id);
    *bs_req.mutable_layout() = LayoutToProto(Stack());
    bs_req.set_num_blocks(kBlocks);
    bs_req.mutable_strided()->set_block_stride(kChunk);
    for (int64_t s = 0; s < kSlots; ++s) {
      v1::SlotBase* slot = bs_req.mutable_strided()->add_slots();
      slot->set_region_id(region.region().region_id());
      slot->set_offset(s * kBlocks * kChunk);
    }
    v1::RegisterBlockSetResponse bs;
    ASSERT_TRUE(daemon_.RegisterBlockSet(CallContext{}, bs_req, &bs).ok());

    v1::AllocateBlocksRequest alloc_req;
    alloc_req.set_session_id(id);
    alloc_req.set_pool("shared");
    alloc_req.set_count(2);
    v1::AllocateBlocksResponse blocks;
    ASSERT_TRUE(daemon_.AllocateBlocks(CallContext{}, alloc_req, &blocks).ok());

    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t s = 0; s < kSlots; ++s) {
        std::memset(shm_.chunk(b, s), (index_ * 31 + round * 7 + b * 3 + s) & 0xff, kChunk);
      }
    }
    v1::Endpoint set, pool;
    set.set_block_set_id(bs.block_set().block_set_id());
    pool.set_pool("shared");
    const uint32_t p0 = blocks.block_ids(0), p1 = blocks.block_ids(1);
    const std::vector<uint64_t> out = Submit(id, MakeJob(set, pool, {{0, p0}, {1, p1}}));

    bool closed = false;
    switch (round % 4) {
      case 0: {  // round trip, checked byte by byte
        EXPECT_TRUE(WaitAll(id, out, v1::JOB_DONE));
        const std::vector<uint64_t> back = Submit(id, MakeJob(pool, set, {{p0, 2}, {p1, 3}}));
        EXPECT_TRUE(WaitAll(id, back, v1::JOB_DONE));
        for (int64_t b = 0; b < 2; ++b) {
          for (int64_t s = 0; s < kSlots; ++s) {
            EXPECT_EQ(std::memcmp(shm_.chunk(b, s), shm_.chunk(b + 2, s), kChunk), 0)
                << "client " << index_ << " round " << round << " block " << b << " slot " << s;
          }
        }
        break;
      }
      case 1: {  // cancel what has not started
        v1::CancelJobsRequest cancel;
        cancel.set_session_id(id);
        for (uint64_t j : out) cancel.add_job_ids(j);
        v1::CancelJobsResponse cancelled;
        EXPECT_TRUE(daemon_.CancelJobs(CallContext{}, cancel, &cancelled).ok());
        EXPECT_TRUE(WaitAll(id, out, v1::JOB_STATE_UNSPECIFIED));
        break;
      }
      case 2: {  // unregister the region under the job: release deferred, the job completes
        v1::UnregisterRegionRequest unreg;
        unreg.set_session_id(id);
        unreg.set_region_id(region.region().region_id());
        v1::UnregisterRegionResponse unregistered;
        EXPECT_TRUE(daemon_.UnregisterRegion(CallContext{}, unreg, &unregistered).ok());
        EXPECT_TRUE(WaitAll(id, out, v1::JOB_DONE));
        break;
      }
      case 3: {  // close with the job queued or running
        v1::CloseSessionRequest close;
        close.set_session_id(id);
        v1::CloseSessionResponse closed_resp;
        EXPECT_TRUE(daemon_.CloseSession(CallContext{}, close, &closed_resp).ok());
        closed = true;
        break;
      }
    }

    // The pool blocks go back whatever happened to the session (FreeBlocks needs a session).
    if (closed) {
      v1::OpenSessionResponse other;
      ASSERT_TRUE(daemon_.OpenSession(CallContext{}, Named<v1::OpenSessionRequest>(), &other).ok());
      FreeBlocks(other.session_id(), p0, p1);
      CloseSession(other.session_id());
    } else {
      FreeBlocks(id, p0, p1);
    }
    if (!closed && !to_reaper) CloseSession(id);
    if (attach.joinable()) attach.join();
  }

  template <typename Request>
  Request Named() {
    Request r;
    r.set_client_name(absl::StrCat("client-", index_));
    return r;
  }

  std::vector<uint64_t> Submit(const std::string& id, const v1::Job& job) {
    v1::SubmitBatchRequest req;
    req.set_session_id(id);
    *req.add_jobs() = job;
    v1::SubmitBatchResponse resp;
    const absl::Status status = daemon_.SubmitBatch(CallContext{}, req, &resp);
    EXPECT_TRUE(status.ok()) << status;
    return {resp.job_ids().begin(), resp.job_ids().end()};
  }

  // Waits for `ids`; every one must end in `state` (JOB_STATE_UNSPECIFIED: any final state).
  bool WaitAll(const std::string& id, const std::vector<uint64_t>& ids, v1::JobState state) {
    v1::WaitRequest req;
    req.set_session_id(id);
    req.set_timeout_seconds(30);
    for (uint64_t j : ids) req.add_job_ids(j);
    v1::WaitResponse resp;
    const absl::Status status = daemon_.Wait(CallContext{}, req, &resp);
    if (!status.ok() || !resp.all_done()) {
      ADD_FAILURE() << "Wait: " << status << " " << resp.ShortDebugString();
      return false;
    }
    for (const v1::JobResult& r : resp.results()) {
      if (state != v1::JOB_STATE_UNSPECIFIED && r.state() != state) {
        ADD_FAILURE() << "job " << r.ShortDebugString();
        return false;
      }
    }
    return true;
  }

  void FreeBlocks(const std::string& id, uint32_t p0, uint32_t p1) {
    v1::FreeBlocksRequest req;
    req.set_session_id(id);
    req.set_pool("shared");
    req.add_block_ids(p0);
    req.add_block_ids(p1);
    v1::FreeBlocksResponse resp;
    const absl::Status status = daemon_.FreeBlocks(CallContext{}, req, &resp);
    EXPECT_TRUE(status.ok()) << status;
  }

  void CloseSession(const std::string& id) {
    v1::CloseSessionRequest req;
    req.set_session_id(id);
    v1::CloseSessionResponse resp;
    EXPECT_TRUE(daemon_.CloseSession(CallContext{}, req, &resp).ok());
  }

  Daemon& daemon_;
  const int index_;
  Shm shm_;
};

TEST(DaemonConcurrencyTest, ClientsRaceEveryRpcWhileStatsAreScraped) {
  DaemonOptions options;
  options.use_gpus = false;
  options.cpu_threads = 2;
  options.lease = kLease;
  absl::StatusOr<std::unique_ptr<Daemon>> created =
      Daemon::Create(options, CreateNullGpuRuntime());
  ASSERT_TRUE(created.ok()) << created.status();
  Daemon& daemon = **created;

  v1::OpenSessionResponse admin;
  ASSERT_TRUE(daemon.OpenSession(CallContext{}, {}, &admin).ok());
  v1::CreatePoolRequest pool;
  pool.set_session_id(admin.session_id());
  pool.set_name("shared");
  *pool.mutable_layout() = LayoutToProto(Universal());
  pool.set_num_blocks(kPoolBlocks);
  pool.set_memory(v1::MEMORY_HOST);
  v1::CreatePoolResponse created_pool;
  ASSERT_TRUE(daemon.CreatePool(CallContext{}, pool, &created_pool).ok());

  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    while (!stop) {
      v1::GetStatsResponse stats;
      EXPECT_TRUE(daemon.GetStats(CallContext{}, {}, &stats).ok());
      v1::ListSessionsResponse sessions;
      EXPECT_TRUE(daemon.ListSessions(CallContext{}, {}, &sessions).ok());
      v1::ListPoolsResponse pools;
      EXPECT_TRUE(daemon.ListPools(CallContext{}, {}, &pools).ok());
      v1::GetInfoResponse info;
      EXPECT_TRUE(daemon.GetInfo(CallContext{}, {}, &info).ok());
      EXPECT_FALSE(daemon.metrics().registry().Render().empty());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  {
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i) clients.push_back(std::make_unique<Client>(daemon, i));
    for (auto& c : clients) threads.emplace_back([&c] { c->Run(); });
    for (std::thread& t : threads) t.join();
  }
  // The reaper closes the sessions left to their leases (the admin's too), then the daemon
  // drains with stats still being scraped.
  std::this_thread::sleep_for(absl::ToChronoMilliseconds(kLease + absl::Milliseconds(600)));
  v1::ListSessionsResponse left;
  ASSERT_TRUE(daemon.ListSessions(CallContext{}, {}, &left).ok());
  EXPECT_EQ(left.sessions_size(), 0) << left.ShortDebugString();
  daemon.BeginDrain();
  daemon.Drain();
  stop = true;
  scraper.join();
  created->reset();
}

}  // namespace
}  // namespace kvshuttle
