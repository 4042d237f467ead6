// A real kvshuttled through a varied workload — conversions through a pool and back, hostile
// requests of every RPC, a session closed with a slow job running and more queued, an attached
// client that goes away, a lease left to expire — then SIGTERM: the daemon must drain and exit
// 0. The integration suites SIGKILL their daemons when they end, so under ASan this is where the
// daemon's own exit-time leak check (LeakSanitizer) runs after it served every kind of request;
// run_ctest.sh fails on any report it writes. Label `integration`.
#include <sys/wait.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using Code = absl::StatusCode;

TEST(DaemonExitTest, DrainsAndExitsCleanlyAfterEveryKindOfRequest) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DaemonProcess> daemon,
                           DaemonProcess::Start(WithFlags({"--cpu_threads=2", "--lease_seconds=1"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon->client(), "exit-test", /*attach=*/true));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {.nl = 2, .no = 2, .nt = 4, .nh = 2, .hd = 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {.nl = 2, .no = 2, .nt = 4, .nh = 2, .hd = 8});

  // Conversions: block set → pool → block set, checked byte for byte.
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src, MakeHostBlockSet(*session, nhd, 4, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst, MakeHostBlockSet(*session, nhd, 4, Placement::kExplicit, 2));
  KVS_ASSERT_OK(session->CreatePool("exit-pool", LayoutToProto(uni), 8, v1::MEMORY_HOST));
  KVS_ASSERT_OK_AND_ASSIGN(v1::AllocateBlocksResponse ids, session->AllocateBlocks("exit-pool", 4));
  KVS_ASSERT_OK(RunBatch(*session, {MakeJob(src.endpoint(), PoolEndpoint("exit-pool"),
                                            WholeBlocks(nhd, uni), IdentityPairs(4))}));
  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected,
                           ExpectedAfter(src, dst, WholeBlocks(nhd, nhd), IdentityPairs(4)));
  KVS_ASSERT_OK(RunBatch(*session, {MakeJob(PoolEndpoint("exit-pool"), dst.endpoint(),
                                            WholeBlocks(uni, nhd), IdentityPairs(4))}));
  EXPECT_TRUE(BytesEqual(dst.data(), expected));
  EXPECT_TRUE(session->WaitForEvents(2, absl::Seconds(10)));
  session->TakeEvents();

  // Hostile requests: each refused with its code, none leaves anything behind.
  for (size_t bytes : {size_t{0}, size_t{63}, size_t{65}, size_t{1} << 20}) {
    EXPECT_FALSE(session->RegisterCudaIpcRegion(std::string(bytes, 'h'), "GPU-x", 0, 64).ok());
  }
  EXPECT_TRUE(HasStatus(session->RegisterHostShmRegion("/no-such-kvshuttle-object", 0, 64),
                        Code::kNotFound, {}));
  EXPECT_TRUE(HasStatus(session->RegisterHostShmRegion("/a/b", 0, 64), Code::kInvalidArgument, {}));
  EXPECT_TRUE(HasStatus(session->CreatePool("exit-stack", LayoutToProto(nhd), 4, v1::MEMORY_HOST),
                        Code::kInvalidArgument, {"block stack"}));
  // A 100 KB name: INVALID_ARGUMENT quoting part of it (its full echo once overflowed the
  // client's metadata limit and arrived as RESOURCE_EXHAUSTED).
  EXPECT_TRUE(HasStatus(session->CreatePool(std::string(100000, '!'), LayoutToProto(uni), 4,
                                            v1::MEMORY_HOST),
                        Code::kInvalidArgument, {"(100000 bytes)"}));
  EXPECT_FALSE(session->AllocateBlocks("exit-pool", 1000).ok());
  const uint32_t bad_ids[] = {0, 0, 99};
  EXPECT_FALSE(session->FreeBlocks("exit-pool", bad_ids).ok());
  EXPECT_FALSE(RunBatch(*session, {MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(nhd, nhd),
                                           {{.src_block = 9, .dst_block = 0}})})
                   .ok());
  EXPECT_FALSE(RunBatch(*session, {MakeJob(PoolEndpoint("no-such-pool"), dst.endpoint(),
                                           WholeBlocks(uni, nhd), IdentityPairs(1))})
                   .ok());

    // A session closed while a slow job runs and more are queued; an attached session over a
  // block set whose client goes away; a session left to its 1 s lease.
  {
    KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, daemon->Connect());
    KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> busy,
                             Session::Open(*client, "exit-busy", /*attach=*/false));
    KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*busy));
    v1::SubmitBatchRequest batch;
    for (int i = 0; i < 4; ++i) *batch.add_jobs() = slow->Job(absl::Milliseconds(100));
    KVS_ASSERT_OK(busy->SubmitBatch(batch));
    KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> gone,
                             Session::Open(*client, "exit-gone", /*attach=*/true));
    KVS_ASSERT_OK(MakeHostBlockSet(*gone, nhd, 2, Placement::kStrided, 3));
    // Opened with a bare RPC: no Session object renews or closes it.
    v1::OpenSessionRequest open;
    open.set_client_name("exit-lease");
    KVS_ASSERT_OK(client->Call(&v1::Shuttle::Stub::OpenSession, open));
  }  // sessions and the client destroyed here: closed, disconnected

  EXPECT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::ListSessionsResponse> sessions = daemon->client().ListSessions();
        return sessions.ok() && sessions->sessions_size() == 1;
      },
      absl::Seconds(10)));
  session.reset();

  KVS_ASSERT_OK_AND_ASSIGN(int status, daemon->Stop(absl::Seconds(30)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << DescribeWaitStatus(status) << "\n" << daemon->Stderr();
}

}  // namespace
}  // namespace kvshuttle::it
