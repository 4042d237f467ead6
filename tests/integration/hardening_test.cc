// Issue #13 (hardening, round 2) against a GPU-less daemon: one client must never crash the
// daemon, exhaust its memory, maps, threads or descriptors, or starve the others. One test per
// defect of the list (the number in the test's comment); each fails on 7efb2a6 (the
// daemon died, allocated, or let the flood through there) and passes now.
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>

#include "absl/strings/str_cat.h"
#include "client/memfd_memory.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;
using ::testing::HasSubstr;

class HardeningTest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> flags) {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
        DaemonProcess::Start(WithFlags(std::move(flags)));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }
  void TearDown() override {
    if (HasFailure() && daemon_ != nullptr) {
      std::printf("--- kvshuttled output ---\n%s\n", daemon_->Stderr().c_str());
    }
  }
  std::unique_ptr<Session> Open(absl::string_view name) {
    absl::StatusOr<std::unique_ptr<Session>> session =
        Session::Open(daemon_->client(), name, /*attach=*/true);
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? *std::move(session) : nullptr;
  }
  // The daemon answers and is SERVING.
  void ExpectServing() {
    ASSERT_TRUE(daemon_->running()) << daemon_->Stderr();
    absl::StatusOr<health_v1::HealthCheckResponse::ServingStatus> health =
        daemon_->client().Health();
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(*health, health_v1::HealthCheckResponse::SERVING);
  }
  // A small NHD → universal conversion in a new session, checked byte for byte.
  void ExpectAnotherSessionConverts() {
    std::unique_ptr<Session> other = Open("it-bystander");
    ASSERT_NE(other, nullptr);
    const BlockShape shape{.nl = 2, .no = 2, .nt = 4, .nh = 2, .hd = 8};
    KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                             MakeHostBlockSet(*other, MakeLayout(LayoutKind::kNHDStack, shape), 2,
                                              Placement::kStrided, 11));
    KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                             MakeHostBlockSet(*other, MakeLayout(LayoutKind::kUniversal, shape), 2,
                                              Placement::kStrided, 12));
    const TransferSpec spec = WholeBlocks(src.layout, dst.layout);
    KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected,
                             ExpectedAfter(src, dst, spec, IdentityPairs(2)));
    KVS_ASSERT_OK_AND_ASSIGN(
        v1::WaitResponse done,
        RunBatch(*other, {MakeJob(src.endpoint(), dst.endpoint(), spec, IdentityPairs(2))}));
    ASSERT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
    EXPECT_TRUE(BytesEqual(dst.data(), expected));
  }

  std::unique_ptr<DaemonProcess> daemon_;
};

// #1: a client shrinks the named shm object it lent; the job touching the missing pages fails
// FAILED_PRECONDITION, the daemon lives (it died of SIGBUS before).
TEST_F(HardeningTest, ATruncatedShmObjectFailsItsJobNotTheDaemon) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--cpu_threads=1"}));
  std::unique_ptr<Session> session = Open("it-truncator");
  const BlockShape shape{.nl = 4, .no = 2, .nt = 16, .nh = 4, .hd = 64};
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, MakeLayout(LayoutKind::kNHDStack, shape), 4,
                                            Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, MakeLayout(LayoutKind::kUniversal, shape),
                                            4, Placement::kStrided, 2));
  const int fd = shm_open(src.shm->name().c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 0), 0);  // from here on, neither process may touch src's pages
  close(fd);
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      RunBatch(*session, {MakeJob(src.endpoint(), dst.endpoint(),
                                  WholeBlocks(src.layout, dst.layout), IdentityPairs(4))}));
  ASSERT_EQ(done.results_size(), 1);
  EXPECT_EQ(done.results(0).state(), v1::JOB_FAILED);
  EXPECT_EQ(done.results(0).code(), static_cast<int>(StatusCode::kFailedPrecondition));
  EXPECT_THAT(done.results(0).message(), HasSubstr("vanished under the copy (SIGBUS"));
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
  ASSERT_NO_FATAL_FAILURE(ExpectAnotherSessionConverts());
}

// #1 (memfd, the safe transport): a sealed memfd cannot be shrunk, so the daemon's copy of it
// can never fault; the conversion is byte-exact.
TEST_F(HardeningTest, AMemfdRegionCannotShrinkAndConverts) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  std::unique_ptr<Session> session = Open("it-memfd");
  const BlockShape shape{.nl = 2, .no = 2, .nt = 8, .nh = 4, .hd = 16};
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, shape);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, shape);
  const uint64_t chunk = static_cast<uint64_t>(BytesPerAddress(nhd.kind, shape, 2));
  const uint64_t block = static_cast<uint64_t>(BytesPerAddress(uni.kind, shape, 2));
  constexpr int kBlocks = 3;
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemfdMemory> src_mem,
                           MemfdMemory::Create(chunk * 4 * kBlocks));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemfdMemory> dst_mem, MemfdMemory::Create(block * kBlocks));
  FillRandom(src_mem->data(), src_mem->size(), 5);
  std::memset(dst_mem->data(), 0, dst_mem->size());
  EXPECT_NE(ftruncate(src_mem->fd(), 0), 0) << "a sealed memfd must refuse to shrink";
  EXPECT_EQ(errno, EPERM);
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse src_region,
                           session->RegisterMemfdRegion(*src_mem, 0, src_mem->size()));
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse dst_region,
                           session->RegisterMemfdRegion(*dst_mem, 0, dst_mem->size()));
  EXPECT_EQ(src_region.region().memory(), v1::MEMORY_HOST);
  v1::StridedPlacement src_place;
  for (int s = 0; s < 4; ++s) {
    v1::SlotBase* slot = src_place.add_slots();
    slot->set_region_id(src_region.region().region_id());
    slot->set_offset(s * chunk * kBlocks);
  }
  src_place.set_block_stride(chunk);
  v1::StridedPlacement dst_place;
  dst_place.add_slots()->set_region_id(dst_region.region().region_id());
  dst_place.set_block_stride(block);
  KVS_ASSERT_OK_AND_ASSIGN(auto src_set,
                           session->RegisterBlockSet(LayoutToProto(nhd), kBlocks, src_place));
  KVS_ASSERT_OK_AND_ASSIGN(auto dst_set,
                           session->RegisterBlockSet(LayoutToProto(uni), kBlocks, dst_place));
  v1::Endpoint src_ep, dst_ep;
  src_ep.set_block_set_id(src_set.block_set().block_set_id());
  dst_ep.set_block_set_id(dst_set.block_set().block_set_id());
  const TransferSpec spec = WholeBlocks(nhd, uni);
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done,
                           RunBatch(*session, {MakeJob(src_ep, dst_ep, spec, IdentityPairs(kBlocks))}));
  ASSERT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  // Reference: every row (l, o, t, h) of block b lands at its universal place.
  const auto* in = static_cast<const uint8_t*>(src_mem->data());
  const auto* out = static_cast<const uint8_t*>(dst_mem->data());
  const size_t row = 16 * 2;
  for (int b = 0; b < kBlocks; ++b) {
    for (int l = 0; l < 2; ++l) {
      for (int o = 0; o < 2; ++o) {
        for (int t = 0; t < 8; ++t) {
          for (int h = 0; h < 4; ++h) {
            const uint8_t* from = in + (l * 2 + o) * chunk * kBlocks + b * chunk +
                                  NhdChunkOffset(shape, t, h, 0) * 2;
            const uint8_t* to = out + b * block + UniversalOffset(shape, l, o, t, h, 0) * 2;
            ASSERT_EQ(std::memcmp(from, to, row), 0) << b << " " << l << " " << o << " " << t;
          }
        }
      }
    }
  }
}

// #2: host regions' mappings are budgeted per session and in all, so no client can take the
// kernel's map limit from the others (and the daemon keeps room for its own).
TEST_F(HardeningTest, MappingsAreBudgetedPerSessionAndInAll) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--maps_budget=6", "--session_maps_budget=4"}));
  std::unique_ptr<Session> a = Open("it-maps-a");
  std::unique_ptr<Session> b = Open("it-maps-b");
  std::vector<std::unique_ptr<SharedMemory>> objects;
  auto lend = [&objects](Session& s) {
    absl::StatusOr<std::unique_ptr<SharedMemory>> shm = SharedMemory::Create(4096);
    EXPECT_TRUE(shm.ok());
    objects.push_back(*std::move(shm));
    return s.RegisterHostShmRegion(objects.back()->name(), 0, 4096);
  };
  std::vector<uint64_t> a_regions;
  for (int i = 0; i < 4; ++i) {
    KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse r, lend(*a));
    a_regions.push_back(r.region().region_id());
  }
  EXPECT_TRUE(HasStatus(lend(*a), StatusCode::kResourceExhausted,
                        {"session's maps budget", "uses 4 of 4"}));
  KVS_ASSERT_OK(lend(*b));
  KVS_ASSERT_OK(lend(*b));
  EXPECT_TRUE(HasStatus(lend(*b), StatusCode::kResourceExhausted,
                        {"daemon's maps budget", "uses 6 of 6"}));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, daemon_->client().GetInfo());
  bool seen = false;
  for (const v1::BudgetUsage& u : info.budgets()) {
    if (u.name() != "maps") continue;
    seen = true;
    EXPECT_EQ(u.limit(), 6);
    EXPECT_EQ(u.used(), 6);
    EXPECT_EQ(u.session_limit(), 4);
  }
  EXPECT_TRUE(seen);
  KVS_ASSERT_OK(a->UnregisterRegion(a_regions[0]));
  KVS_ASSERT_OK(lend(*b));  // a released region gives its mapping back
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
}

// #3: what a small request can make the daemon allocate is charged before it is allocated.
TEST_F(HardeningTest, MetadataIsChargedBeforeItIsAllocated) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(
      {"--metadata_budget_mib=64", "--session_metadata_budget_mib=16", "--cpu_threads=1"}));
  const int64_t hwm_before = daemon_->VmHwmKiB();
  std::unique_ptr<Session> session = Open("it-amplifier");
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(1 << 20));
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse region,
                           session->RegisterHostShmRegion(shm->name(), 0, 1 << 20));
  // A 64-byte request for 4,194,304 one-byte blocks at stride 0: 48 MiB of tables.
  v1::StridedPlacement zero_stride;
  zero_stride.add_slots()->set_region_id(region.region().region_id());
  zero_stride.set_block_stride(0);
  const v1::Layout tiny =
      LayoutToProto(MakeLayout(LayoutKind::kUniversal, {}, DType::kUInt8));
  EXPECT_TRUE(HasStatus(session->RegisterBlockSet(tiny, 1 << 22, zero_stride),
                        StatusCode::kResourceExhausted, {"RegisterBlockSet", "metadata budget"}));
  // A pool of 2^24 one-byte blocks: 200 MiB of metadata.
  EXPECT_TRUE(HasStatus(session->CreatePool("it-tiny-blocks", tiny, 1 << 24, v1::MEMORY_HOST),
                        StatusCode::kResourceExhausted, {"metadata", "budget"}));
  // A ~1 MB SubmitBatch whose plan would take 128 MiB: 65,536 pairs × 64 layers × 2 chunks
  // against an explicit table (planned per chunk copy).
  const BlockShape deep{.nl = 64, .no = 2, .nt = 1, .nh = 1, .hd = 1};
  const LayoutDesc deep_stack = MakeLayout(LayoutKind::kNHDStack, deep, DType::kUInt8);
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, deep_stack, 1, Placement::kExplicit, 3));
  v1::Job huge = MakeJob(src.endpoint(), src.endpoint(), WholeBlocks(src.layout, src.layout),
                         std::vector<BlockPair>(65536, BlockPair{0, 0, 0, 0}));
  v1::SubmitBatchRequest batch;
  *batch.add_jobs() = huge;
  EXPECT_TRUE(HasStatus(session->SubmitBatch(batch), StatusCode::kResourceExhausted,
                        {"jobs[0]", "metadata budget"}));
  // Between strided block sets the same job plans in O(pairs) (~2.2 MB): it is charged that,
  // accepted, and cancelled before it runs through its 8M one-byte chunk copies.
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet strided,
                           MakeHostBlockSet(*session, deep_stack, 1, Placement::kStrided, 4));
  v1::SubmitBatchRequest cheap;
  *cheap.add_jobs() = MakeJob(strided.endpoint(), strided.endpoint(),
                              WholeBlocks(strided.layout, strided.layout),
                              std::vector<BlockPair>(65536, BlockPair{0, 0, 0, 0}));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse accepted, session->SubmitBatch(cheap));
  ASSERT_EQ(accepted.job_ids_size(), 1);
  KVS_ASSERT_OK(session->CancelJobs({accepted.job_ids(0)}).status());
  EXPECT_LT(daemon_->VmHwmKiB() - hwm_before, (40 << 10) + kSanitizerSlackKiB)
      << "the refused requests allocated";
  // One Wait naming one id 8M times (1.4 GiB of answer on 7efb2a6). What remains is gRPC's
  // parse of the 8 MiB request into 8-byte ids (64 MiB, ~135 MiB at peak while the repeated
  // field grows) before the daemon sees it; the answer it would have built is gone.
  const int64_t hwm_wait = daemon_->VmHwmKiB();
  std::vector<uint64_t> ids(8 << 20, 1);
  EXPECT_TRUE(HasStatus(session->Wait(ids, absl::Milliseconds(1)),
                        StatusCode::kResourceExhausted, {"job_ids", "per Wait"}));
  EXPECT_LT(daemon_->VmHwmKiB() - hwm_wait, (192 << 10) + kSanitizerSlackKiB)
      << "the refused Wait allocated";
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
  ASSERT_NO_FATAL_FAILURE(ExpectAnotherSessionConverts());
}

// #3: pool memory is budgeted against the machine before it is allocated (a 65-byte
// CreatePool asked for, and memset, up to 64 TiB).
TEST_F(HardeningTest, PoolMemoryIsBudgetedBeforeItIsAllocated) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--pool_host_fraction=0.01"}));
  std::unique_ptr<Session> session = Open("it-pool-hog");
  const v1::Layout big = LayoutToProto(MakeLayout(
      LayoutKind::kUniversal, {.nl = 80, .no = 2, .nt = 16, .nh = 8, .hd = 128}, DType::kBF16));
  const int64_t hwm_before = daemon_->VmHwmKiB();
  EXPECT_TRUE(HasStatus(session->CreatePool("it-hog", big, 1 << 20, v1::MEMORY_HOST),
                        StatusCode::kResourceExhausted, {"pool_host budget"}));
  EXPECT_LT(daemon_->VmHwmKiB() - hwm_before, (8 << 10) + kSanitizerSlackKiB);
  KVS_ASSERT_OK(session->CreatePool("it-modest", big, 4, v1::MEMORY_HOST));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, daemon_->client().GetInfo());
  for (const v1::BudgetUsage& u : info.budgets()) {
    if (u.name() == "pool_host") {
      EXPECT_EQ(u.used(), 4 * 80 * 2 * 16 * 8 * 128 * 2);
    }
  }
}

// #3: pool memory has a per-session share too (issue #13: "a per-session and a daemon-wide
// budget for every allocation"): one session's pools stop at its share, another's still fit.
TEST_F(HardeningTest, OneSessionsPoolsStopAtItsShareOfThePoolBudget) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--pool_host_fraction=0.01", "--session_pool_fraction=0.5"}));
  std::unique_ptr<Session> a = Open("it-pool-a");
  std::unique_ptr<Session> b = Open("it-pool-b");
  const LayoutDesc layout =
      MakeLayout(LayoutKind::kUniversal, {.nl = 1, .no = 2, .nt = 16, .nh = 8, .hd = 128},
                 DType::kBF16);
  const int64_t block = 64 << 10;
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, daemon_->client().GetInfo());
  int64_t limit = 0, session_limit = 0;
  for (const v1::BudgetUsage& u : info.budgets()) {
    if (u.name() == "pool_host") {
      limit = u.limit();
      session_limit = u.session_limit();
    }
  }
  ASSERT_GT(limit, 0);
  EXPECT_EQ(session_limit, limit / 2);
  const uint32_t most = static_cast<uint32_t>(session_limit * 8 / 10 / block);
  const uint32_t more = static_cast<uint32_t>(session_limit * 3 / 10 / block) + 1;
  ASSERT_GT(most, 0u);
  const v1::Layout proto = LayoutToProto(layout);
  KVS_ASSERT_OK(a->CreatePool("it-pool-a1", proto, most, v1::MEMORY_HOST));
  EXPECT_TRUE(HasStatus(a->CreatePool("it-pool-a2", proto, more, v1::MEMORY_HOST),
                        StatusCode::kResourceExhausted, {"session's pool_host budget"}));
  KVS_ASSERT_OK(b->CreatePool("it-pool-b1", proto, more, v1::MEMORY_HOST));
  v1::GetInfoRequest mine;
  mine.set_session_id(a->id());
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse a_info,
                           daemon_->client().Call(&v1::Shuttle::Stub::GetInfo, mine));
  for (const v1::BudgetUsage& u : a_info.budgets()) {
    if (u.name() == "pool_host") EXPECT_EQ(u.session_used(), int64_t{most} * block);
    // The pool's metadata (12 bytes and a bit per block) counts against its session too.
    if (u.name() == "metadata") EXPECT_GE(u.session_used(), int64_t{most} * 12);
  }
  KVS_ASSERT_OK(a->DestroyPool("it-pool-a1"));  // its share comes back with the pool
  KVS_ASSERT_OK(a->CreatePool("it-pool-a2", proto, more, v1::MEMORY_HOST));
}

// #4: a message over the cap costs the daemon at most its gRPC memory bound, not the whole
// message (a 2000 MiB message held 2 GiB at peak on 7efb2a6).
TEST_F(HardeningTest, AnOversizedMessageIsRefusedWithinTheGrpcMemoryBound) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--max_message_mib=16", "--grpc_memory_mib=64"}));
  const int64_t hwm_before = daemon_->VmHwmKiB();
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(daemon_->target(), grpc::InsecureChannelCredentials(), args);
  std::unique_ptr<v1::Shuttle::Stub> stub = v1::Shuttle::NewStub(channel);
  v1::OpenSessionRequest request;
  request.set_client_name(std::string(size_t{768} << 20, 'x'));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::OpenSessionResponse response;
  const grpc::Status status = stub->OpenSession(&context, request, &response);
  request.Clear();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.error_code(),
              ::testing::AnyOf(grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::UNAVAILABLE,
                               grpc::StatusCode::INTERNAL))
      << status.error_message();
  const int64_t grown_mib = (daemon_->VmHwmKiB() - hwm_before) >> 10;
  EXPECT_LT(grown_mib, 64 + 96 + (kSanitizerSlackKiB >> 10))
      << "peak daemon memory grew " << grown_mib << " MiB";
  // gRPC's memory bound is shared (docs/security.md, known gaps): right after the flood another
  // connection's call may still be refused while gRPC reclaims its buffers. It must recover.
  EXPECT_TRUE(WaitUntil([&] { return daemon_->client().Health().ok(); }, absl::Seconds(3)));
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
  ASSERT_NO_FATAL_FAILURE(ExpectAnotherSessionConverts());
}

// #5: SIGTERM with queued and running work exits within drain_timeout + 1 s: queued jobs are
// cancelled, running ones stopped at a chunk boundary, streams end, the socket goes.
TEST_F(HardeningTest, DrainHonoursItsTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--drain_timeout_seconds=2", "--cpu_threads=1"}));
  std::unique_ptr<Session> session = Open("it-drain");
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  v1::SubmitBatchRequest batch;
  for (int i = 0; i < 4; ++i) *batch.add_jobs() = slow->Job(absl::Seconds(8));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session->SubmitBatch(batch));
  ASSERT_TRUE(WaitUntil([&] { return CpuQueueDepth(daemon_->client()) == 3; }, absl::Seconds(2)));
  const absl::Time term = absl::Now();
  daemon_->SendTerm();
  KVS_ASSERT_OK_AND_ASSIGN(int status, daemon_->WaitExit(absl::Seconds(10)));
  const absl::Duration took = absl::Now() - term;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << DescribeWaitStatus(status);
  EXPECT_LT(took, absl::Seconds(3) + absl::Milliseconds(500)) << "drain took " << took;
  EXPECT_GE(took, absl::Seconds(2) - absl::Milliseconds(200)) << "the running job had 2 s";
  struct stat st {};
  EXPECT_NE(stat(daemon_->socket_path().c_str(), &st), 0) << "the socket was left behind";
  // Every job's completion reached the stream before it ended: all CANCELLED.
  int cancelled = 0;
  for (const v1::JobResult& e : session->TakeEvents()) {
    for (uint64_t id : submitted.job_ids()) {
      if (e.job_id() == id && e.state() == v1::JOB_CANCELLED) ++cancelled;
    }
  }
  EXPECT_EQ(cancelled, 4);
}

// #6: one session's huge jobs occupy the CPU executor; another session's small job runs
// between their slices instead of after them.
TEST_F(HardeningTest, ASmallJobIsNotStuckBehindAnotherSessionsHugeOnes) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--cpu_threads=2"}));
  std::unique_ptr<Session> hog = Open("it-hog");
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*hog));
  v1::SubmitBatchRequest batch;
  for (int i = 0; i < 4; ++i) *batch.add_jobs() = slow->Job(absl::Seconds(4));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse hogging, hog->SubmitBatch(batch));
  absl::SleepFor(absl::Milliseconds(100));  // both threads are in the hog's jobs now
  const absl::Time start = absl::Now();
  ASSERT_NO_FATAL_FAILURE(ExpectAnotherSessionConverts());
  EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << "the bystander waited for the hog";
  const std::vector<uint64_t> hog_ids(hogging.job_ids().begin(), hogging.job_ids().end());
  KVS_ASSERT_OK(hog->CancelJobs(hog_ids));
}

// #6: one client (one uid) cannot hold every session.
TEST_F(HardeningTest, OneClientCannotHoldEverySession) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--max_sessions_per_client=3"}));
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < 3; ++i) {
    KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> s,
                             Session::Open(daemon_->client(), "it-greedy", false));
    sessions.push_back(std::move(s));
  }
  EXPECT_TRUE(HasStatus(Session::Open(daemon_->client(), "it-greedy", false),
                        StatusCode::kResourceExhausted, {"uid:", "3 of at most 3", "per client"}));
  sessions.pop_back();
  KVS_ASSERT_OK(Session::Open(daemon_->client(), "it-greedy", false));
}

// A raw unix connection to the daemon's socket.
int RawConnect(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// True when the daemon closed `fd` within `timeout` (a read sees end of file or a reset).
bool ClosedWithin(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  char buffer[4096];
  while (absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) == 1) {
      const ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
    }
  }
  return false;
}

// #7: connections that sent the HTTP/2 preface and then nothing are closed once idle, and one
// uid's connections are bounded, so idle connections cannot exhaust the daemon's descriptors.
TEST_F(HardeningTest, IdleConnectionsAreClosedAndConnectionsPerUidAreBounded) {
  ASSERT_NO_FATAL_FAILURE(
      StartDaemon({"--connection_idle_seconds=2", "--max_connections_per_uid=6"}));
  const int fds_before = daemon_->CountOpenFds();
  // The harness's own client holds one connection.
  std::vector<int> idle;
  for (int i = 0; i < 5; ++i) {
    const int fd = RawConnect(daemon_->socket_path());
    ASSERT_GE(fd, 0);
    const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    ASSERT_EQ(send(fd, preface, sizeof(preface) - 1, MSG_NOSIGNAL),
              static_cast<ssize_t>(sizeof(preface) - 1));
    idle.push_back(fd);
  }
  absl::SleepFor(absl::Milliseconds(200));
  const int over = RawConnect(daemon_->socket_path());
  ASSERT_GE(over, 0);
  EXPECT_TRUE(ClosedWithin(over, absl::Milliseconds(500))) << "the 7th connection was kept";
  close(over);
  for (int fd : idle) {
    EXPECT_TRUE(ClosedWithin(fd, absl::Seconds(5))) << "an idle connection was never closed";
    close(fd);
  }
  EXPECT_TRUE(WaitUntil([&] { return daemon_->CountOpenFds() <= fds_before; }, absl::Seconds(3)))
      << daemon_->CountOpenFds() << " descriptors, " << fds_before << " before";
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
  ASSERT_NO_FATAL_FAILURE(ExpectAnotherSessionConverts());
}

// #5: a session's blocked Waits are bounded; more are RESOURCE_EXHAUSTED at once (each held a
// thread on 7efb2a6).
TEST_F(HardeningTest, BlockedWaitsPerSessionAreBounded) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--max_waits_per_session=2", "--cpu_threads=1"}));
  std::unique_ptr<Session> session = Open("it-waiter");
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  v1::SubmitBatchRequest batch;
  *batch.add_jobs() = slow->Job(absl::Seconds(3));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session->SubmitBatch(batch));
  const std::vector<uint64_t> ids = {submitted.job_ids(0)};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&] { (void)session->Wait(ids, absl::Seconds(10)); });
  }
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(HasStatus(session->Wait(ids, absl::Seconds(10)), StatusCode::kResourceExhausted,
                        {"2 of at most 2 Wait calls"}));
  KVS_ASSERT_OK(session->CancelJobs(ids));
  for (std::thread& t : waiters) t.join();
  KVS_ASSERT_OK(session->Wait(ids, absl::Seconds(10)));  // the bound is on calls at once
}

// #9: bad input gets the code of its kind (INTERNAL is for CUDA failures only).
TEST_F(HardeningTest, BadInputGetsTheCodeOfItsKind) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  std::unique_ptr<Session> session = Open("it-codes");
  const v1::Layout layout = LayoutToProto(MakeLayout(LayoutKind::kUniversal, {}));
  KVS_ASSERT_OK(session->CreatePool("it-codes", layout, 4, v1::MEMORY_HOST));
  EXPECT_TRUE(HasStatus(session->AllocateBlocks("it-codes", 0), StatusCode::kInvalidArgument,
                        {"count: 0"}));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(4096));
  const std::string link = absl::StrCat("/kvs-it-link-", getpid());
  ASSERT_EQ(symlink(("/dev/shm" + shm->name()).c_str(), ("/dev/shm" + link).c_str()), 0);
  EXPECT_TRUE(HasStatus(session->RegisterHostShmRegion(link, 0, 16),
                        StatusCode::kInvalidArgument, {"symbolic link"}));
  unlink(("/dev/shm" + link).c_str());
  const std::string sock = absl::StrCat("/kvs-it-sock-", getpid());
  const int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = "/dev/shm" + sock;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_TRUE(HasStatus(session->RegisterHostShmRegion(sock, 0, 16),
                        StatusCode::kInvalidArgument, {"not a shared-memory object"}));
  close(s);
  unlink(path.c_str());
}

// Named shm is opened only for its owner (the daemon runs as root: it opened any object).
TEST_F(HardeningTest, ANamedShmObjectOfAnotherUidIsPermissionDenied) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the object another owner";
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  std::unique_ptr<Session> session = Open("it-not-mine");
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(4096));
  const int fd = shm_open(shm->name().c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fchown(fd, 65534, 65534), 0);
  close(fd);
  const int maps_before = daemon_->CountMappings();
  EXPECT_TRUE(HasStatus(session->RegisterHostShmRegion(shm->name(), 0, 4096),
                        StatusCode::kPermissionDenied, {"belongs to uid 65534", "uid 0"}));
  EXPECT_EQ(daemon_->CountMappings(), maps_before);
}

// The descriptor side channel end to end: tokens are one-time and per session, only memfds
// sealed against shrinking are mapped, and a descriptor the client closes right after sending
// still arrives.
TEST_F(HardeningTest, DescriptorTokensAreOneTimeAndPerSessionAndOnlySealedMemfdsMap) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  std::unique_ptr<Session> a = Open("it-fd-a");
  std::unique_ptr<Session> b = Open("it-fd-b");
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemfdMemory> memfd, MemfdMemory::Create(8192));
  const int fd = memfd->fd();
  KVS_ASSERT_OK_AND_ASSIGN(const std::string token, a->SendDescriptors({&fd, 1}));
  EXPECT_TRUE(HasStatus(b->RegisterMemfdRegion(token, 0, 0, 4096), StatusCode::kNotFound,
                        {"fd_token"}))
      << "another session's token";
  EXPECT_TRUE(HasStatus(a->RegisterMemfdRegion(token, 1, 0, 4096), StatusCode::kOutOfRange,
                        {"fd_index"}));
  KVS_ASSERT_OK(a->RegisterMemfdRegion(token, 0, 0, 4096));
  EXPECT_FALSE(a->RegisterMemfdRegion(token, 0, 0, 4096).ok()) << "a descriptor is used once";
  // A descriptor sent twice with one token: refused by the channel.
  v1::CreateFdTokenRequest request;
  request.set_session_id(a->id());
  KVS_ASSERT_OK_AND_ASSIGN(v1::CreateFdTokenResponse fresh,
                           daemon_->client().Call(&v1::Shuttle::Stub::CreateFdToken, request));
  KVS_ASSERT_OK(SendDescriptors(fresh.socket_path(), fresh.token(), {&fd, 1}));
  EXPECT_TRUE(HasStatus(SendDescriptors(fresh.socket_path(), fresh.token(), {&fd, 1}),
                        StatusCode::kFailedPrecondition, {"sent with it already"}));
  // Not a memfd, or a memfd that can shrink: refused at registration.
  char path[] = "/tmp/kvs-it-file-XXXXXX";
  const int file = mkstemp(path);
  ASSERT_EQ(ftruncate(file, 8192), 0);
  unlink(path);
  const int unsealed = memfd_create("kvs-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_EQ(ftruncate(unsealed, 8192), 0);
  const int both[] = {file, unsealed};
  KVS_ASSERT_OK_AND_ASSIGN(const std::string two, a->SendDescriptors(both));
  close(file);      // the client lets go right after sending: the daemon holds its own copy
  close(unsealed);
  EXPECT_TRUE(HasStatus(a->RegisterMemfdRegion(two, 0, 0, 4096), StatusCode::kInvalidArgument,
                        {"a regular file", "not a memfd"}));
  EXPECT_TRUE(HasStatus(a->RegisterMemfdRegion(two, 1, 0, 4096),
                        StatusCode::kFailedPrecondition, {"F_SEAL_SHRINK"}));
  ASSERT_NO_FATAL_FAILURE(ExpectServing());
}

}  // namespace
}  // namespace kvshuttle::it
