// ShuttleService: one line per RPC.
#include "server/service.h"

#include <chrono>

#include "server/ops/logging.h"
#include "server/status_map.h"

namespace kvshuttle {
namespace {

// The call's deadline, cancellation and caller; UNAVAILABLE when its connection is gone.
absl::StatusOr<CallContext> ContextOf(grpc::ServerContext* ctx,
                                      const ConnectionTable& connections) {
  CallContext call;
  const auto deadline = ctx->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    call.deadline = absl::FromChrono(deadline);
  }
  call.cancelled = [ctx] { return ctx->IsCancelled(); };
  absl::StatusOr<PeerIdentity> peer = connections.Resolve(ctx->peer());
  if (!peer.ok()) return peer.status();
  call.peer = *std::move(peer);
  return call;
}

// Every RPC ends here: its metrics (kvshuttle_rpc_total, kvshuttle_rpc_seconds), a debug log
// line, and the one absl → gRPC status mapping.
grpc::Status Finish(Daemon& daemon, const char* method, absl::Time start,
                    const absl::Status& status) {
  const absl::Duration elapsed = absl::Now() - start;
  daemon.metrics().ObserveRpc(method, status.code(), elapsed);
  if (LogEnabled(LogLevel::kDebug)) {
    LogDebug("rpc", {{"method", method},
                     {"code", absl::StatusCodeToString(status.code())},
                     {"seconds", absl::ToDoubleSeconds(elapsed)},
                     {"error", status.message()}});
  }
  return ToGrpcStatus(status);
}

}  // namespace

#define KVS_UNARY(Method)                                                                \
  grpc::Status ShuttleService::Method(grpc::ServerContext* ctx,                          \
                                      const v1::Method##Request* req,                    \
                                      v1::Method##Response* resp) {                      \
    const absl::Time start = absl::Now();                                                \
    absl::StatusOr<CallContext> call = ContextOf(ctx, connections_);                     \
    return Finish(daemon_, #Method, start,                                               \
                  call.ok() ? daemon_.Method(*call, *req, resp) : call.status());        \
  }

KVS_UNARY(GetInfo)
KVS_UNARY(OpenSession)
KVS_UNARY(KeepAlive)
KVS_UNARY(CloseSession)
KVS_UNARY(ListSessions)
KVS_UNARY(CreateFdToken)
KVS_UNARY(RegisterRegion)
KVS_UNARY(UnregisterRegion)
KVS_UNARY(ListRegions)
KVS_UNARY(RegisterBlockSet)
KVS_UNARY(UnregisterBlockSet)
KVS_UNARY(ListBlockSets)
KVS_UNARY(CreatePool)
KVS_UNARY(DestroyPool)
KVS_UNARY(ListPools)
KVS_UNARY(AllocateBlocks)
KVS_UNARY(FreeBlocks)
KVS_UNARY(SubmitBatch)
KVS_UNARY(Wait)
KVS_UNARY(CancelJobs)
KVS_UNARY(GetStats)
#undef KVS_UNARY

grpc::Status ShuttleService::Attach(grpc::ServerContext* ctx, const v1::AttachRequest* req,
                                    grpc::ServerWriter<v1::SessionEvent>* writer) {
  const absl::Time start = absl::Now();
  absl::StatusOr<CallContext> call = ContextOf(ctx, connections_);
  if (!call.ok()) return Finish(daemon_, "Attach", start, call.status());
  return Finish(daemon_, "Attach", start,
                daemon_.Attach(*call, *req,
                               [writer](const v1::SessionEvent& e) { return writer->Write(e); }));
}

grpc::Status ShuttleService::Channel(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<v1::ChannelEvent, v1::ChannelRequest>* stream) {
  const absl::Time start = absl::Now();
  absl::StatusOr<CallContext> call = ContextOf(ctx, connections_);
  if (!call.ok()) return Finish(daemon_, "Channel", start, call.status());
  return Finish(daemon_, "Channel", start,
                daemon_.Channel(
                    *call, [stream](v1::ChannelRequest* r) { return stream->Read(r); },
                    [stream](const v1::ChannelEvent& e) { return stream->Write(e); },
                    [ctx] { ctx->TryCancel(); }));
}

}  // namespace kvshuttle
