// The kvshuttle.v1.Shuttle gRPC service: a thin edge that turns each call into a Daemon call
// and its absl::Status into a grpc::Status.
#pragma once

#include "kvshuttle/v1/kvshuttle.grpc.pb.h"
#include "server/daemon.h"
#include "server/net/connections.h"

namespace kvshuttle {

class ShuttleService final : public v1::Shuttle::Service {
 public:
  // `connections` names the callers of unix-socket connections (server/net/connections.h).
  ShuttleService(Daemon& daemon, const ConnectionTable& connections)
      : daemon_(daemon), connections_(connections) {}

  grpc::Status GetInfo(grpc::ServerContext*, const v1::GetInfoRequest*,
                       v1::GetInfoResponse*) override;
  grpc::Status OpenSession(grpc::ServerContext*, const v1::OpenSessionRequest*,
                           v1::OpenSessionResponse*) override;
  grpc::Status Attach(grpc::ServerContext*, const v1::AttachRequest*,
                      grpc::ServerWriter<v1::SessionEvent>*) override;
  grpc::Status Channel(grpc::ServerContext*,
                       grpc::ServerReaderWriter<v1::ChannelEvent, v1::ChannelRequest>*) override;
  grpc::Status KeepAlive(grpc::ServerContext*, const v1::KeepAliveRequest*,
                         v1::KeepAliveResponse*) override;
  grpc::Status CloseSession(grpc::ServerContext*, const v1::CloseSessionRequest*,
                            v1::CloseSessionResponse*) override;
  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                            v1::ListSessionsResponse*) override;
  grpc::Status CreateFdToken(grpc::ServerContext*, const v1::CreateFdTokenRequest*,
                             v1::CreateFdTokenResponse*) override;
  grpc::Status RegisterRegion(grpc::ServerContext*, const v1::RegisterRegionRequest*,
                              v1::RegisterRegionResponse*) override;
  grpc::Status UnregisterRegion(grpc::ServerContext*, const v1::UnregisterRegionRequest*,
                                v1::UnregisterRegionResponse*) override;
  grpc::Status ListRegions(grpc::ServerContext*, const v1::ListRegionsRequest*,
                           v1::ListRegionsResponse*) override;
  grpc::Status RegisterBlockSet(grpc::ServerContext*, const v1::RegisterBlockSetRequest*,
                                v1::RegisterBlockSetResponse*) override;
  grpc::Status UnregisterBlockSet(grpc::ServerContext*, const v1::UnregisterBlockSetRequest*,
                                  v1::UnregisterBlockSetResponse*) override;
  grpc::Status ListBlockSets(grpc::ServerContext*, const v1::ListBlockSetsRequest*,
                             v1::ListBlockSetsResponse*) override;
  grpc::Status CreatePool(grpc::ServerContext*, const v1::CreatePoolRequest*,
                          v1::CreatePoolResponse*) override;
  grpc::Status DestroyPool(grpc::ServerContext*, const v1::DestroyPoolRequest*,
                           v1::DestroyPoolResponse*) override;
  grpc::Status ListPools(grpc::ServerContext*, const v1::ListPoolsRequest*,
                         v1::ListPoolsResponse*) override;
  grpc::Status AllocateBlocks(grpc::ServerContext*, const v1::AllocateBlocksRequest*,
                              v1::AllocateBlocksResponse*) override;
  grpc::Status FreeBlocks(grpc::ServerContext*, const v1::FreeBlocksRequest*,
                          v1::FreeBlocksResponse*) override;
  grpc::Status SubmitBatch(grpc::ServerContext*, const v1::SubmitBatchRequest*,
                           v1::SubmitBatchResponse*) override;
  grpc::Status Wait(grpc::ServerContext*, const v1::WaitRequest*, v1::WaitResponse*) override;
  grpc::Status CancelJobs(grpc::ServerContext*, const v1::CancelJobsRequest*,
                          v1::CancelJobsResponse*) override;
  grpc::Status GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                        v1::GetStatsResponse*) override;

 private:
  Daemon& daemon_;
  const ConnectionTable& connections_;
};

}  // namespace kvshuttle
