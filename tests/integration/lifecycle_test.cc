// Lifetimes under fire, each against its own daemon: unregistering a region a job uses
// (DESIGN §4.6), a client SIGKILLed mid-batch (§4.7), SIGTERM drain and restart over a stale
// socket (§4.11), deadlines (§4.12) and session leases.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

#ifndef KVS_KILL_ME_CLIENT_PATH
#error "KVS_KILL_ME_CLIENT_PATH must name kvs_it_kill_me_client"
#endif

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

// Prints the daemon's output when the test failed.
class LifecycleTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && daemon_ != nullptr) {
      std::printf("--- kvshuttled output ---\n%s\n", daemon_->Stderr().c_str());
    }
  }
  void StartDaemon(DaemonConfig config) {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon = DaemonProcess::Start(std::move(config));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }
  static int SessionCount(const Client& client) {
    absl::StatusOr<v1::ListSessionsResponse> list = client.ListSessions();
    return list.ok() ? list->sessions_size() : -1;
  }

  std::unique_ptr<DaemonProcess> daemon_;  // declared first: outlives the sessions below
};

// §4.6
TEST_F(LifecycleTest, UnregisterWhileAJobUsesTheRegionIsDeferredUntilItEnds) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--cpu_threads=1"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon_->client(), "it-deferred", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  const std::string needle = "/dev/shm" + slow->src().shm->name();
  ASSERT_EQ(daemon_->CountMappings(needle), 1);
  slow->PoisonDst();
  v1::SubmitBatchRequest request;
  *request.add_jobs() = slow->Job(absl::Milliseconds(1500));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session->SubmitBatch(request));
  const uint64_t job = submitted.job_ids(0);

  KVS_ASSERT_OK_AND_ASSIGN(v1::UnregisterRegionResponse first,
                           session->UnregisterRegion(slow->src().region_id));
  EXPECT_TRUE(first.deferred());
  KVS_ASSERT_OK_AND_ASSIGN(v1::UnregisterRegionResponse repeat,
                           session->UnregisterRegion(slow->src().region_id));
  EXPECT_TRUE(repeat.deferred());
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse regions, session->ListRegions());
  bool releasing = false;
  for (const v1::Region& r : regions.regions()) {
    if (r.region_id() != slow->src().region_id) continue;
    releasing = r.releasing();
    EXPECT_GE(r.users(), 1u);
  }
  EXPECT_TRUE(releasing) << regions.DebugString();
  EXPECT_EQ(daemon_->CountMappings(needle), 1);  // still mapped: the job reads it
  // The block set over it went with the region; new work on it is refused.
  v1::SubmitBatchRequest again;
  *again.add_jobs() = slow->Job(absl::Milliseconds(10));
  EXPECT_TRUE(
      HasStatus(session->SubmitBatch(again), StatusCode::kNotFound, {"jobs[0].src.block_set_id"}));
  v1::StridedPlacement placement;
  v1::SlotBase* slot = placement.add_slots();
  slot->set_region_id(slow->src().region_id);
  placement.set_block_stride(0);
  EXPECT_TRUE(HasStatus(session->RegisterBlockSet(LayoutToProto(slow->src().layout), 1, placement),
                        StatusCode::kFailedPrecondition, {"region_id", "being released"}));

  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done,
                           session->Wait(std::vector<uint64_t>{job}, absl::Seconds(20)));
  ASSERT_TRUE(done.all_done());
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  EXPECT_TRUE(slow->DstIsConverted());
  EXPECT_TRUE(WaitUntil([&] { return daemon_->CountMappings(needle) == 0; }, absl::Seconds(2)))
      << "the region is still mapped after its job ended";
  KVS_ASSERT_OK_AND_ASSIGN(repeat, session->UnregisterRegion(slow->src().region_id));
  EXPECT_FALSE(repeat.deferred());
  KVS_ASSERT_OK_AND_ASSIGN(regions, session->ListRegions());
  for (const v1::Region& r : regions.regions()) EXPECT_NE(r.region_id(), slow->src().region_id);
}

// §4.7
TEST_F(LifecycleTest, KilledClientLosesItsSessionAndMappingsOthersKeepWorking) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--cpu_threads=2", "--queue_capacity=16"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> survivor,
                           Session::Open(daemon_->client(), "it-survivor", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*survivor));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8});
  const LayoutDesc hnd = MakeLayout(LayoutKind::kHNDStack, {2, 2, 16, 4, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*survivor, nhd, 3, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*survivor, hnd, 3, Placement::kExplicit, 2));

  KVS_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<ChildProcess> victim,
      ChildProcess::Spawn({KVS_KILL_ME_CLIENT_PATH, daemon_->target(),
                           absl::StrCat(slow->PairsFor(absl::Milliseconds(250)))}));
  ASSERT_TRUE(victim->WaitForOutput("READY ", absl::Seconds(10))) << victim->Output();
  std::string shm_name(
      absl::StripAsciiWhitespace(victim->Output().substr(victim->Output().find("READY ") + 6)));
  shm_name = shm_name.substr(0, shm_name.find('\n'));
  const std::string needle = "/dev/shm" + shm_name;
  EXPECT_EQ(SessionCount(daemon_->client()), 2);
  EXPECT_GE(daemon_->CountMappings(needle), 1);
  absl::SleepFor(absl::Milliseconds(300));  // let it fill the queue and get jobs running
  victim->Kill();
  ::shm_unlink(shm_name.c_str());  // the killed client could not

  EXPECT_TRUE(WaitUntil([&] { return SessionCount(daemon_->client()) == 1; }, absl::Seconds(5)))
      << "the killed client's session is still listed";
  EXPECT_TRUE(WaitUntil([&] { return daemon_->CountMappings(needle) == 0; }, absl::Seconds(5)))
      << "the killed client's shm is still mapped";
  // Its queued jobs are dropped, not run: the queue empties within one running job's time.
  EXPECT_TRUE(WaitUntil([&] { return CpuQueueDepth(daemon_->client()) == 0; }, absl::Seconds(5)));

  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected,
                           ExpectedAfter(src, dst, WholeBlocks(nhd, hnd), IdentityPairs(3)));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      RunBatch(*survivor,
               {MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(nhd, hnd), IdentityPairs(3))},
               absl::Seconds(10)));
  ASSERT_TRUE(done.all_done()) << done.DebugString();
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE);
  EXPECT_TRUE(BytesEqual(dst.data(), expected));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse stats, daemon_->client().GetStats());
  EXPECT_EQ(stats.jobs_failed(), 0u);
  EXPECT_TRUE(survivor->StreamStatus().ok());
}

// §4.11
TEST_F(LifecycleTest, SigtermDrainsInFlightWorkEndsStreamsAndUnlinksTheSocket) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--cpu_threads=1"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon_->client(), "it-drain", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  slow->PoisonDst();
  v1::SubmitBatchRequest request;
  *request.add_jobs() = slow->Job(absl::Milliseconds(1500));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session->SubmitBatch(request));
  ASSERT_TRUE(WaitUntil([&] { return CpuQueueDepth(daemon_->client()) == 0; }, absl::Seconds(2)));

  daemon_->SendTerm();
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto health = daemon_->client().Health();
        return health.ok() && *health == health_v1::HealthCheckResponse::NOT_SERVING;
      },
      absl::Seconds(1)))
      << "health did not go NOT_SERVING while the job ran";
  KVS_ASSERT_OK_AND_ASSIGN(auto shuttle, daemon_->client().Health("kvshuttle.v1.Shuttle"));
  EXPECT_EQ(shuttle, health_v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_TRUE(HasStatus(Session::Open(daemon_->client(), "late", false), StatusCode::kUnavailable,
                        {"draining"}));
  EXPECT_TRUE(HasStatus(session->SubmitBatch(request), StatusCode::kUnavailable, {"draining"}));

  KVS_ASSERT_OK_AND_ASSIGN(int status, daemon_->WaitExit(absl::Seconds(15)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << DescribeWaitStatus(status);
  EXPECT_TRUE(slow->DstIsConverted()) << "the in-flight job did not finish";
  absl::StatusOr<v1::JobResult> event =
      WaitForJobEvent(*session, submitted.job_ids(0), absl::Seconds(2));
  EXPECT_TRUE(event.ok()) << "no job_done event for the in-flight job before the stream ended: "
                          << event.status();
  if (event.ok()) {
    EXPECT_EQ(event->state(), v1::JOB_DONE);
  }
  EXPECT_TRUE(WaitUntil([&] { return !session->StreamStatus().ok(); }, absl::Seconds(2)));
  EXPECT_TRUE(HasStatus(session->StreamStatus(), StatusCode::kUnavailable, {"shutting down"}));
  struct stat st {};
  EXPECT_NE(::lstat(daemon_->socket_path().c_str(), &st), 0) << "socket file left behind";
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "kvshuttled: stopped")) << daemon_->Stderr();
}

TEST_F(LifecycleTest, RestartOverAStaleSocketFileServes) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  const std::string path = daemon_->socket_path();
  daemon_->Kill();
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0) << "SIGKILL should leave the socket file";
  ASSERT_TRUE(S_ISSOCK(st.st_mode));

  DaemonConfig same_path;
  same_path.socket_path = path;
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DaemonProcess> restarted,
                           DaemonProcess::Start(same_path));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, restarted->client().GetInfo());
  EXPECT_EQ(info.listen_address(), "unix:" + path);
  KVS_ASSERT_OK(Session::Open(restarted->client(), "after-restart", true));

  // A live daemon's socket is not taken over.
  KVS_ASSERT_OK_AND_ASSIGN(
      CommandResult second,
      RunCommand({KVS_DAEMON_PATH, "--listen=unix:" + path, "--gpus=false"}, absl::Seconds(10)));
  EXPECT_FALSE(second.exited_ok());
  EXPECT_TRUE(absl::StrContains(second.output, "another process is accepting")) << second.output;
  // A path that is not a socket is not removed.
  const std::string plain = UniqueTmpPath(".notsock");
  std::ofstream(plain) << "keep me";
  KVS_ASSERT_OK_AND_ASSIGN(
      CommandResult refused,
      RunCommand({KVS_DAEMON_PATH, "--listen=unix:" + plain, "--gpus=false"}, absl::Seconds(10)));
  EXPECT_FALSE(refused.exited_ok());
  EXPECT_TRUE(absl::StrContains(refused.output, "is not a socket")) << refused.output;
  EXPECT_EQ(::lstat(plain.c_str(), &st), 0);
  ::unlink(plain.c_str());
}

// §4.12
TEST_F(LifecycleTest, SubmitAfterItsDeadlineQueuesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--cpu_threads=1"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon_->client(), "it-deadline", /*attach=*/true));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, nhd, 64, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 64, Placement::kStrided, 2));
  const std::vector<uint8_t> untouched = dst.Snapshot();
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse before, daemon_->client().GetStats());

  v1::SubmitBatchRequest request;
  request.set_session_id(session->id());
  for (int i = 0; i < 8; ++i) {
    *request.add_jobs() =
        MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(nhd, uni), IdentityPairs(64));
  }
  for (int attempt = 0; attempt < 20; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() - absl::Seconds(1)));
    v1::SubmitBatchResponse response;
    EXPECT_TRUE(HasStatus(
        FromGrpcStatus(daemon_->client().stub().SubmitBatch(&context, request, &response)),
        StatusCode::kDeadlineExceeded, {}));
  }
  // Should gRPC deliver such a call at all, the daemon must refuse it or drop its jobs unrun.
  EXPECT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::ListSessionsResponse> list = session->ListSessions();
        return list.ok() && list->sessions_size() == 1 && list->sessions(0).jobs_pending() == 0 &&
               CpuQueueDepth(daemon_->client()) == 0;
      },
      absl::Seconds(3)));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse after, daemon_->client().GetStats());
  EXPECT_EQ(after.jobs_done(), before.jobs_done()) << "a job ran after its deadline";
  EXPECT_EQ(after.bytes_moved(), before.bytes_moved());
  EXPECT_EQ(after.jobs_failed(), before.jobs_failed());
  EXPECT_EQ(after.jobs_cancelled(), before.jobs_cancelled());
  EXPECT_TRUE(BytesEqual(dst.data(), untouched));
  EXPECT_TRUE(session->TakeEvents().empty());
}

TEST_F(LifecycleTest, JobWhoseDeadlinePassesInTheQueueIsCancelledWithoutRunning) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--cpu_threads=1"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon_->client(), "it-queued-deadline", true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, nhd, 2, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 2));
  const std::vector<uint8_t> untouched = dst.Snapshot();

  v1::SubmitBatchRequest busy;
  *busy.add_jobs() = slow->Job(absl::Milliseconds(1000));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse running, session->SubmitBatch(busy));
  v1::SubmitBatchRequest hurried;
  hurried.set_session_id(session->id());
  *hurried.add_jobs() =
      MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(nhd, uni), IdentityPairs(2));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::SubmitBatchResponse queued,
      daemon_->client().Call(&v1::Shuttle::Stub::SubmitBatch, hurried, absl::Milliseconds(250)));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      session->Wait(std::vector<uint64_t>{running.job_ids(0), queued.job_ids(0)},
                    absl::Seconds(20)));
  ASSERT_TRUE(done.all_done()) << done.DebugString();
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE);
  const v1::JobResult& late = done.results(1);
  EXPECT_EQ(late.state(), v1::JOB_CANCELLED) << late.DebugString();
  EXPECT_EQ(late.code(), static_cast<int>(StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(absl::StrContains(late.message(), "deadline passed")) << late.message();
  EXPECT_EQ(late.bytes(), 0u);
  EXPECT_TRUE(BytesEqual(dst.data(), untouched));
}

// Leases: a session with neither Attach nor KeepAlive expires and is released; one that keeps
// its lease alive lives on.
TEST_F(LifecycleTest, SessionWithoutAttachOrKeepAliveExpires) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--lease_seconds=1"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> kept,
                           Session::Open(daemon_->client(), "it-kept", /*attach=*/false));
  const absl::Time start = absl::Now();
  v1::OpenSessionRequest open;
  open.set_client_name("it-forgotten");
  KVS_ASSERT_OK_AND_ASSIGN(v1::OpenSessionResponse forgotten,
                           daemon_->client().Call(&v1::Shuttle::Stub::OpenSession, open));
  EXPECT_EQ(forgotten.lease_seconds(), 1u);
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(65536));
  v1::RegisterRegionRequest region;
  region.set_session_id(forgotten.session_id());
  region.mutable_host_shm()->set_name(shm->name());
  region.mutable_host_shm()->set_size(65536);
  KVS_ASSERT_OK(daemon_->client().Call(&v1::Shuttle::Stub::RegisterRegion, region));
  const std::string needle = "/dev/shm" + shm->name();
  EXPECT_EQ(daemon_->CountMappings(needle), 1);
  EXPECT_EQ(SessionCount(daemon_->client()), 2);

  EXPECT_TRUE(WaitUntil([&] { return SessionCount(daemon_->client()) == 1; }, absl::Seconds(3)))
      << "the unattached session without KeepAlive did not expire";
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(900)) << "expired before its lease ran out";
  EXPECT_TRUE(WaitUntil([&] { return daemon_->CountMappings(needle) == 0; }, absl::Seconds(2)));
  v1::KeepAliveRequest keep;
  keep.set_session_id(forgotten.session_id());
  EXPECT_TRUE(HasStatus(daemon_->client().Call(&v1::Shuttle::Stub::KeepAlive, keep),
                        StatusCode::kNotFound, {"session_id"}));

  absl::SleepFor(start + absl::Milliseconds(2500) - absl::Now());
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListSessionsResponse list, kept->ListSessions());
  ASSERT_EQ(list.sessions_size(), 1);
  EXPECT_EQ(list.sessions(0).client_name(), "it-kept");
  EXPECT_TRUE(list.sessions(0).own());
  KVS_ASSERT_OK(kept->ListRegions());
}

}  // namespace
}  // namespace kvshuttle::it
