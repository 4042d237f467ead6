// Fault injection (issue #7, item 4), each against its own daemon: the daemon SIGKILLed and
// restarted on the same socket while clients keep their Client (the channel reconnects) and
// reopen and re-register their sessions; a failing launch injected on one session
// (--fault_fail_jobs_of_client, test only) while another keeps converting; and a shm object
// freed and re-created under the same name (DESIGN §4.9 on host memory). A client SIGKILLed
// mid-batch is lifecycle_test.cc, a full queue flood_test.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/reference.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

const BlockShape kShape{2, 2, 16, 4, 8};

class FaultInjectionTest : public ::testing::Test {
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

  std::unique_ptr<DaemonProcess> daemon_;  // declared first: outlives the sessions below
};

// Registers `set`'s shm object again, in `session`, as a new region with an explicit block set
// over the same pieces (what a client does after its daemon restarted); updates the ids.
absl::Status Reregister(Session& session, HostBlockSet& set) {
  absl::StatusOr<v1::RegisterRegionResponse> region =
      session.RegisterHostShmRegion(set.shm->name(), 0, set.bytes());
  if (!region.ok()) return region.status();
  set.region_id = region->region().region_id();
  v1::ExplicitPlacement table;
  for (uint64_t offset : set.offsets) {
    v1::SlotBase* address = table.add_addresses();
    address->set_region_id(set.region_id);
    address->set_offset(offset);
  }
  absl::StatusOr<v1::RegisterBlockSetResponse> registered = session.RegisterBlockSet(
      LayoutToProto(set.layout), static_cast<uint32_t>(set.num_blocks), table);
  if (!registered.ok()) return registered.status();
  set.block_set_id = registered->block_set().block_set_id();
  return absl::OkStatus();
}

// Converts every block of `src` into `dst` through `session` and checks dst byte for byte.
::testing::AssertionResult ConvertsByteExact(Session& session, const HostBlockSet& src,
                                             const HostBlockSet& dst, uint64_t seed) {
  FillRandom(src.data(), src.bytes(), seed);
  const TransferSpec spec = WholeBlocks(src.layout, dst.layout);
  const std::vector<BlockPair> pairs = IdentityPairs(src.num_blocks);
  absl::StatusOr<std::vector<uint8_t>> expected = ExpectedAfter(src, dst, spec, pairs);
  if (!expected.ok()) return ::testing::AssertionFailure() << expected.status();
  absl::StatusOr<v1::WaitResponse> done =
      RunBatch(session, {MakeJob(src.endpoint(), dst.endpoint(), spec, pairs)});
  if (!done.ok()) return ::testing::AssertionFailure() << "batch: " << done.status();
  if (!done->all_done() || done->results(0).state() != v1::JOB_DONE) {
    return ::testing::AssertionFailure() << done->DebugString();
  }
  return BytesEqual(dst.data(), *expected);
}

// Issue #7.4: daemon SIGKILL and restart. The socket file the killed daemon left is replaced,
// the clients' channels reconnect, the old sessions are gone (NOT_FOUND, Session::lost), and
// reopened sessions that register the same memory again convert byte for byte.
TEST_F(FaultInjectionTest, DaemonKilledAndRestartedClientsReconnectReopenAndReRegister) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--lease_seconds=3"})));
  const std::string socket_path = daemon_->socket_path();
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, daemon_->Connect());
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> attached,
                           Session::Open(*client, "it-restart-attached", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> leased,
                           Session::Open(*client, "it-restart-leased", /*attach=*/false));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, kShape);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, kShape);
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet a_src,
                           MakeHostBlockSet(*attached, nhd, 3, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet a_dst,
                           MakeHostBlockSet(*attached, uni, 3, Placement::kExplicit, 2));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet l_src,
                           MakeHostBlockSet(*leased, uni, 2, Placement::kExplicit, 3));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet l_dst,
                           MakeHostBlockSet(*leased, nhd, 2, Placement::kStrided, 4));
  EXPECT_TRUE(ConvertsByteExact(*attached, a_src, a_dst, 10));
  EXPECT_TRUE(ConvertsByteExact(*leased, l_src, l_dst, 11));
  const std::string old_attached_id = attached->id();
  EXPECT_FALSE(attached->lost());
  EXPECT_FALSE(leased->lost());

  daemon_->Kill();
  EXPECT_TRUE(WaitUntil([&] { return attached->lost(); }, absl::Seconds(5)))
      << "the Attach stream did not end when the daemon died";
  EXPECT_TRUE(HasStatus(attached->StreamStatus(), StatusCode::kUnavailable, {}));
  EXPECT_TRUE(HasStatus(attached->ListRegions(), StatusCode::kUnavailable, {}));

  DaemonConfig same_socket = WithFlags({"--lease_seconds=3"});
  same_socket.socket_path = socket_path;  // over the stale socket file
  ASSERT_NO_FATAL_FAILURE(StartDaemon(std::move(same_socket)));
  KVS_ASSERT_OK(client->WaitForReady(absl::Seconds(10)));
  // The new daemon knows neither session: their ids are NOT_FOUND like any unknown id.
  EXPECT_TRUE(HasStatus(attached->ListRegions(), StatusCode::kNotFound, {"session_id"}));
  v1::KeepAliveRequest keep;
  keep.set_session_id(old_attached_id);
  EXPECT_TRUE(HasStatus(client->Call(&v1::Shuttle::Stub::KeepAlive, keep), StatusCode::kNotFound,
                        {"session_id", "no such session"}));
  EXPECT_TRUE(WaitUntil([&] { return leased->lost(); }, absl::Seconds(5)))
      << "the unattached session's KeepAlive did not notice the restart";

  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> attached2, attached->Reopen());
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> leased2, leased->Reopen());
  EXPECT_TRUE(attached2->attached());
  EXPECT_FALSE(leased2->attached());
  EXPECT_NE(attached2->id(), old_attached_id);
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListSessionsResponse sessions, client->ListSessions());
  ASSERT_EQ(sessions.sessions_size(), 2) << sessions.DebugString();
  for (const v1::SessionSummary& s : sessions.sessions()) {
    EXPECT_TRUE(s.client_name() == "it-restart-attached" || s.client_name() == "it-restart-leased")
        << s.client_name();
    EXPECT_EQ(s.regions(), 0u) << "a reopened session starts empty";
  }
  // The same memory, registered again, converts byte for byte.
  KVS_ASSERT_OK(Reregister(*attached2, a_src));
  KVS_ASSERT_OK(Reregister(*attached2, a_dst));
  KVS_ASSERT_OK(Reregister(*leased2, l_src));
  KVS_ASSERT_OK(Reregister(*leased2, l_dst));
  EXPECT_TRUE(ConvertsByteExact(*attached2, a_src, a_dst, 20));
  EXPECT_TRUE(ConvertsByteExact(*leased2, l_src, l_dst, 21));
  EXPECT_TRUE(attached2->StreamStatus().ok());
  EXPECT_FALSE(attached2->lost());
  KVS_ASSERT_OK_AND_ASSIGN(auto health, client->Health());
  EXPECT_EQ(health, health_v1::HealthCheckResponse::SERVING);
}

// Issue #7.4: a failing launch injected on one session. Its jobs fail INTERNAL (result and
// event), run nothing and leave its memory untouched; the session itself stays usable; another
// session's jobs, interleaved on the same executor, all convert byte for byte.
TEST_F(FaultInjectionTest, InjectedLaunchFailureFailsOnlyThatSessionsJobsInternal) {
  ASSERT_NO_FATAL_FAILURE(
      StartDaemon(WithFlags({"--cpu_threads=2", "--fault_fail_jobs_of_client=it-faulty"})));
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "TEST ONLY")) << "no startup warning";
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> faulty_client, daemon_->Connect());
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> faulty,
                           Session::Open(*faulty_client, "it-faulty", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> healthy,
                           Session::Open(daemon_->client(), "it-healthy", /*attach=*/true));
  const LayoutDesc hnd = MakeLayout(LayoutKind::kHNDStack, kShape);
  const LayoutDesc op = MakeLayout(LayoutKind::kOperationalNHD, kShape);
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet f_src,
                           MakeHostBlockSet(*faulty, hnd, 4, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet f_dst,
                           MakeHostBlockSet(*faulty, op, 4, Placement::kExplicit, 2));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet h_src,
                           MakeHostBlockSet(*healthy, hnd, 4, Placement::kExplicit, 3));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet h_dst,
                           MakeHostBlockSet(*healthy, op, 4, Placement::kStrided, 4));
  const std::vector<uint8_t> f_untouched = f_dst.Snapshot();
  const TransferSpec spec = WholeBlocks(hnd, op);
  const v1::Job f_job = MakeJob(f_src.endpoint(), f_dst.endpoint(), spec, IdentityPairs(4));

  constexpr int kRounds = 20;
  int healthy_done = 0;
  std::string healthy_error;
  std::thread healthy_thread([&] {
    for (int round = 0; round < kRounds; ++round) {
      const ::testing::AssertionResult ok = ConvertsByteExact(*healthy, h_src, h_dst, 100 + round);
      if (ok) {
        ++healthy_done;
      } else if (healthy_error.empty()) {
        healthy_error = ok.message();
      }
    }
  });
  std::vector<uint64_t> failed_ids;
  const auto faulty_rounds = [&] {  // ASSERTs leave the lambda, not the joining below
    for (int round = 0; round < kRounds; ++round) {
      v1::SubmitBatchRequest batch;
      *batch.add_jobs() = f_job;
      *batch.add_jobs() = f_job;
      KVS_ASSERT_OK_AND_ASSIGN(v1::SubmitBatchResponse submitted, faulty->SubmitBatch(batch));
      const std::vector<uint64_t> ids(submitted.job_ids().begin(), submitted.job_ids().end());
      KVS_ASSERT_OK_AND_ASSIGN(v1::WaitResponse done, faulty->Wait(ids, absl::Seconds(20)));
      ASSERT_TRUE(done.all_done()) << done.DebugString();
      for (const v1::JobResult& r : done.results()) {
        EXPECT_EQ(r.state(), v1::JOB_FAILED) << r.DebugString();
        EXPECT_EQ(r.code(), static_cast<int>(StatusCode::kInternal)) << r.DebugString();
        EXPECT_TRUE(absl::StrContains(r.message(), "launch failed (injected")) << r.message();
        EXPECT_EQ(r.bytes(), 0u);
        failed_ids.push_back(r.job_id());
      }
    }
  };
  faulty_rounds();
  healthy_thread.join();
  EXPECT_EQ(healthy_done, kRounds) << "the healthy session's conversions failed: " << healthy_error;
  EXPECT_TRUE(BytesEqual(f_dst.data(), f_untouched)) << "a failed launch wrote memory";

  // The failures reach the faulty session's stream too, each with INTERNAL.
  EXPECT_TRUE(faulty->WaitForEvents(failed_ids.size(), absl::Seconds(5)));
  std::map<uint64_t, int> codes;
  for (const v1::JobResult& event : faulty->TakeEvents()) codes[event.job_id()] = event.code();
  for (uint64_t id : failed_ids) {
    ASSERT_EQ(codes.count(id), 1u) << "no job_done event for job " << id;
    EXPECT_EQ(codes[id], static_cast<int>(StatusCode::kInternal));
  }
  // The faulty session lives on (only its launches fail), as does the daemon.
  EXPECT_TRUE(faulty->StreamStatus().ok());
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse regions, faulty->ListRegions());
  EXPECT_EQ(regions.regions_size(), 2);
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse stats, daemon_->client().GetStats());
  EXPECT_EQ(stats.jobs_failed(), static_cast<uint64_t>(2 * kRounds));
  EXPECT_EQ(stats.jobs_done(), static_cast<uint64_t>(kRounds));
  KVS_ASSERT_OK_AND_ASSIGN(auto health, daemon_->client().Health());
  EXPECT_EQ(health, health_v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "job failed")) << daemon_->Stderr();
}

// A POSIX shm object created, mapped and filled by this process under a name of its choice;
// unlinked (if still there) and unmapped on destruction.
class NamedShm {
 public:
  static absl::StatusOr<std::unique_ptr<NamedShm>> Create(const std::string& name, size_t bytes) {
    const int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("shm_open ", name));
    void* data = nullptr;
    if (::ftruncate(fd, static_cast<off_t>(bytes)) == 0) {
      data = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    const int error = errno;
    ::close(fd);
    if (data == nullptr || data == MAP_FAILED) {
      ::shm_unlink(name.c_str());
      return absl::ErrnoToStatus(error, absl::StrCat("ftruncate/mmap ", name));
    }
    return std::unique_ptr<NamedShm>(new NamedShm(name, static_cast<uint8_t*>(data), bytes));
  }
  ~NamedShm() {
    ::munmap(data_, bytes_);
    ::shm_unlink(name_.c_str());
  }
  uint8_t* data() const { return data_; }

 private:
  NamedShm(std::string name, uint8_t* data, size_t bytes)
      : name_(std::move(name)), data_(data), bytes_(bytes) {}
  std::string name_;
  uint8_t* data_;
  size_t bytes_;
};

// DESIGN §4.9 on host memory: the exporter frees its shm object (unlinks it) and creates a new
// one under the same name. A new registration of the name maps the new object (nothing is
// cached by name); the old region keeps the object it mapped, whose pages stay valid.
TEST_F(FaultInjectionTest, ShmObjectRecreatedUnderTheSameNameIsMappedAfresh) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon_->client(), "it-recreated", /*attach=*/true));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, kShape);
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, kShape);
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet old_src,
                           MakeHostBlockSet(*session, nhd, 2, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 2));
  EXPECT_TRUE(ConvertsByteExact(*session, old_src, dst, 30));
  const uint64_t old_block_set = old_src.block_set_id;

  // Free and re-create under the same name, with other contents.
  const std::string name = old_src.shm->name();
  ASSERT_EQ(::shm_unlink(name.c_str()), 0);
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<NamedShm> fresh,
                           NamedShm::Create(name, old_src.bytes()));
  FillRandom(fresh->data(), old_src.bytes(), 31);
  HostBlockSet view;  // the new object's pieces (same offsets), registered afresh
  view.layout = nhd;
  view.num_blocks = 2;
  view.offsets = old_src.offsets;
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse region,
                           session->RegisterHostShmRegion(name, 0, old_src.bytes()));
  v1::ExplicitPlacement table;
  for (uint64_t offset : old_src.offsets) {
    v1::SlotBase* address = table.add_addresses();
    address->set_region_id(region.region().region_id());
    address->set_offset(offset);
  }
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterBlockSetResponse fresh_set,
                           session->RegisterBlockSet(LayoutToProto(nhd), 2, table));
  view.block_set_id = fresh_set.block_set().block_set_id();

  const TransferSpec spec = WholeBlocks(nhd, uni);
  const std::vector<BlockPair> pairs = IdentityPairs(2);
  std::vector<uint8_t> expected = dst.Snapshot();
  KVS_ASSERT_OK(
      ReferenceConvert(spec, view.Table(fresh->data()), dst.Table(expected.data()), pairs, 1));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      RunBatch(*session, {MakeJob(view.endpoint(), dst.endpoint(), spec, pairs)}));
  ASSERT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  EXPECT_TRUE(BytesEqual(dst.data(), expected)) << "the new registration read the old object";

  // The old region still reads what it mapped: the freed object's pages, kept alive by it.
  FillRandom(old_src.data(), old_src.bytes(), 32);
  expected = dst.Snapshot();
  KVS_ASSERT_OK(
      ReferenceConvert(spec, old_src.Table(old_src.data()), dst.Table(expected.data()), pairs, 1));
  v1::Endpoint old_endpoint;
  old_endpoint.set_block_set_id(old_block_set);
  KVS_ASSERT_OK_AND_ASSIGN(
      done, RunBatch(*session, {MakeJob(old_endpoint, dst.endpoint(), spec, pairs)}));
  ASSERT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  EXPECT_TRUE(BytesEqual(dst.data(), expected));
  // Both objects are mapped now, each once.
  EXPECT_EQ(daemon_->CountMappings("/dev/shm" + name), 2);
}

}  // namespace
}  // namespace kvshuttle::it
