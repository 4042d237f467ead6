// DESIGN §4.10: floods hit their quotas with RESOURCE_EXHAUSTED — regions per session,
// sessions, jobs per batch, pairs per job, the message size cap and a full queue — while the
// daemon stays SERVING with bounded memory and no leaked mappings or descriptors.
#include <gtest/gtest.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

constexpr int kRegionQuota = 100;
constexpr int kSessionQuota = 24;
constexpr int kJobsPerBatch = 16;
constexpr int kPairsPerJob = 60000;
constexpr int kQueueCapacity = 2;
// Growth of the daemon's VmRSS over the whole suite, measured from its start (a GPU runtime's
// context makes the absolute figure machine-dependent).
constexpr int64_t kMaxRssGrowthKiB = 200 * 1024;

class FloodTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
        DaemonProcess::Start(WithFlags({absl::StrCat("--max_regions_per_session=", kRegionQuota),
                                        absl::StrCat("--max_sessions=", kSessionQuota),
                                        absl::StrCat("--max_jobs_per_batch=", kJobsPerBatch),
                                        absl::StrCat("--max_pairs_per_job=", kPairsPerJob),
                                        absl::StrCat("--queue_capacity=", kQueueCapacity),
                                        "--max_message_mib=1", "--cpu_threads=1"}));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
    // Baseline after one registration, so a lazily created GPU context is already counted.
    const absl::Status warmed = WarmUpRegistration(daemon_->client());
    ASSERT_TRUE(warmed.ok()) << warmed;
    baseline_rss_kib_ = daemon_->VmRssKiB();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr) << "the daemon did not start"; }
  void TearDown() override {
    if (HasFailure() && daemon_ != nullptr) {
      std::printf("--- kvshuttled output ---\n%s\n", daemon_->Stderr().c_str());
    }
  }
  static Client& client() { return daemon_->client(); }

  void ExpectServingAndBounded() {
    absl::StatusOr<health_v1::HealthCheckResponse::ServingStatus> health = client().Health();
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(*health, health_v1::HealthCheckResponse::SERVING);
    const int64_t rss = daemon_->VmRssKiB();
    EXPECT_GT(rss, 0);
    EXPECT_LT(rss - baseline_rss_kib_, kMaxRssGrowthKiB)
        << "daemon VmRSS " << rss << " KiB, " << baseline_rss_kib_ << " KiB at the start";
  }

  static DaemonProcess* daemon_;
  static int64_t baseline_rss_kib_;
};

DaemonProcess* FloodTest::daemon_ = nullptr;
int64_t FloodTest::baseline_rss_kib_ = 0;

TEST_F(FloodTest, RegionFloodStopsAtThePerSessionQuota) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-region-flood", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(1 << 16));
  const std::string needle = "/dev/shm" + shm->name();
  for (int i = 0; i < kRegionQuota; ++i) {
    KVS_ASSERT_OK(session->RegisterHostShmRegion(shm->name(), 4096 * (i % 16), 4096));
  }
  EXPECT_EQ(daemon_->CountMappings(needle), kRegionQuota);
  const int fds = daemon_->CountOpenFds();
  int refused = 0;
  constexpr int kAttempts = 2000;
  for (int i = 0; i < kAttempts; ++i) {
    absl::StatusOr<v1::RegisterRegionResponse> r =
        session->RegisterHostShmRegion(shm->name(), 0, 4096);
    if (HasStatus(r, StatusCode::kResourceExhausted,
                  {"regions: the session holds 100 of at most 100 regions"})) {
      ++refused;
    } else {
      ADD_FAILURE() << "attempt " << i << ": " << r.status();
      break;
    }
  }
  EXPECT_EQ(refused, kAttempts);
  EXPECT_EQ(daemon_->CountMappings(needle), kRegionQuota);  // refused mappings were undone
  EXPECT_EQ(daemon_->CountOpenFds(), fds);
  ExpectServingAndBounded();
  session.reset();
  EXPECT_TRUE(WaitUntil([&] { return daemon_->CountMappings(needle) == 0; }, absl::Seconds(3)));
}

TEST_F(FloodTest, SessionFloodStopsAtMaxSessions) {
  std::vector<std::string> ids;
  v1::OpenSessionRequest open;
  open.set_client_name("it-session-flood");
  absl::Status last;
  for (int i = 0; i < kSessionQuota + 50; ++i) {
    absl::StatusOr<v1::OpenSessionResponse> opened =
        client().Call(&v1::Shuttle::Stub::OpenSession, open);
    if (!opened.ok()) {
      last = opened.status();
      continue;
    }
    ids.push_back(opened->session_id());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kSessionQuota));
  EXPECT_TRUE(HasStatus(last, StatusCode::kResourceExhausted, {"sessions: 24 of at most 24 open"}));
  ExpectServingAndBounded();
  for (const std::string& id : ids) {
    v1::CloseSessionRequest close;
    close.set_session_id(id);
    KVS_ASSERT_OK(client().Call(&v1::Shuttle::Stub::CloseSession, close));
  }
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListSessionsResponse left, client().ListSessions());
  EXPECT_EQ(left.sessions_size(), 0);
}

TEST_F(FloodTest, OversizedBatchesAndJobsAreRefusedWhole) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-big-batch", /*attach=*/true));
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {1, 2, 16, 2, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 2));
  const std::vector<uint8_t> untouched = dst.Snapshot();
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse before, client().GetStats());
  const v1::Job job =
      MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(uni, uni), IdentityPairs(2));
  v1::SubmitBatchRequest batch;
  for (int i = 0; i <= kJobsPerBatch; ++i) *batch.add_jobs() = job;
  EXPECT_TRUE(HasStatus(session->SubmitBatch(batch), StatusCode::kResourceExhausted,
                        {"jobs: 17 jobs; at most 16 per batch"}));
  v1::SubmitBatchRequest long_job;
  v1::Job many = job;
  many.clear_pairs();
  for (int i = 0; i <= kPairsPerJob; ++i) many.add_pairs();
  *long_job.add_jobs() = many;
  EXPECT_TRUE(HasStatus(session->SubmitBatch(long_job), StatusCode::kResourceExhausted,
                        {"jobs[0].pairs: 60001 pairs; at most 60000"}));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse after, client().GetStats());
  EXPECT_EQ(after.jobs_done(), before.jobs_done());
  EXPECT_EQ(after.jobs_cancelled(), before.jobs_cancelled());
  EXPECT_TRUE(BytesEqual(dst.data(), untouched));
  ExpectServingAndBounded();
}

TEST_F(FloodTest, MessageOverTheCapIsResourceExhausted) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-big-message", /*attach=*/true));
  const std::string two_mib(2 << 20, 'k');
  EXPECT_TRUE(HasStatus(session->RegisterCudaIpcRegion(two_mib, "GPU-x", 0, 4096),
                        StatusCode::kResourceExhausted, {"larger than max"}));
  v1::SubmitBatchRequest batch;
  v1::Job* job = batch.add_jobs();
  job->mutable_src()->set_pool(std::string(2 << 20, 'p'));
  EXPECT_TRUE(
      HasStatus(session->SubmitBatch(batch), StatusCode::kResourceExhausted, {"larger than max"}));
  // Just under the cap is parsed and refused for what it says.
  const std::string under(1 << 19, 'k');
  EXPECT_TRUE(HasStatus(session->RegisterCudaIpcRegion(under, "GPU-x", 0, 4096),
                        StatusCode::kInvalidArgument, {"cuda_ipc.handle", "524288 bytes"}));
  EXPECT_TRUE(session->StreamStatus().ok());
  ExpectServingAndBounded();
}

TEST_F(FloodTest, FullQueueIsResourceExhaustedAndTheBatchIsWithdrawn) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-queue-full", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow,
                           SlowJobs::Create(*session, kPairsPerJob));
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {1, 2, 16, 2, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 2));
  const std::vector<uint8_t> untouched = dst.Snapshot();
  const v1::Job quick =
      MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(uni, uni), IdentityPairs(2));

  v1::SubmitBatchRequest busy;
  *busy.add_jobs() = slow->Job(absl::Milliseconds(800));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse running, session->SubmitBatch(busy));
  ASSERT_TRUE(WaitUntil([&] { return CpuQueueDepth(client()) == 0; }, absl::Seconds(2)));
  v1::SubmitBatchRequest two;
  *two.add_jobs() = quick;
  *two.add_jobs() = quick;
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse queued, session->SubmitBatch(two));
  EXPECT_EQ(CpuQueueDepth(client()), kQueueCapacity);
  for (int i = 0; i < 20; ++i) {
    v1::SubmitBatchRequest one;
    *one.add_jobs() = quick;
    EXPECT_TRUE(HasStatus(session->SubmitBatch(one), StatusCode::kResourceExhausted,
                          {"executor cpu: queue holds 2 of 2 tasks; 1 more do not fit"}));
  }
  EXPECT_EQ(CpuQueueDepth(client()), kQueueCapacity);

  std::vector<uint64_t> ids(queued.job_ids().begin(), queued.job_ids().end());
  KVS_ASSERT_OK_AND_ASSIGN(v1::CancelJobsResponse cancelled, session->CancelJobs(ids));
  EXPECT_EQ(cancelled.cancelled_size(), 2);
  ids.push_back(running.job_ids(0));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done, session->Wait(ids, absl::Seconds(20)));
  ASSERT_TRUE(done.all_done()) << done.DebugString();
  EXPECT_EQ(done.results(0).state(), v1::JOB_CANCELLED);
  EXPECT_EQ(done.results(1).state(), v1::JOB_CANCELLED);
  EXPECT_EQ(done.results(2).state(), v1::JOB_DONE);
  EXPECT_TRUE(BytesEqual(dst.data(), untouched));
  EXPECT_EQ(CpuQueueDepth(client()), 0);
  ExpectServingAndBounded();
}

// A batch refused because the queue is full leaves no trace: no job ids, no records, no
// jobs_cancelled count, no job_done events for ids the client never got.
TEST_F(FloodTest, RefusedBatchLeavesNoTrace) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-refused-trace", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow,
                           SlowJobs::Create(*session, kPairsPerJob));
  const v1::Job job = slow->Job(absl::Milliseconds(300));
  v1::SubmitBatchRequest one;
  *one.add_jobs() = job;
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse first, session->SubmitBatch(one));
  ASSERT_TRUE(WaitUntil([&] { return CpuQueueDepth(client()) == 0; }, absl::Seconds(2)));
  v1::SubmitBatchRequest rest;  // fills the queue behind the running job
  for (int i = 0; i < kQueueCapacity; ++i) *rest.add_jobs() = job;
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse queued, session->SubmitBatch(rest));
  session->TakeEvents();
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse before, client().GetStats());
  EXPECT_TRUE(HasStatus(session->SubmitBatch(one), StatusCode::kResourceExhausted, {"queue"}));
  absl::SleepFor(absl::Milliseconds(100));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse after, client().GetStats());
  EXPECT_EQ(after.jobs_cancelled(), before.jobs_cancelled());
  std::set<uint64_t> known(slow->calibration_job_ids().begin(), slow->calibration_job_ids().end());
  known.insert(first.job_ids(0));
  known.insert(queued.job_ids().begin(), queued.job_ids().end());
  for (const v1::JobResult& event : session->TakeEvents()) {
    EXPECT_TRUE(known.count(event.job_id()))
        << "event for a job the client never got an id for: " << event.DebugString();
  }
  std::vector<uint64_t> ids(queued.job_ids().begin(), queued.job_ids().end());
  KVS_ASSERT_OK(session->CancelJobs(ids));
  ids.push_back(first.job_ids(0));
  KVS_ASSERT_OK(session->Wait(ids, absl::Seconds(20)));
}

}  // namespace
}  // namespace kvshuttle::it
