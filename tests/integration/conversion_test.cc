// Conversions through a real daemon, checked byte for byte against ReferenceConvert: layout
// pairs with head/layer/token ranges and both placements in one batch (with their Attach
// events and stats), a block set → pool → block set round trip, and CancelJobs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "absl/strings/match.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

// One daemon for the suite; one executor thread, so a slow job keeps later ones queued.
class ConversionTest : public SharedDaemonTest<ConversionTest> {
 public:
  static DaemonConfig Config() { return WithFlags({"--cpu_threads=1"}); }
};

struct ConversionCase {
  const char* what;
  LayoutDesc src;
  LayoutDesc dst;
  int64_t src_blocks;
  int64_t dst_blocks;
  Placement src_placement;
  Placement dst_placement;
  AxisRange heads;
  AxisRange layers;
  int64_t token_count;
  std::vector<BlockPair> pairs;
};

std::vector<ConversionCase> ConversionCases() {
  const BlockShape s{2, 2, 16, 4, 8};
  return {
      {"nhd -> universal, shuffled pairs",
       MakeLayout(LayoutKind::kNHDStack, s),
       MakeLayout(LayoutKind::kUniversal, s),
       3,
       3,
       Placement::kStrided,
       Placement::kExplicit,
       {},
       {},
       0,
       {{0, 2, 0, 0}, {1, 0, 0, 0}, {2, 1, 0, 0}}},
      {"hnd -> operational_nhd, heads 2..4 of 8 to 1..3 of 4, layers 1..2 of 4 to 0..1 of 2",
       MakeLayout(LayoutKind::kHNDStack, {4, 2, 8, 8, 16}, DType::kBF16),
       MakeLayout(LayoutKind::kOperationalNHD, {2, 2, 8, 4, 16}, DType::kBF16),
       2,
       2,
       Placement::kExplicit,
       Placement::kStrided,
       {2, 1, 3},
       {1, 0, 2},
       0,
       {{0, 1, 0, 0}, {1, 0, 0, 0}}},
      {"universal nt 16 -> nhd nt 64: four blocks assembled into one",
       MakeLayout(LayoutKind::kUniversal, {1, 2, 16, 2, 8}, DType::kF32),
       MakeLayout(LayoutKind::kNHDStack, {1, 2, 64, 2, 8}, DType::kF32),
       4,
       2,
       Placement::kStrided,
       Placement::kStrided,
       {},
       {},
       16,
       {{0, 1, 0, 0}, {1, 1, 0, 16}, {2, 1, 0, 32}, {3, 1, 0, 48}}},
      {"operational_hnd -> hnd, MLA (no 1, nh 1, hd 24), tokens 8..15 -> 0..7",
       MakeLayout(LayoutKind::kOperationalHND, {3, 1, 16, 1, 24}, DType::kF8E4M3),
       MakeLayout(LayoutKind::kHNDStack, {3, 1, 8, 1, 24}, DType::kF8E4M3),
       2,
       2,
       Placement::kExplicit,
       Placement::kExplicit,
       {},
       {},
       8,
       {{0, 1, 8, 0}, {1, 0, 8, 0}}},
      {"operational_nhd -> operational_hnd, head 3 of 4 to 0 of 2, layer 0 to 1",
       MakeLayout(LayoutKind::kOperationalNHD, {2, 2, 16, 4, 8}, DType::kF64),
       MakeLayout(LayoutKind::kOperationalHND, {2, 2, 16, 2, 8}, DType::kF64),
       2,
       1,
       Placement::kStrided,
       Placement::kStrided,
       {3, 0, 1},
       {0, 1, 1},
       0,
       {{1, 0, 0, 0}}},
  };
}

TEST_F(ConversionTest, ConversionsMatchTheReferenceByteForByte) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-convert", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse before, client().GetStats());
  const std::vector<ConversionCase> cases = ConversionCases();
  std::vector<HostBlockSet> srcs, dsts;
  std::vector<TransferSpec> specs;
  std::vector<v1::Job> jobs;
  for (size_t i = 0; i < cases.size(); ++i) {
    const ConversionCase& c = cases[i];
    KVS_ASSERT_OK_AND_ASSIGN(
        HostBlockSet src,
        MakeHostBlockSet(*session, c.src, c.src_blocks, c.src_placement, 100 + i, /*lead=*/64 * i));
    KVS_ASSERT_OK_AND_ASSIGN(
        HostBlockSet dst,
        MakeHostBlockSet(*session, c.dst, c.dst_blocks, c.dst_placement, 200 + i, /*lead=*/128));
    TransferSpec spec = WholeBlocks(c.src, c.dst);
    spec.heads = c.heads;
    spec.layers = c.layers;
    spec.token_count = c.token_count;
    jobs.push_back(MakeJob(src.endpoint(), dst.endpoint(), spec, c.pairs));
    specs.push_back(spec);
    srcs.push_back(std::move(src));
    dsts.push_back(std::move(dst));
  }
  std::vector<std::vector<uint8_t>> expected;
  for (size_t i = 0; i < cases.size(); ++i) {
    KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> e,
                             ExpectedAfter(srcs[i], dsts[i], specs[i], cases[i].pairs));
    expected.push_back(std::move(e));
  }

  v1::SubmitBatchRequest request;
  for (const v1::Job& job : jobs) *request.add_jobs() = job;
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session->SubmitBatch(request));
  ASSERT_EQ(submitted.job_ids_size(), static_cast<int>(cases.size()));
  const std::vector<uint64_t> ids(submitted.job_ids().begin(), submitted.job_ids().end());
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done, session->Wait(ids, absl::Seconds(20)));
  ASSERT_TRUE(done.all_done()) << done.DebugString();
  uint64_t bytes = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].what);
    const v1::JobResult& r = done.results(i);
    EXPECT_EQ(r.job_id(), ids[i]);
    EXPECT_EQ(r.state(), v1::JOB_DONE) << r.DebugString();
    EXPECT_EQ(r.code(), 0);
    EXPECT_EQ(r.executor(), "cpu");
    EXPECT_GT(r.bytes(), 0u);
    bytes += r.bytes();
    EXPECT_TRUE(BytesEqual(dsts[i].data(), expected[i]));
  }

  // The Attach stream delivered one job_done per job.
  ASSERT_TRUE(session->WaitForEvents(cases.size(), absl::Seconds(5)));
  std::set<uint64_t> event_ids;
  for (const v1::JobResult& r : session->TakeEvents()) {
    EXPECT_EQ(r.state(), v1::JOB_DONE);
    event_ids.insert(r.job_id());
  }
  EXPECT_EQ(event_ids, std::set<uint64_t>(ids.begin(), ids.end()));

  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse after, client().GetStats());
  EXPECT_EQ(after.jobs_done(), before.jobs_done() + cases.size());
  EXPECT_EQ(after.bytes_moved(), before.bytes_moved() + bytes);
  EXPECT_EQ(after.jobs_failed(), before.jobs_failed());
}

TEST_F(ConversionTest, BlockSetToPoolToBlockSetRoundTrip) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-pool-trip", /*attach=*/true));
  const BlockShape shape{2, 2, 16, 4, 8};
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, shape, DType::kBF16);
  const LayoutDesc hnd = MakeLayout(LayoutKind::kHNDStack, shape, DType::kBF16);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, shape, DType::kBF16);
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, nhd, 4, Placement::kStrided, 11));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, hnd, 4, Placement::kExplicit, 12));
  KVS_ASSERT_OK(session->CreatePool("it-trip", LayoutToProto(uni), 16, v1::MEMORY_HOST));
  KVS_ASSERT_OK(session->AllocateBlocks("it-trip", 5));  // the round trip uses ids 5..8
  KVS_ASSERT_OK_AND_ASSIGN(v1::AllocateBlocksResponse blocks,
                           session->AllocateBlocks("it-trip", 4));

  std::vector<BlockPair> offload, reload, direct;
  const int64_t order[] = {2, 0, 3, 1};
  for (int64_t i = 0; i < 4; ++i) {
    offload.push_back({i, blocks.block_ids(i), 0, 0});
    reload.push_back({blocks.block_ids(i), order[i], 0, 0});
    direct.push_back({i, order[i], 0, 0});
  }
  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected,
                           ExpectedAfter(src, dst, WholeBlocks(nhd, hnd), direct));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse first,
                           RunBatch(*session, {MakeJob(src.endpoint(), PoolEndpoint("it-trip"),
                                                       WholeBlocks(nhd, uni), offload)}));
  ASSERT_TRUE(first.all_done());
  EXPECT_EQ(first.results(0).state(), v1::JOB_DONE) << first.DebugString();
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse second,
                           RunBatch(*session, {MakeJob(PoolEndpoint("it-trip"), dst.endpoint(),
                                                       WholeBlocks(uni, hnd), reload)}));
  ASSERT_TRUE(second.all_done());
  EXPECT_EQ(second.results(0).state(), v1::JOB_DONE) << second.DebugString();
  EXPECT_TRUE(BytesEqual(dst.data(), expected));
  KVS_ASSERT_OK(session->DestroyPool("it-trip"));
}

// Host-only jobs are never "launched" on a GPU stream: Wait(until_launched) returns when they
// finished, with the bytes in place.
TEST_F(ConversionTest, WaitUntilLaunchedOnHostJobsReturnsWhenTheyFinished) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-until-launched", /*attach=*/false));
  const BlockShape shape{2, 2, 16, 4, 8};
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, shape);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, shape);
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, nhd, 2, Placement::kStrided, 21));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 22));
  const std::vector<BlockPair> pairs = IdentityPairs(2);
  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected,
                           ExpectedAfter(src, dst, WholeBlocks(nhd, uni), pairs));
  v1::SubmitBatchRequest request;
  *request.add_jobs() = MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(nhd, uni), pairs);
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, session->SubmitBatch(request));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      session->Wait(submitted.job_ids(), absl::Seconds(20), /*until_launched=*/true));
  ASSERT_TRUE(done.all_done()) << done.DebugString();
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE);
  EXPECT_FALSE(done.results(0).launched());
  EXPECT_TRUE(BytesEqual(dst.data(), expected));
}

TEST_F(ConversionTest, CancelJobsDropsQueuedJobs) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-cancel", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {1, 2, 16, 2, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {1, 2, 16, 2, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, nhd, 1, Placement::kStrided, 5));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 1, Placement::kStrided, 6));
  const std::vector<uint8_t> untouched = dst.Snapshot();
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse before, client().GetStats());

  slow->PoisonDst();
  v1::SubmitBatchRequest busy;
  *busy.add_jobs() = slow->Job(absl::Milliseconds(600));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse running, session->SubmitBatch(busy));
  ASSERT_TRUE(WaitUntil([&] { return CpuQueueDepth(client()) == 0; }, absl::Seconds(2)));
  v1::SubmitBatchRequest queued;
  *queued.add_jobs() =
      MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(nhd, uni), IdentityPairs(1));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse waiting, session->SubmitBatch(queued));
  const uint64_t busy_id = running.job_ids(0);
  const uint64_t queued_id = waiting.job_ids(0);

  KVS_ASSERT_OK_AND_ASSIGN(v1::CancelJobsResponse cancelled,
                           session->CancelJobs(std::vector<uint64_t>{queued_id}));
  EXPECT_EQ(std::vector<uint64_t>(cancelled.cancelled().begin(), cancelled.cancelled().end()),
            std::vector<uint64_t>{queued_id});
  EXPECT_TRUE(HasStatus(session->CancelJobs(std::vector<uint64_t>{424242}), StatusCode::kNotFound,
                        {"job_ids", "424242"}));

  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      session->Wait(std::vector<uint64_t>{busy_id, queued_id}, absl::Seconds(20)));
  ASSERT_TRUE(done.all_done()) << done.DebugString();
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE);
  EXPECT_EQ(done.results(1).state(), v1::JOB_CANCELLED);
  EXPECT_EQ(done.results(1).code(), static_cast<int>(StatusCode::kCancelled));
  EXPECT_TRUE(absl::StrContains(done.results(1).message(), "cancelled before launch"))
      << done.results(1).message();
  EXPECT_TRUE(BytesEqual(dst.data(), untouched));
  EXPECT_TRUE(slow->DstIsConverted());

  // Cancelling a finished job cancels nothing.
  KVS_ASSERT_OK_AND_ASSIGN(cancelled, session->CancelJobs(std::vector<uint64_t>{busy_id}));
  EXPECT_EQ(cancelled.cancelled_size(), 0);
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse after, client().GetStats());
  EXPECT_EQ(after.jobs_cancelled(), before.jobs_cancelled() + 1);
  EXPECT_EQ(after.jobs_done(), before.jobs_done() + 1);
}

// A running job shows JOB_RUNNING and cannot be cancelled: CancelJobs and the executor's start
// race on one CancelToken, and only a job that has not started is listed as cancelled.
TEST_F(ConversionTest, CancelJobsStopsARunningJobAtAChunkBoundary) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-cancel-running", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  v1::SubmitBatchRequest busy;
  *busy.add_jobs() = slow->Job(absl::Seconds(3));
  KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse running, session->SubmitBatch(busy));
  const std::vector<uint64_t> id = {running.job_ids(0)};
  ASSERT_TRUE(WaitUntil([&] { return CpuQueueDepth(client()) == 0; }, absl::Seconds(2)));
  absl::SleepFor(absl::Milliseconds(50));
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse mid, session->Wait(id, absl::Milliseconds(1)));
  EXPECT_EQ(mid.results(0).state(), v1::JOB_RUNNING);
  const absl::Time asked = absl::Now();
  KVS_ASSERT_OK_AND_ASSIGN(v1::CancelJobsResponse cancelled, session->CancelJobs(id));
  EXPECT_EQ(cancelled.cancelled_size(), 0) << "a running job is not 'cancelled before it started'";
  ASSERT_EQ(cancelled.stopping_size(), 1);
  EXPECT_EQ(cancelled.stopping(0), id[0]);
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done, session->Wait(id, absl::Seconds(20)));
  EXPECT_LT(absl::Now() - asked, absl::Seconds(1)) << "it stops at a chunk boundary, not at its end";
  EXPECT_EQ(done.results(0).state(), v1::JOB_CANCELLED);
  EXPECT_EQ(done.results(0).code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_THAT(done.results(0).message(), ::testing::HasSubstr("stopped while running"));
  // The executor is free again: a new job runs to completion.
  slow->PoisonDst();
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse after, RunBatch(*session, {slow->Job(absl::Milliseconds(50))}));
  EXPECT_EQ(after.results(0).state(), v1::JOB_DONE);
  EXPECT_TRUE(slow->DstIsConverted());
}

}  // namespace
}  // namespace kvshuttle::it
