// The daemon's core: sessions, regions, block sets, pools, job submission and executors,
// behind one method per RPC that speaks proto messages and absl::Status. The gRPC service
// (server/service.cc) is a thin shell around it.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/call_context.h"
#include "server/daemon_metrics.h"
#include "server/options.h"
#include "server/budget.h"
#include "server/memory/fd_tokens.h"
#include "server/pool.h"
#include "server/runtime/gpu_runtime.h"
#include "server/session.h"

namespace kvshuttle {


class Daemon {
 public:
  // Starts executors (a worker per GPU of `gpu` unless options.use_gpus is false, and the CPU
  // executor) and the lease reaper.
  static absl::StatusOr<std::unique_ptr<Daemon>> Create(const DaemonOptions& options,
                                                        std::unique_ptr<GpuRuntime> gpu);
  ~Daemon();

  absl::Status GetInfo(const CallContext& call, const v1::GetInfoRequest& req, v1::GetInfoResponse* resp);
  absl::Status OpenSession(const CallContext& call, const v1::OpenSessionRequest& req, v1::OpenSessionResponse* resp);
  // Blocks for the life of the stream: calls `write` for each event; returns when the session
  // closes (OK), the client goes away (the session is then closed) or the daemon drains
  // (UNAVAILABLE). `write` returning false means the client is gone.
  absl::Status Attach(const CallContext& call, const v1::AttachRequest& req, const std::function<bool(const v1::SessionEvent&)>& write);
  // The streaming channel (proto Channel). `read` blocks for the client's next message (false
  // once its side ended), `write` sends one event (false once the stream broke), `cancel` ends
  // the stream from the daemon's side (it unblocks `read`). Returns when the stream is done.
  absl::Status Channel(const CallContext& call,
                       const std::function<bool(v1::ChannelRequest*)>& read,
                       const std::function<bool(const v1::ChannelEvent&)>& write,
                       const std::function<void()>& cancel);
  absl::Status KeepAlive(const CallContext& call, const v1::KeepAliveRequest& req, v1::KeepAliveResponse* resp);
  absl::Status CloseSession(const CallContext& call, const v1::CloseSessionRequest& req, v1::CloseSessionResponse* resp);
  absl::Status ListSessions(const CallContext& call, const v1::ListSessionsRequest& req, v1::ListSessionsResponse* resp);

  absl::Status CreateFdToken(const CallContext& call, const v1::CreateFdTokenRequest& req,
                             v1::CreateFdTokenResponse* resp);

  absl::Status RegisterRegion(const CallContext& call, const v1::RegisterRegionRequest& req,
                              v1::RegisterRegionResponse* resp);
  absl::Status UnregisterRegion(const CallContext& call, const v1::UnregisterRegionRequest& req,
                                v1::UnregisterRegionResponse* resp);
  absl::Status ListRegions(const CallContext& call, const v1::ListRegionsRequest& req, v1::ListRegionsResponse* resp);

  absl::Status RegisterBlockSet(const CallContext& call, const v1::RegisterBlockSetRequest& req,
                                v1::RegisterBlockSetResponse* resp);
  absl::Status UnregisterBlockSet(const CallContext& call, const v1::UnregisterBlockSetRequest& req,
                                  v1::UnregisterBlockSetResponse* resp);
  absl::Status ListBlockSets(const CallContext& call, const v1::ListBlockSetsRequest& req, v1::ListBlockSetsResponse* resp);

  absl::Status CreatePool(const CallContext& call, const v1::CreatePoolRequest& req, v1::CreatePoolResponse* resp);
  absl::Status DestroyPool(const CallContext& call, const v1::DestroyPoolRequest& req, v1::DestroyPoolResponse* resp);
  absl::Status ListPools(const CallContext& call, const v1::ListPoolsRequest& req, v1::ListPoolsResponse* resp);
  absl::Status AllocateBlocks(const CallContext& call, const v1::AllocateBlocksRequest& req,
                              v1::AllocateBlocksResponse* resp);
  absl::Status FreeBlocks(const CallContext& call, const v1::FreeBlocksRequest& req, v1::FreeBlocksResponse* resp);

  absl::Status SubmitBatch(const CallContext& call, const v1::SubmitBatchRequest& req, v1::SubmitBatchResponse* resp);
  absl::Status Wait(const CallContext& call, const v1::WaitRequest& req, v1::WaitResponse* resp);
  absl::Status CancelJobs(const CallContext& call, const v1::CancelJobsRequest& req, v1::CancelJobsResponse* resp);
  absl::Status GetStats(const CallContext& call, const v1::GetStatsRequest& req, v1::GetStatsResponse* resp);

  // Drain, step 1: refuse new sessions and jobs (UNAVAILABLE). Step 2 (Drain): run everything
  // queued and in flight until `deadline`, then cancel what is still queued and stop running
  // jobs at their next chunk boundary; then end Attach streams with UNAVAILABLE.
  void BeginDrain();
  void Drain(absl::Time deadline = absl::InfiniteFuture());
  bool draining() const { return draining_.load(); }

  // Listen address reported by GetInfo. Set by main before the server starts: RPC threads read
  // it without a lock.
  void set_listen_address(std::string address) { listen_address_ = std::move(address); }
  // The descriptor tokens the side channel (server/memory/fd_channel.h) delivers to.
  FdTokens& fd_tokens() { return fd_tokens_; }
  const BudgetSet& budgets() const { return *budgets_; }

  // The daemon's metrics (main serves metrics().registry() over HTTP; the service edge
  // observes RPCs). Snapshot: the state behind the scrape-time gauges (daemon_state.cc).
  DaemonMetrics& metrics() { return *metrics_; }
  DaemonSnapshot Snapshot() const;

 private:
  // What the completion step of one job needs (CompleteJob).
  struct JobCompletion {
    uint64_t job_id = 0;
    uint64_t bytes = 0;
    std::string executor;
    ExecutorMetrics* metrics = nullptr;
    std::shared_ptr<std::atomic<int64_t>> submit_cost;  // ns, set once its batch is planned
    std::string log_session;
  };

  Daemon(const DaemonOptions& options, std::unique_ptr<GpuRuntime> gpu);
  // The session `id` if `call`'s caller may use it (Session::UsableBy); NOT_FOUND otherwise,
  // exactly as for ids that never existed.
  absl::StatusOr<std::shared_ptr<Session>> FindSession(const std::string& id,
                                                       const CallContext& call) const;
  // UNAVAILABLE naming `rpc` once draining: calls that would make something new are refused.
  absl::Status CheckServing(absl::string_view rpc) const;
  // The completion step of a job: its JobResult from the executor's outcome, with the daemon's
  // counters, metrics and failure log updated (the caller hands the result to the session).
  v1::JobResult CompleteJob(const JobCompletion& job, const JobOutcome& outcome);
  void ReaperLoop();
  void CloseAndForget(const std::shared_ptr<Session>& session);
  void InitMetrics();  // daemon_state.cc; called by Create once the executors exist

  const DaemonOptions options_;
  // Declared before the executors: outlives the completions that update it.
  const std::unique_ptr<DaemonMetrics> metrics_ = std::make_unique<DaemonMetrics>();
  std::unique_ptr<GpuRuntime> gpu_;
  const std::unique_ptr<BudgetSet> budgets_;  // before pools_, which charges it
  FdTokens fd_tokens_;
  std::vector<std::unique_ptr<Executor>> gpu_workers_;  // index = GPU ordinal
  std::unique_ptr<Executor> cpu_executor_;
  PoolTable pools_;
  std::string listen_address_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> next_session_serial_{1};
  std::atomic<bool> draining_{false};
  std::atomic<bool> drained_{false};
  std::atomic<bool> stop_reaper_{false};
  std::thread reaper_;

  std::atomic<uint64_t> jobs_done_{0};
  std::atomic<uint64_t> jobs_failed_{0};
  std::atomic<uint64_t> jobs_cancelled_{0};
  std::atomic<uint64_t> bytes_moved_{0};
};

}  // namespace kvshuttle
