// DESIGN §4.8: session B cannot list, use, release or wait on session A's regions, block sets
// and jobs — every attempt is NOT_FOUND naming the field — and A's things keep working.
#include <gtest/gtest.h>

#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

TEST(IsolationTest, SessionBCannotSeeOrTouchSessionAsIds) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DaemonProcess> daemon, DaemonProcess::Start());
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> a,
                           Session::Open(daemon->client(), "it-a", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> b_client, daemon->Connect());
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> b,
                           Session::Open(*b_client, "it-b", /*attach=*/true));

  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet a_src,
                           MakeHostBlockSet(*a, nhd, 2, Placement::kStrided, 1, 0, "a-src"));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet a_dst,
                           MakeHostBlockSet(*a, uni, 2, Placement::kExplicit, 2));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet b_dst,
                           MakeHostBlockSet(*b, uni, 2, Placement::kStrided, 3));
  const TransferSpec whole = WholeBlocks(nhd, uni);
  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> a_expected,
                           ExpectedAfter(a_src, a_dst, whole, IdentityPairs(2)));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse a_done,
      RunBatch(*a, {MakeJob(a_src.endpoint(), a_dst.endpoint(), whole, IdentityPairs(2))}));
  ASSERT_TRUE(a_done.all_done());
  const uint64_t a_job = a_done.results(0).job_id();
  const std::vector<uint8_t> b_untouched = b_dst.Snapshot();

  // List: B sees only its own.
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse b_regions, b->ListRegions());
  ASSERT_EQ(b_regions.regions_size(), 1);
  EXPECT_EQ(b_regions.regions(0).region_id(), b_dst.region_id);
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListBlockSetsResponse b_sets, b->ListBlockSets());
  ASSERT_EQ(b_sets.block_sets_size(), 1);
  EXPECT_EQ(b_sets.block_sets(0).block_set_id(), b_dst.block_set_id);

  // Release: NOT_FOUND, as for ids that never existed.
  EXPECT_TRUE(HasStatus(b->UnregisterRegion(a_src.region_id), StatusCode::kNotFound,
                        {"region_id", "not a region of this session"}));
  EXPECT_TRUE(HasStatus(b->UnregisterBlockSet(a_src.block_set_id), StatusCode::kNotFound,
                        {"block_set_id", "not a block set of this session"}));

  // Use: as a job endpoint or under a new block set.
  v1::SubmitBatchRequest steal;
  *steal.add_jobs() = MakeJob(a_src.endpoint(), b_dst.endpoint(), whole, IdentityPairs(2));
  EXPECT_TRUE(HasStatus(b->SubmitBatch(steal), StatusCode::kNotFound,
                        {"jobs[0].src.block_set_id", "not a block set of this session"}));
  v1::SubmitBatchRequest scribble;
  *scribble.add_jobs() =
      MakeJob(b_dst.endpoint(), a_dst.endpoint(), WholeBlocks(uni, uni), IdentityPairs(2));
  EXPECT_TRUE(
      HasStatus(b->SubmitBatch(scribble), StatusCode::kNotFound, {"jobs[0].dst.block_set_id"}));
  v1::StridedPlacement over_a;
  v1::SlotBase* slot = over_a.add_slots();
  slot->set_region_id(a_dst.region_id);
  slot->set_offset(0);
  over_a.set_block_stride(0);
  EXPECT_TRUE(HasStatus(b->RegisterBlockSet(LayoutToProto(uni), 1, over_a), StatusCode::kNotFound,
                        {"region_id", "not a region of this session"}));

  // Jobs: B cannot wait on or cancel A's.
  EXPECT_TRUE(HasStatus(b->Wait(std::vector<uint64_t>{a_job}, absl::Seconds(1)),
                        StatusCode::kNotFound, {"job_ids", "not a job of this session"}));
  EXPECT_TRUE(
      HasStatus(b->CancelJobs(std::vector<uint64_t>{a_job}), StatusCode::kNotFound, {"job_ids"}));

  // Sessions: B's list marks only B's own and shows no ids.
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListSessionsResponse sessions, b->ListSessions());
  ASSERT_EQ(sessions.sessions_size(), 2);
  for (const v1::SessionSummary& s : sessions.sessions()) {
    EXPECT_EQ(s.own(), s.client_name() == "it-b");
    EXPECT_EQ(s.DebugString().find(a->id()), std::string::npos);
  }

  // A is unaffected: everything listed, the old job still visible, a new one converts.
  EXPECT_TRUE(BytesEqual(b_dst.data(), b_untouched));
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse a_regions, a->ListRegions());
  EXPECT_EQ(a_regions.regions_size(), 2);
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListBlockSetsResponse a_sets, a->ListBlockSets());
  EXPECT_EQ(a_sets.block_sets_size(), 2);
  KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse again,
                           a->Wait(std::vector<uint64_t>{a_job}, absl::Seconds(1)));
  EXPECT_EQ(again.results(0).state(), v1::JOB_DONE);
  EXPECT_TRUE(BytesEqual(a_dst.data(), a_expected));
  FillRandom(a_src.data(), a_src.bytes(), 99);
  KVS_ASSERT_OK_AND_ASSIGN(a_expected, ExpectedAfter(a_src, a_dst, whole, IdentityPairs(2)));
  KVS_ASSERT_OK_AND_ASSIGN(
      a_done, RunBatch(*a, {MakeJob(a_src.endpoint(), a_dst.endpoint(), whole, IdentityPairs(2))}));
  EXPECT_EQ(a_done.results(0).state(), v1::JOB_DONE);
  EXPECT_TRUE(BytesEqual(a_dst.data(), a_expected));

  // Closing B leaves A's session and mappings alone.
  const int a_maps = daemon->CountMappings("/dev/shm" + a_src.shm->name());
  b.reset();
  KVS_ASSERT_OK_AND_ASSIGN(a_regions, a->ListRegions());
  EXPECT_EQ(a_regions.regions_size(), 2);
  EXPECT_EQ(daemon->CountMappings("/dev/shm" + a_src.shm->name()), a_maps);
  EXPECT_EQ(daemon->CountMappings("/dev/shm" + b_dst.shm->name()), 0);
}

}  // namespace
}  // namespace kvshuttle::it
