// DESIGN §4 cases 1–5 against a GPU-less daemon: malformed CUDA IPC handles, shm regions past
// their object, offsets and strides near UINT64_MAX, unknown GPU UUIDs and duplicate names.
// Every rejection has its exact code and names the field; the daemon stays healthy, maps no
// extra memory, opens no extra descriptors and runs no job.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();

class HostileInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon = DaemonProcess::Start();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
    const absl::Status warmed = WarmUpRegistration(daemon_->client());
    ASSERT_TRUE(warmed.ok()) << warmed;
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(daemon_, nullptr) << "the daemon did not start";
    absl::StatusOr<std::unique_ptr<Session>> session =
        Session::Open(daemon_->client(), "it-hostile", /*attach=*/true);
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = *std::move(session);
    fds_before_ = daemon_->CountOpenFds();
    maps_before_ = daemon_->CountMappings();
  }
  void TearDown() override {
    session_.reset();
    if (HasFailure() && daemon_ != nullptr) {
      std::printf("--- kvshuttled output ---\n%s\n", daemon_->Stderr().c_str());
    }
  }

  // The daemon answers, is SERVING and holds no more descriptors or shm mappings than when
  // the test started.
  void ExpectHealthyAndNoLeaks() {
    absl::StatusOr<health_v1::HealthCheckResponse::ServingStatus> health =
        daemon_->client().Health();
    ASSERT_TRUE(health.ok()) << health.status() << "\n" << daemon_->Stderr();
    EXPECT_EQ(*health, health_v1::HealthCheckResponse::SERVING);
    EXPECT_TRUE(daemon_->running());
    EXPECT_EQ(daemon_->CountOpenFds(), fds_before_);
    EXPECT_EQ(daemon_->CountMappings(), maps_before_);
  }

  absl::StatusOr<v1::RegisterRegionResponse> RegisterIpc(const std::string& handle,
                                                         const std::string& uuid, uint64_t offset,
                                                         uint64_t size) {
    return session_->RegisterCudaIpcRegion(handle, uuid, offset, size);
  }

  static DaemonProcess* daemon_;
  std::unique_ptr<Session> session_;
  int fds_before_ = 0;
  int maps_before_ = 0;
};

DaemonProcess* HostileInputTest::daemon_ = nullptr;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::string bytes(n, '\0');
  FillRandom(bytes.data(), n, seed);
  return bytes;
}

// §4.1
TEST_F(HostileInputTest, IpcHandlesOfWrongLengthAreInvalidArgument) {
  for (size_t length : {size_t{0}, size_t{63}, size_t{65}, size_t{1} << 20}) {
    SCOPED_TRACE(absl::StrCat("handle of ", length, " bytes"));
    const std::string handle = RandomBytes(length, length);
    EXPECT_TRUE(HasStatus(RegisterIpc(handle, "GPU-00000000-0000-0000-0000-000000000000", 0, 4096),
                          StatusCode::kInvalidArgument,
                          {"cuda_ipc.handle", absl::StrCat(length, " bytes"), "exactly 64"}));
  }
  ExpectHealthyAndNoLeaks();
}

TEST_F(HostileInputTest, IpcSizeZeroAndOffsetOverflowAreRejected) {
  const std::string handle = RandomBytes(64, 1);
  const std::string uuid = "GPU-00000000-0000-0000-0000-000000000000";
  EXPECT_TRUE(
      HasStatus(RegisterIpc(handle, uuid, 0, 0), StatusCode::kInvalidArgument, {"cuda_ipc.size"}));
  EXPECT_TRUE(HasStatus(RegisterIpc(handle, uuid, kU64Max, 1), StatusCode::kOutOfRange,
                        {"cuda_ipc", "overflows 64 bits"}));
  EXPECT_TRUE(HasStatus(RegisterIpc(handle, uuid, 1, kU64Max), StatusCode::kOutOfRange,
                        {"cuda_ipc", "overflows 64 bits"}));
  ExpectHealthyAndNoLeaks();
}

// §4.4 (GPU-less daemon: no UUID is known).
TEST_F(HostileInputTest, UnknownGpuUuidIsFailedPrecondition) {
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, daemon_->client().GetInfo());
  for (const std::string& uuid : {std::string("GPU-deadbeef-0000-0000-0000-000000000000"),
                                  std::string(""), std::string(300, 'x')}) {
    EXPECT_TRUE(HasStatus(RegisterIpc(RandomBytes(64, 2), uuid, 0, 4096),
                          StatusCode::kFailedPrecondition,
                          {"gpu uuid", "is not a GPU of this daemon"}));
  }
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse regions, session_->ListRegions());
  EXPECT_EQ(regions.regions_size(), 0);
  ExpectHealthyAndNoLeaks();
}

// §4.2
TEST_F(HostileInputTest, ShmRegionBeyondItsObjectIsOutOfRangeAndMapsNothing) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(65536));
  const std::string needle = "/dev/shm" + shm->name();
  struct Case {
    uint64_t offset, size;
  };
  for (const Case& c :
       {Case{0, 65537}, Case{65536, 1}, Case{61440, 8192}, Case{uint64_t{1} << 40, 4096},
        Case{0, kU64Max}, Case{kU64Max - 4096, 4096}}) {
    SCOPED_TRACE(absl::StrCat("offset ", c.offset, " size ", c.size));
    EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion(shm->name(), c.offset, c.size),
                          StatusCode::kOutOfRange,
                          {"shm: offset", "exceeds the size of shm object", "65536 bytes"}));
    EXPECT_EQ(daemon_->CountMappings(needle), 0);
  }
  // offset + size wraps around 64 bits.
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion(shm->name(), kU64Max, 1),
                        StatusCode::kOutOfRange, {"shm", "overflows 64 bits"}));
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion(shm->name(), 2, kU64Max - 1),
                        StatusCode::kOutOfRange, {"shm", "overflows 64 bits"}));
  ExpectHealthyAndNoLeaks();
}

TEST_F(HostileInputTest, MalformedShmNamesAndSizesAreRejected) {
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion("no-slash", 0, 4096),
                        StatusCode::kInvalidArgument, {"shm.name", "does not start with '/'"}));
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion("/a/../../etc/passwd", 0, 4096),
                        StatusCode::kInvalidArgument, {"shm.name", "'/' after the first byte"}));
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion(std::string("/a\0b", 4), 0, 4096),
                        StatusCode::kInvalidArgument, {"shm.name", "NUL"}));
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion("/" + std::string(300, 'n'), 0, 4096),
                        StatusCode::kInvalidArgument, {"shm.name", "longer than 255"}));
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion("/..", 0, 4096),
                        StatusCode::kInvalidArgument, {"shm.name", "names no object"}));
  EXPECT_TRUE(HasStatus(
      session_->RegisterHostShmRegion(absl::StrCat("/kvs-it-missing-", getpid()), 0, 4096),
      StatusCode::kNotFound, {"shm.name", "shm_open"}));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(4096));
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion(shm->name(), 0, 0),
                        StatusCode::kInvalidArgument, {"shm.size"}));
  v1::RegisterRegionRequest neither;
  neither.set_session_id(session_->id());
  EXPECT_TRUE(HasStatus(daemon_->client().Call(&v1::Shuttle::Stub::RegisterRegion, neither),
                        StatusCode::kInvalidArgument, {"memory"}));
  ExpectHealthyAndNoLeaks();
}

// §4.3: block sets whose addresses would leave their region or wrap around.
TEST_F(HostileInputTest, BlockSetOffsetsAndStridesNearUint64MaxAreRejected) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(65536));
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse region,
                           session_->RegisterHostShmRegion(shm->name(), 0, 65536));
  const uint64_t rid = region.region().region_id();
  // Universal block of 2*2*16*4*8 f16 = 8 KiB; NHD chunk of 16*4*8 f16 = 1 KiB.
  const v1::Layout uni = LayoutToProto(MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8}));
  const v1::Layout nhd = LayoutToProto(MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8}));
  auto strided = [&](std::vector<uint64_t> offsets, uint64_t stride) {
    v1::StridedPlacement p;
    for (uint64_t offset : offsets) {
      v1::SlotBase* s = p.add_slots();
      s->set_region_id(rid);
      s->set_offset(offset);
    }
    p.set_block_stride(stride);
    return p;
  };
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 2, strided({0}, kU64Max)),
                        StatusCode::kOutOfRange, {"strided.block_stride", "overflows 64 bits"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 3, strided({0}, kU64Max / 2)),
                        StatusCode::kOutOfRange, {"strided.block_stride", "overflows 64 bits"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 1, strided({kU64Max - 10}, 8192)),
                        StatusCode::kOutOfRange, {"strided.slots[0]", "exceeds region"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 2, strided({0}, uint64_t{1} << 40)),
                        StatusCode::kOutOfRange, {"strided.slots[0]", "exceeds region"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 9, strided({0}, 8192)),
                        StatusCode::kOutOfRange, {"strided.slots[0]", "65536"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, kU32Max, strided({0}, 0)),
                        StatusCode::kInvalidArgument, {"num_blocks", "4294967295"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 0, strided({0}, 8192)),
                        StatusCode::kInvalidArgument, {"num_blocks: 0"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(nhd, 1, strided({0, 1024, 2048}, 4096)),
                        StatusCode::kInvalidArgument, {"strided.slots", "3 entries", "needs 4"}));
  // The last slot of an NHD stack overflows only through its own offset.
  EXPECT_TRUE(
      HasStatus(session_->RegisterBlockSet(nhd, 2, strided({0, 1024, 2048, kU64Max - 1023}, 4096)),
                StatusCode::kOutOfRange, {"strided.slots[3]"}));

  v1::ExplicitPlacement table;
  for (uint64_t offset : {uint64_t{0}, kU64Max}) {
    v1::SlotBase* a = table.add_addresses();
    a->set_region_id(rid);
    a->set_offset(offset);
  }
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 2, table), StatusCode::kOutOfRange,
                        {"explicit_table.addresses[1]", "exceeds region"}));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 3, table), StatusCode::kInvalidArgument,
                        {"explicit_table.addresses", "2 entries"}));
  table.mutable_addresses(1)->set_region_id(123456789);
  table.mutable_addresses(1)->set_offset(0);
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(uni, 2, table), StatusCode::kNotFound,
                        {"region_id", "123456789"}));

  v1::Layout bad = uni;
  bad.mutable_shape()->set_nh(0);
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(bad, 1, strided({0}, 8192)),
                        StatusCode::kInvalidArgument, {"layout.shape.nh"}));
  bad = uni;
  bad.mutable_shape()->set_nt(kU32Max);
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(bad, 1, strided({0}, 8192)),
                        StatusCode::kInvalidArgument, {"layout.shape"}));
  bad = uni;
  bad.set_dtype(v1::DTYPE_UNSPECIFIED);
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(bad, 1, strided({0}, 8192)),
                        StatusCode::kInvalidArgument, {"layout.dtype"}));

  KVS_ASSERT_OK_AND_ASSIGN(v1::ListBlockSetsResponse sets, session_->ListBlockSets());
  EXPECT_EQ(sets.block_sets_size(), 0);
  KVS_ASSERT_OK(session_->UnregisterRegion(rid));
  ExpectHealthyAndNoLeaks();
}

// §4.3: jobs whose block ids, token offsets or ranges leave a side; a batch is all or nothing.
TEST_F(HostileInputTest, OutOfRangeJobsAreRejectedAndNothingRuns) {
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session_, nhd, 2, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session_, uni, 2, Placement::kStrided, 2));
  const std::vector<uint8_t> untouched = dst.Snapshot();
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse before, daemon_->client().GetStats());
  const TransferSpec whole = WholeBlocks(nhd, uni);
  const v1::Job good = MakeJob(src.endpoint(), dst.endpoint(), whole, IdentityPairs(2));

  struct Case {
    const char* what;
    std::function<void(v1::Job&)> mutate;
    StatusCode code;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {"src block UINT32_MAX",
       [](v1::Job& j) { j.mutable_pairs(0)->set_src_block(kU32Max); },
       StatusCode::kOutOfRange,
       {"jobs[1].pairs[0].src_block", "4294967295"}},
      {"dst block = num_blocks",
       [](v1::Job& j) { j.mutable_pairs(1)->set_dst_block(2); },
       StatusCode::kOutOfRange,
       {"jobs[1].pairs[1].dst_block", "2"}},
      {"src token offset UINT32_MAX",
       [](v1::Job& j) { j.mutable_pairs(0)->set_src_token_offset(kU32Max); },
       StatusCode::kOutOfRange,
       {"jobs[1].pairs[0].src_token_offset"}},
      {"dst token offset 1 with all tokens",
       [](v1::Job& j) { j.mutable_pairs(0)->set_dst_token_offset(1); },
       StatusCode::kOutOfRange,
       {"jobs[1].pairs[0].dst_token_offset"}},
      {"heads.src_offset UINT32_MAX",
       [](v1::Job& j) { j.mutable_heads()->set_src_offset(kU32Max); },
       StatusCode::kOutOfRange,
       {"jobs[1].heads.src_offset", "4294967295"}},
      {"heads.count UINT32_MAX",
       [](v1::Job& j) { j.mutable_heads()->set_count(kU32Max); },
       StatusCode::kOutOfRange,
       {"jobs[1].heads.count"}},
      {"layers.dst_offset 2",
       [](v1::Job& j) { j.mutable_layers()->set_dst_offset(2); },
       StatusCode::kOutOfRange,
       {"jobs[1].layers.dst_offset"}},
      {"token_count UINT32_MAX",
       [](v1::Job& j) { j.set_token_count(kU32Max); },
       StatusCode::kOutOfRange,
       {"jobs[1].token_count"}},
      {"unknown block set",
       [](v1::Job& j) { j.mutable_dst()->set_block_set_id(kU64Max); },
       StatusCode::kNotFound,
       {"jobs[1].dst.block_set_id"}},
      {"unknown pool",
       [](v1::Job& j) { j.mutable_src()->set_pool("nope"); },
       StatusCode::kNotFound,
       {"jobs[1].src", "nope"}},
      {"no endpoint",
       [](v1::Job& j) { j.mutable_src()->Clear(); },
       StatusCode::kInvalidArgument,
       {"jobs[1].src.target"}},
      {"unknown backend",
       [](v1::Job& j) { j.set_backend(static_cast<v1::Backend>(77)); },
       StatusCode::kInvalidArgument,
       {"jobs[1].backend"}},
      {"completion event handle of 63 bytes",
       [](v1::Job& j) { j.mutable_completion_event()->set_handle(std::string(63, '\x5a')); },
       StatusCode::kInvalidArgument,
       {"jobs[1].completion_event.handle", "63 bytes"}},
      {"empty completion event handle",
       [](v1::Job& j) { j.mutable_completion_event(); },
       StatusCode::kInvalidArgument,
       {"jobs[1].completion_event.handle", "0 bytes"}},
      {"completion event on a host-only job",
       [](v1::Job& j) { j.mutable_completion_event()->set_handle(std::string(64, '\x5a')); },
       StatusCode::kFailedPrecondition,
       {"jobs[1].completion_event", "CPU executor"}},
      {"start event handle of 65 bytes",
       [](v1::Job& j) { j.mutable_start_event()->set_handle(std::string(65, '\x5a')); },
       StatusCode::kInvalidArgument,
       {"jobs[1].start_event.handle", "65 bytes"}},
      {"empty start event handle",
       [](v1::Job& j) { j.mutable_start_event(); },
       StatusCode::kInvalidArgument,
       {"jobs[1].start_event.handle", "0 bytes"}},
      {"start event on a host-only job",
       [](v1::Job& j) { j.mutable_start_event()->set_handle(std::string(64, '\x5a')); },
       StatusCode::kFailedPrecondition,
       {"jobs[1].start_event", "CPU executor"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::SubmitBatchRequest request;
    *request.add_jobs() = good;  // jobs[0] is fine: the batch is still refused whole
    v1::Job bad = good;
    c.mutate(bad);
    *request.add_jobs() = bad;
    absl::StatusOr<v1::SubmitBatchResponse> submitted = session_->SubmitBatch(request);
    ::testing::AssertionResult result = HasStatus(submitted, c.code, {});
    for (const std::string& f : c.fragments) {
      if (result) {
        result = HasStatus(submitted, c.code, {f});
      }
    }
    EXPECT_TRUE(result);
  }
  // A dtype mismatch between the sides.
  KVS_ASSERT_OK_AND_ASSIGN(
      HostBlockSet other,
      MakeHostBlockSet(*session_,
                       MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8}, DType::kBF16), 2,
                       Placement::kStrided, 3));
  v1::SubmitBatchRequest mismatch;
  *mismatch.add_jobs() = MakeJob(src.endpoint(), other.endpoint(), whole, IdentityPairs(2));
  EXPECT_TRUE(HasStatus(session_->SubmitBatch(mismatch), StatusCode::kInvalidArgument,
                        {"jobs[0]", "dtype"}));

  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse after, daemon_->client().GetStats());
  EXPECT_EQ(after.jobs_done(), before.jobs_done());
  EXPECT_EQ(after.jobs_failed(), before.jobs_failed());
  EXPECT_EQ(after.jobs_cancelled(), before.jobs_cancelled());
  EXPECT_EQ(after.bytes_moved(), before.bytes_moved());
  EXPECT_TRUE(BytesEqual(dst.data(), untouched));
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListSessionsResponse sessions, session_->ListSessions());
  for (const v1::SessionSummary& s : sessions.sessions()) {
    if (s.own()) {
      EXPECT_EQ(s.jobs_pending(), 0u);
    }
  }
}

// §4.5
TEST_F(HostileInputTest, DuplicateNamesAreAlreadyExists) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(65536));
  KVS_ASSERT_OK(session_->RegisterHostShmRegion(shm->name(), 0, 4096, "kv"));
  const int maps = daemon_->CountMappings();
  EXPECT_TRUE(HasStatus(session_->RegisterHostShmRegion(shm->name(), 4096, 4096, "kv"),
                        StatusCode::kAlreadyExists, {"name", "\"kv\""}));
  EXPECT_EQ(daemon_->CountMappings(), maps);  // the refused mapping was undone

  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {1, 2, 16, 4, 8});
  KVS_ASSERT_OK(MakeHostBlockSet(*session_, uni, 2, Placement::kStrided, 1, 0, "r1").status());
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse regions, session_->ListRegions());
  v1::StridedPlacement placement;
  v1::SlotBase* slot = placement.add_slots();
  slot->set_region_id(regions.regions(0).region_id());
  slot->set_offset(0);
  placement.set_block_stride(0);
  KVS_ASSERT_OK(session_->RegisterBlockSet(LayoutToProto(uni), 1, placement, "cache"));
  EXPECT_TRUE(HasStatus(session_->RegisterBlockSet(LayoutToProto(uni), 1, placement, "cache"),
                        StatusCode::kAlreadyExists, {"name", "block set \"cache\""}));

  // Pool names are daemon-wide: another session cannot take the name either.
  KVS_ASSERT_OK(session_->CreatePool("it-dup", LayoutToProto(uni), 2, v1::MEMORY_HOST));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other,
                           Session::Open(daemon_->client(), "it-other", /*attach=*/false));
  EXPECT_TRUE(HasStatus(other->CreatePool("it-dup", LayoutToProto(uni), 2, v1::MEMORY_HOST),
                        StatusCode::kAlreadyExists, {"name", "pool \"it-dup\""}));
  KVS_ASSERT_OK(other->DestroyPool("it-dup"));  // shared by name: any session may destroy it

  // Names longer than 128 bytes are refused before anything is mapped.
  EXPECT_TRUE(
      HasStatus(session_->RegisterHostShmRegion(shm->name(), 0, 4096, std::string(129, 'n')),
                StatusCode::kInvalidArgument, {"name", "129 bytes"}));
}

}  // namespace
}  // namespace kvshuttle::it
