// Happy paths of the control RPCs against one daemon per suite: info, health, reflection,
// sessions (open, attach, keep-alive, list, close), regions, block sets, pools and stats.
// Conversions are in conversion_test.cc.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

class ApiTest : public SharedDaemonTest<ApiTest> {
 public:
  static DaemonConfig Config() {
    return WithFlags({"--cpu_threads=1", "--queue_capacity=64", "--max_jobs_per_batch=128",
                      "--lease_seconds=7"});
  }
};

// The status of a call of `method` ("/pkg.Service/Method") whose request bytes are `request`.
grpc::Status RawCallStatus(const std::shared_ptr<grpc::Channel>& ch, const std::string& method,
                           const std::string& request) {
  grpc::GenericStub stub(ch);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  const auto deadline = absl::ToChronoTime(absl::Now() + absl::Seconds(5));
  context.set_deadline(deadline);
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &cq);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  grpc::Status status;
  auto step = [&](const std::function<void(void*)>& start, intptr_t tag) {
    start(reinterpret_cast<void*>(tag));
    void* got = nullptr;
    bool ok = false;
    return cq.AsyncNext(&got, &ok, deadline) == grpc::CompletionQueue::GOT_EVENT && ok;
  };
  (void)(step([&](void* t) { call->StartCall(t); }, 1) &&
         step([&](void* t) { call->Write(out, t); }, 2) &&
         step([&](void* t) { call->WritesDone(t); }, 3));
  call->Finish(&status, reinterpret_cast<void*>(4));
  void* tag = nullptr;
  bool ok = false;
  while (cq.AsyncNext(&tag, &ok, deadline) == grpc::CompletionQueue::GOT_EVENT && tag !=
                                                                                   reinterpret_cast<void*>(4)) {
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// ---------------------------------------------------------------------------------------------
// Info, health, reflection

TEST_F(ApiTest, GetInfoReportsVersionLimitsAndAddress) {
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, client().GetInfo());
  EXPECT_FALSE(info.version().empty());
  EXPECT_TRUE(info.cpu_executor());
  EXPECT_FALSE(info.draining());
  EXPECT_EQ(info.listen_address(), daemon_->target());
  EXPECT_EQ(info.limits().queue_capacity(), 64u);
  EXPECT_EQ(info.limits().max_jobs_per_batch(), 128u);
  EXPECT_EQ(info.limits().lease_seconds(), 7u);
  EXPECT_EQ(info.limits().max_message_bytes(), uint64_t{64} << 20);
}

TEST_F(ApiTest, HealthIsServing) {
  KVS_ASSERT_OK_AND_ASSIGN(auto overall, client().Health());
  EXPECT_EQ(overall, health_v1::HealthCheckResponse::SERVING);
  KVS_ASSERT_OK_AND_ASSIGN(auto shuttle, client().Health("kvshuttle.v1.Shuttle"));
  EXPECT_EQ(shuttle, health_v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(HasStatus(client().Health("no.such.Service"), StatusCode::kNotFound, {}));
}

// Lists services through grpc.reflection.v1alpha with a generic stub (Debian ships no
// generated reflection client): request {list_services: "*"} (field 7), response
// {list_services_response (6): {service (1): {name (1)}}}, decoded as unknown fields.
absl::StatusOr<std::set<std::string>> ReflectedServices(const std::shared_ptr<grpc::Channel>& ch) {
  grpc::GenericStub stub(ch);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  const auto deadline = absl::ToChronoTime(absl::Now() + absl::Seconds(5));
  context.set_deadline(deadline);
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  const std::string request("\x3a\x01*", 3);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  grpc::ByteBuffer in;
  grpc::Status status;
  // Starts one operation and waits (bounded) for its completion.
  auto run = [&](const std::function<void(void*)>& start, intptr_t tag) {
    start(reinterpret_cast<void*>(tag));
    void* got = nullptr;
    bool ok = false;
    return cq.AsyncNext(&got, &ok, deadline) == grpc::CompletionQueue::GOT_EVENT &&
           got == reinterpret_cast<void*>(tag) && ok;
  };
  const bool ok = run([&](void* t) { call->StartCall(t); }, 1) &&
                  run([&](void* t) { call->Write(out, t); }, 2) &&
                  run([&](void* t) { call->WritesDone(t); }, 3) &&
                  run([&](void* t) { call->Read(&in, t); }, 4);
  if (!ok) context.TryCancel();
  call->Finish(&status, reinterpret_cast<void*>(5));
  cq.Shutdown();
  void* tag = nullptr;
  bool event_ok = false;
  while (cq.Next(&tag, &event_ok)) {
  }  // drains Finish and whatever the cancellation completed
  if (!ok) {
    return absl::UnavailableError(absl::StrCat("reflection call failed: ", status.error_message()));
  }

  std::vector<grpc::Slice> slices;
  if (!in.Dump(&slices).ok()) return absl::InternalError("reflection: cannot read the response");
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  google::protobuf::UnknownFieldSet response;
  if (!response.ParseFromString(bytes)) return absl::InternalError("reflection: bad response");
  std::set<std::string> names;
  for (int i = 0; i < response.field_count(); ++i) {
    const auto& field = response.field(i);
    if (field.number() != 6 ||
        field.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      continue;
    }
    google::protobuf::UnknownFieldSet list;
    if (!list.ParseFromString(field.length_delimited())) continue;
    for (int j = 0; j < list.field_count(); ++j) {
      if (list.field(j).number() != 1) continue;
      google::protobuf::UnknownFieldSet service;
      if (!service.ParseFromString(list.field(j).length_delimited())) continue;
      for (int k = 0; k < service.field_count(); ++k) {
        if (service.field(k).number() == 1) names.insert(service.field(k).length_delimited());
      }
    }
  }
  return names;
}

TEST_F(ApiTest, ReflectionListsTheServices) {
  KVS_ASSERT_OK_AND_ASSIGN(std::set<std::string> services, ReflectedServices(client().channel()));
  EXPECT_TRUE(services.count("kvshuttle.v1.Shuttle")) << ::testing::PrintToString(services);
  EXPECT_TRUE(services.count("grpc.health.v1.Health")) << ::testing::PrintToString(services);
  EXPECT_TRUE(services.count("grpc.reflection.v1alpha.ServerReflection"))
      << ::testing::PrintToString(services);
}

// ---------------------------------------------------------------------------------------------
// Sessions

TEST_F(ApiTest, SessionsOpenAttachKeepAliveListAndClose) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> attached,
                           Session::Open(client(), "it-attached", /*attach=*/true));
  EXPECT_EQ(attached->lease_seconds(), 7u);
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> leased,
                           Session::Open(client(), "it-leased", /*attach=*/false));
  KVS_ASSERT_OK_AND_ASSIGN(v1::KeepAliveResponse kept, leased->KeepAlive());
  EXPECT_EQ(kept.lease_seconds(), 7u);

  KVS_ASSERT_OK_AND_ASSIGN(v1::ListSessionsResponse list, attached->ListSessions());
  int own = 0;
  bool saw_attached = false, saw_leased = false;
  for (const v1::SessionSummary& s : list.sessions()) {
    own += s.own() ? 1 : 0;
    if (s.client_name() == "it-attached") {
      saw_attached = true;
      EXPECT_TRUE(s.attached());
      EXPECT_TRUE(s.own());
    }
    if (s.client_name() == "it-leased") {
      saw_leased = true;
      EXPECT_FALSE(s.attached());
      EXPECT_FALSE(s.own());
    }
  }
  EXPECT_EQ(own, 1);
  EXPECT_TRUE(saw_attached && saw_leased) << list.DebugString();

  // A second Attach on the same session is refused; the first stream stays up.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::AttachRequest attach;
  attach.set_session_id(attached->id());
  auto reader = client().stub().Attach(&context, attach);
  v1::SessionEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_TRUE(HasStatus(FromGrpcStatus(reader->Finish()), StatusCode::kFailedPrecondition,
                        {"already has an Attach stream"}));
  EXPECT_TRUE(attached->StreamStatus().ok());

  // CloseSession removes it from the list; a second close finds nothing.
  v1::CloseSessionRequest close;
  close.set_session_id(leased->id());
  KVS_ASSERT_OK(client().Call(&v1::Shuttle::Stub::CloseSession, close));
  EXPECT_TRUE(HasStatus(client().Call(&v1::Shuttle::Stub::CloseSession, close),
                        StatusCode::kNotFound, {"session_id"}));
  EXPECT_TRUE(HasStatus(leased->KeepAlive(), StatusCode::kNotFound, {"session_id"}));
  KVS_ASSERT_OK_AND_ASSIGN(list, client().ListSessions());
  for (const v1::SessionSummary& s : list.sessions()) EXPECT_NE(s.client_name(), "it-leased");

  // A raw Attach: the first event is `attached` with the session id; when the client goes
  // away (the call is cancelled) the session is closed with it.
  v1::OpenSessionRequest open;
  open.set_client_name("it-raw-attach");
  KVS_ASSERT_OK_AND_ASSIGN(v1::OpenSessionResponse raw,
                           client().Call(&v1::Shuttle::Stub::OpenSession, open));
  grpc::ClientContext raw_context;
  raw_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  attach.set_session_id(raw.session_id());
  auto raw_reader = client().stub().Attach(&raw_context, attach);
  ASSERT_TRUE(raw_reader->Read(&event));
  EXPECT_EQ(event.attached(), raw.session_id());
  auto listed = [&](const std::string& name) {
    absl::StatusOr<v1::ListSessionsResponse> all = client().ListSessions();
    if (!all.ok()) return true;
    for (const v1::SessionSummary& s : all->sessions()) {
      if (s.client_name() == name) return true;
    }
    return false;
  };
  EXPECT_TRUE(listed("it-raw-attach"));
  raw_context.TryCancel();
  EXPECT_TRUE(HasStatus(FromGrpcStatus(raw_reader->Finish()), StatusCode::kCancelled, {}));
  EXPECT_TRUE(WaitUntil([&] { return !listed("it-raw-attach"); }, absl::Seconds(3)));
}

TEST_F(ApiTest, SessionRpcsWithoutASessionAreNotFound) {
  v1::ListRegionsRequest request;
  EXPECT_TRUE(HasStatus(client().Call(&v1::Shuttle::Stub::ListRegions, request),
                        StatusCode::kNotFound, {"session_id: missing"}));
  request.set_session_id("00112233445566778899aabbccddeeff");
  EXPECT_TRUE(HasStatus(client().Call(&v1::Shuttle::Stub::ListRegions, request),
                        StatusCode::kNotFound, {"session_id: no such session"}));
}

// ---------------------------------------------------------------------------------------------
// Regions and block sets

TEST_F(ApiTest, RegionsRegisterListAndUnregister) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-regions", /*attach=*/true));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(1 << 20));
  const std::string needle = "/dev/shm" + shm->name();
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse a,
                           session->RegisterHostShmRegion(shm->name(), 4096, 65536, "kv-a"));
  EXPECT_GT(a.region().region_id(), 0u);
  EXPECT_EQ(a.region().name(), "kv-a");
  EXPECT_EQ(a.region().memory(), v1::MEMORY_HOST);
  EXPECT_EQ(a.region().size(), 65536u);
  KVS_ASSERT_OK_AND_ASSIGN(v1::RegisterRegionResponse b,
                           session->RegisterHostShmRegion(shm->name(), 0, 1 << 20));
  EXPECT_NE(b.region().region_id(), a.region().region_id());
  EXPECT_EQ(daemon_->CountMappings(needle), 2);

  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse list, session->ListRegions());
  ASSERT_EQ(list.regions_size(), 2);
  for (const v1::Region& r : list.regions()) {
    EXPECT_EQ(r.users(), 0u);
    EXPECT_FALSE(r.releasing());
  }

  KVS_ASSERT_OK_AND_ASSIGN(v1::UnregisterRegionResponse gone,
                           session->UnregisterRegion(a.region().region_id()));
  EXPECT_FALSE(gone.deferred());
  KVS_ASSERT_OK_AND_ASSIGN(gone, session->UnregisterRegion(a.region().region_id()));  // repeat
  EXPECT_FALSE(gone.deferred());
  EXPECT_EQ(daemon_->CountMappings(needle), 1);
  KVS_ASSERT_OK_AND_ASSIGN(list, session->ListRegions());
  ASSERT_EQ(list.regions_size(), 1);
  EXPECT_EQ(list.regions(0).region_id(), b.region().region_id());
  EXPECT_TRUE(HasStatus(session->UnregisterRegion(987654321), StatusCode::kNotFound,
                        {"region_id", "987654321"}));
  session.reset();  // closing the session releases the rest
  EXPECT_TRUE(WaitUntil([&] { return daemon_->CountMappings(needle) == 0; }, absl::Seconds(3)));
}

TEST_F(ApiTest, BlockSetsStridedAndExplicitRegisterListAndUnregister) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-block-sets", /*attach=*/true));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8}, DType::kBF16);
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet strided,
                           MakeHostBlockSet(*session, nhd, 5, Placement::kStrided, 1, 512));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet table,
                           MakeHostBlockSet(*session, uni, 3, Placement::kExplicit, 2));
  KVS_ASSERT_OK_AND_ASSIGN(v1::ListRegionsResponse regions, session->ListRegions());
  for (const v1::Region& r : regions.regions()) EXPECT_EQ(r.users(), 1u) << r.DebugString();

  KVS_ASSERT_OK_AND_ASSIGN(v1::ListBlockSetsResponse list, session->ListBlockSets());
  ASSERT_EQ(list.block_sets_size(), 2);
  for (const v1::BlockSet& bs : list.block_sets()) {
    EXPECT_EQ(bs.memory(), v1::MEMORY_HOST);
    if (bs.block_set_id() == strided.block_set_id) {
      EXPECT_EQ(bs.num_blocks(), 5u);
      EXPECT_EQ(bs.layout().kind(), v1::LAYOUT_NHD);
      EXPECT_EQ(bs.layout().dtype(), v1::DTYPE_F16);
      EXPECT_EQ(bs.layout().shape().nt(), 16u);
    } else {
      EXPECT_EQ(bs.block_set_id(), table.block_set_id);
      EXPECT_EQ(bs.num_blocks(), 3u);
      EXPECT_EQ(bs.layout().kind(), v1::LAYOUT_UNIVERSAL);
      EXPECT_EQ(bs.layout().dtype(), v1::DTYPE_BF16);
    }
  }
  KVS_ASSERT_OK(session->UnregisterBlockSet(strided.block_set_id));
  EXPECT_TRUE(HasStatus(session->UnregisterBlockSet(strided.block_set_id), StatusCode::kNotFound,
                        {"block_set_id"}));
  KVS_ASSERT_OK_AND_ASSIGN(list, session->ListBlockSets());
  ASSERT_EQ(list.block_sets_size(), 1);
  EXPECT_EQ(list.block_sets(0).block_set_id(), table.block_set_id);
  // The region of the remaining block set drops its users when the block set goes with it.
  KVS_ASSERT_OK_AND_ASSIGN(v1::UnregisterRegionResponse gone,
                           session->UnregisterRegion(table.region_id));
  EXPECT_FALSE(gone.deferred());
  KVS_ASSERT_OK_AND_ASSIGN(list, session->ListBlockSets());
  EXPECT_EQ(list.block_sets_size(), 0);
}

// ---------------------------------------------------------------------------------------------
// Pools

TEST_F(ApiTest, PoolsCreateListAllocateFreeAndDestroy) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-pools", /*attach=*/false));
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8});
  KVS_ASSERT_OK_AND_ASSIGN(v1::CreatePoolResponse created,
                           session->CreatePool("it-pool", LayoutToProto(uni), 8, v1::MEMORY_HOST));
  EXPECT_EQ(created.pool().name(), "it-pool");
  EXPECT_EQ(created.pool().memory(), v1::MEMORY_HOST);
  EXPECT_EQ(created.pool().num_blocks(), 8u);
  EXPECT_EQ(created.pool().blocks_in_use(), 0u);
  EXPECT_EQ(created.pool().bytes(), 8u * 2 * 2 * 16 * 4 * 8 * 2);

  KVS_ASSERT_OK_AND_ASSIGN(v1::AllocateBlocksResponse got, session->AllocateBlocks("it-pool", 3));
  EXPECT_EQ(std::vector<uint32_t>(got.block_ids().begin(), got.block_ids().end()),
            (std::vector<uint32_t>{0, 1, 2}));
  auto in_use = [&]() -> int64_t {
    absl::StatusOr<v1::ListPoolsResponse> pools = client().ListPools();
    if (!pools.ok()) return -2;
    for (const v1::Pool& p : pools->pools()) {
      if (p.name() == "it-pool") return p.blocks_in_use();
    }
    return -1;  // not listed
  };
  EXPECT_EQ(in_use(), 3);

  const uint32_t one = 1;
  KVS_ASSERT_OK(session->FreeBlocks("it-pool", {&one, 1}));
  EXPECT_TRUE(HasStatus(session->FreeBlocks("it-pool", {&one, 1}), StatusCode::kFailedPrecondition,
                        {"block_ids[0]", "not allocated"}));
  const uint32_t outside = 8;
  EXPECT_TRUE(HasStatus(session->FreeBlocks("it-pool", {&outside, 1}), StatusCode::kOutOfRange,
                        {"block_ids[0]", "8"}));
  EXPECT_TRUE(HasStatus(session->AllocateBlocks("it-pool", 7), StatusCode::kResourceExhausted,
                        {"it-pool", "6 of 8 free"}));
  KVS_ASSERT_OK_AND_ASSIGN(got, session->AllocateBlocks("it-pool", 1));
  EXPECT_EQ(got.block_ids(0), 1u);  // lowest free id first
  EXPECT_TRUE(HasStatus(session->CreatePool("bad name!", LayoutToProto(uni), 8, v1::MEMORY_HOST),
                        StatusCode::kInvalidArgument, {"name"}));
  EXPECT_TRUE(HasStatus(session->AllocateBlocks("no-such-pool", 1), StatusCode::kNotFound,
                        {"no-such-pool"}));

  KVS_ASSERT_OK(session->DestroyPool("it-pool"));
  EXPECT_TRUE(HasStatus(session->DestroyPool("it-pool"), StatusCode::kNotFound, {"it-pool"}));
  EXPECT_EQ(in_use(), -1);
}

TEST_F(ApiTest, DevicePoolWithoutGpuIsFailedPrecondition) {
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, client().GetInfo());
  if (info.devices_size() > 0) GTEST_SKIP() << "the daemon sees a GPU";
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-device-pool", /*attach=*/false));
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {1, 2, 16, 4, 8});
  EXPECT_TRUE(HasStatus(session->CreatePool("dev", LayoutToProto(uni), 4, v1::MEMORY_DEVICE),
                        StatusCode::kFailedPrecondition, {"memory", "no GPU"}));
}

TEST_F(ApiTest, GetStatsCountsSessionsRegionsAndExecutors) {
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse before, client().GetStats());
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-stats", /*attach=*/false));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SharedMemory> shm, SharedMemory::Create(8192));
  KVS_ASSERT_OK(session->RegisterHostShmRegion(shm->name(), 0, 8192));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetStatsResponse after, client().GetStats());
  EXPECT_EQ(after.sessions(), before.sessions() + 1);
  EXPECT_EQ(after.regions(), before.regions() + 1);
  EXPECT_EQ(after.mapped_bytes(), before.mapped_bytes() + 8192);
  bool cpu = false;
  for (const v1::ExecutorStats& e : after.executors()) {
    if (e.name() != "cpu") continue;
    cpu = true;
    EXPECT_EQ(e.queue_capacity(), 64u);
  }
  EXPECT_TRUE(cpu) << after.DebugString();
}

// Issue #13 defect 9: a request that is not a valid protobuf message is INVALID_ARGUMENT on
// every method (gRPC answers INTERNAL by itself, which the API reserves for CUDA failures).
TEST_F(ApiTest, MalformedRequestBytesAreInvalidArgumentOnEveryMethod) {
  const std::string garbage("\xff\xff\xff\xff\x0f", 5);  // field 0, truncated varint
  std::vector<std::string> methods = {"/grpc.health.v1.Health/Check"};
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("kvshuttle.v1.Shuttle");
  ASSERT_NE(service, nullptr);
  for (int i = 0; i < service->method_count(); ++i) {
    methods.push_back(absl::StrCat("/", service->full_name(), "/", service->method(i)->name()));
  }
  ASSERT_GE(methods.size(), 20u);
  for (const std::string& method : methods) {
    const grpc::Status status = RawCallStatus(client().channel(), method, garbage);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method << ": " << status.error_code() << " " << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "not a valid")) << method;
  }
  KVS_ASSERT_OK(client().GetInfo());  // the daemon still answers
}

}  // namespace
}  // namespace kvshuttle::it
