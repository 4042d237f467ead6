// Daemon: the RPC logic behind the service edge.
#include "server/daemon.h"

#include <algorithm>
#include <random>
#include <thread>
#include <atomic>
#include <mutex>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/proto_convert.h"
#include "server/ops/logging.h"
#include "server/job_planner.h"
#include "server/memory/importer.h"

#ifndef KVS_VERSION
#define KVS_VERSION "0.0.0"
#endif

namespace kvshuttle {

namespace {

constexpr size_t kMaxNameBytes = 128;
constexpr absl::Duration kPoll = absl::Milliseconds(100);

std::string NewSessionId() {
  std::random_device rd;
  std::string bytes(16, '\0');
  for (char& c : bytes) c = static_cast<char>(rd());
  return absl::BytesToHexString(bytes);
}

// Sessions in logs: the first 8 hex digits. The full id is a capability (whoever holds it can
// use the session), so it is never logged.
std::string LogSessionId(const std::string& id) { return id.substr(0, 8); }

// "job failed" lines: a lost GPU fails every job, which must not flood the log.
LogRateLimiter& JobFailureLogLimit() {
  static LogRateLimiter limiter(10);
  return limiter;
}

absl::Status CheckName(const std::string& name) {
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: ", name.size(), " bytes; at most ", kMaxNameBytes));
  }
  return absl::OkStatus();
}

v1::BlockSet BlockSetToProto(const BlockSetRecord& bs, const GpuRuntime& gpu) {
  v1::BlockSet out;
  out.set_block_set_id(bs.id);
  out.set_name(bs.name);
  *out.mutable_layout() = LayoutToProto(bs.layout);
  out.set_num_blocks(static_cast<uint32_t>(bs.num_blocks));
  const bool device = bs.placement.place == MemoryPlace::kDevice;
  out.set_memory(device ? v1::MEMORY_DEVICE : v1::MEMORY_HOST);
  for (const GpuDeviceInfo& d : gpu.devices()) {
    if (device && d.ordinal == bs.placement.device) out.set_gpu_uuid(d.uuid);
  }
  return out;
}

}  // namespace

Daemon::Daemon(const DaemonOptions& options, std::unique_ptr<GpuRuntime> gpu)
    : options_(options),
      gpu_(std::move(gpu)),
      budgets_(MakeBudgetSet(options.budgets, *gpu_)),
      pools_(*gpu_, options.limits.max_pools, *budgets_) {}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Create(const DaemonOptions& options,
                                                       std::unique_ptr<GpuRuntime> gpu) {
  std::unique_ptr<Daemon> d(new Daemon(options, std::move(gpu)));
  if (options.use_gpus) {
    for (const GpuDeviceInfo& dev : d->gpu_->devices()) {
      if (static_cast<int>(d->gpu_workers_.size()) <= dev.ordinal) {
        d->gpu_workers_.resize(dev.ordinal + 1);
      }
      QueueLimits limits(options.limits.queue_capacity, options.limits.session_queue_capacity);
      limits.gpu_slice_bytes = options.limits.gpu_slice_bytes;
      ASSIGN_OR_RETURN(d->gpu_workers_[dev.ordinal], d->gpu_->CreateWorker(dev.ordinal, limits));
    }
  }
  d->cpu_executor_ = CreateCpuExecutor(
      std::max(1, options.cpu_threads),
      QueueLimits(options.limits.queue_capacity, options.limits.session_queue_capacity));
  d->InitMetrics();
  if (!options.fault_fail_jobs_of_client.empty()) {
    LogWarning("TEST ONLY: every job of sessions with this client name fails INTERNAL",
               {{"fault_fail_jobs_of_client", options.fault_fail_jobs_of_client}});
  }
  d->reaper_ = std::thread([raw = d.get()] { raw->ReaperLoop(); });
  return d;
}

Daemon::~Daemon() {
  stop_reaper_ = true;
  if (reaper_.joinable()) reaper_.join();
  BeginDrain();
  Drain();
  std::map<std::string, std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sessions.swap(sessions_);
  }
  for (auto& [id, s] : sessions) s->Close();
}

void Daemon::ReaperLoop() {
  while (!stop_reaper_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::vector<std::shared_ptr<Session>> expired;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const absl::Time now = absl::Now();
      for (const auto& [id, s] : sessions_) {
        if (s->Expired(now)) expired.push_back(s);
      }
    }
    for (const auto& s : expired) {
      LogInfo("session lease expired", {{"session", LogSessionId(s->id())}});
      CloseAndForget(s);
    }
    fd_tokens_.Expire(absl::Now());
  }
}

void Daemon::CloseAndForget(const std::shared_ptr<Session>& session) {
  session->Close();
  fd_tokens_.DropSession(session->serial());
  size_t erased = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    erased = sessions_.erase(session->id());
  }
  if (erased > 0) LogInfo("session closed", {{"session", LogSessionId(session->id())}});
}

absl::StatusOr<std::shared_ptr<Session>> Daemon::FindSession(const std::string& id,
                                                             const CallContext& call) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || !it->second->UsableBy(call.peer)) {
    return absl::NotFoundError(
        id.empty() ? "session_id: missing; call OpenSession first"
                   : "session_id: no such session (closed, expired or never opened)");
  }
  return it->second;
}

absl::Status Daemon::GetInfo(const CallContext& call, const v1::GetInfoRequest& req,
                             v1::GetInfoResponse* resp) {
  resp->set_version(KVS_VERSION);
  for (const GpuDeviceInfo& d : gpu_->devices()) {
    v1::DeviceInfo* info = resp->add_devices();
    info->set_ordinal(static_cast<uint32_t>(d.ordinal));
    info->set_uuid(d.uuid);
    info->set_name(d.name);
    info->set_total_memory_bytes(d.total_memory);
    info->set_sm_count(static_cast<uint32_t>(d.sm_count));
    if (d.ordinal < static_cast<int>(gpu_workers_.size()) && gpu_workers_[d.ordinal]) {
      info->set_queue_depth(static_cast<uint32_t>(gpu_workers_[d.ordinal]->queue_depth()));
    }
  }
  resp->set_cpu_executor(true);
  v1::Limits* l = resp->mutable_limits();
  const Limits& lim = options_.limits;
  l->set_max_sessions(lim.max_sessions);
  l->set_max_regions_per_session(lim.max_regions_per_session);
  l->set_max_block_sets_per_session(lim.max_block_sets_per_session);
  l->set_max_jobs_per_batch(lim.max_jobs_per_batch);
  l->set_max_pairs_per_job(lim.max_pairs_per_job);
  l->set_queue_capacity(lim.queue_capacity);
  l->set_max_message_bytes(static_cast<uint64_t>(lim.max_message_bytes));
  l->set_lease_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(options_.lease)));
  l->set_max_sessions_per_client(lim.max_sessions_per_client);
  l->set_max_waits_per_session(lim.max_waits_per_session);
  l->set_max_wait_ids(lim.max_wait_ids);
  l->set_session_queue_capacity(lim.session_queue_capacity);
  l->set_max_connections(options_.edge.max_connections);
  l->set_max_connections_per_uid(options_.edge.max_connections_per_uid);
  resp->set_listen_address(listen_address_);
  resp->set_draining(draining_);
  resp->set_fd_socket(options_.fd_socket);
  // The caller's own session, when named, for its share of the per-session budgets.
  std::shared_ptr<Session> own;
  if (!req.session_id().empty()) {
    absl::StatusOr<std::shared_ptr<Session>> found = FindSession(req.session_id(), call);
    if (found.ok()) own = *found;
  }
  for (const Budget* b : budgets_->All()) {
    v1::BudgetUsage* u = resp->add_budgets();
    u->set_name(b->name());
    u->set_unit(b->unit());
    u->set_limit(b->limit());
    u->set_used(b->used());
    u->set_session_limit(b->session_limit());
    if (own != nullptr && b == &budgets_->metadata) {
      u->set_session_used(own->metadata_account()->used.load());
    } else if (own != nullptr && b == &budgets_->maps) {
      u->set_session_used(own->maps_account()->used.load());
    } else if (own != nullptr && b == &budgets_->pool_host) {
      u->set_session_used(own->pool_host_account()->used.load());
    } else if (own != nullptr) {
      for (size_t ordinal = 0; ordinal < budgets_->pool_device.size(); ++ordinal) {
        if (budgets_->pool_device[ordinal].get() == b) {
          u->set_session_used(own->pool_device_account(static_cast<int>(ordinal))->used.load());
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Daemon::OpenSession(const CallContext& call, const v1::OpenSessionRequest& req,
                                 v1::OpenSessionResponse* resp) {
  RETURN_IF_ERROR(CheckServing("OpenSession"));
  RETURN_IF_ERROR(CheckName(req.client_name()));
  auto session = std::make_shared<Session>(NewSessionId(), next_session_serial_++,
                                           req.client_name(), call.peer,
                                           absl::Now() + options_.lease, options_.limits);
  const std::string client = call.peer.ClientKey();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int>(sessions_.size()) >= options_.limits.max_sessions) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sessions: ", sessions_.size(), " of at most ", options_.limits.max_sessions, " open"));
    }
    int of_client = 0;
    for (const auto& [id, s] : sessions_) of_client += s->owner().ClientKey() == client ? 1 : 0;
    if (of_client >= options_.limits.max_sessions_per_client) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sessions: ", client, " holds ", of_client, " of at most ",
          options_.limits.max_sessions_per_client, " sessions per client"));
    }
    sessions_.emplace(session->id(), session);
  }
  LogInfo("session opened", {{"session", LogSessionId(session->id())},
                             {"client", req.client_name()},
                             {"peer", call.peer.address}});
  resp->set_session_id(session->id());
  resp->set_lease_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(options_.lease)));
  return absl::OkStatus();
}

absl::Status Daemon::Attach(const CallContext& call, const v1::AttachRequest& req, const std::function<bool(const v1::SessionEvent&)>& write) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  RETURN_IF_ERROR(session->Attach());
  v1::SessionEvent hello;
  hello.set_attached(session->id());
  if (!write(hello)) {
    CloseAndForget(session);
    return absl::OkStatus();
  }
  while (true) {
    if (call.cancelled()) {  // the client went away: its session goes with it
      CloseAndForget(session);
      return absl::CancelledError("Attach: client disconnected; session closed");
    }
    bool closed = false;
    for (const v1::JobResult& result : session->TakeEvents(kPoll, &closed)) {
      v1::SessionEvent event;
      *event.mutable_job_done() = result;
      if (!write(event)) {
        CloseAndForget(session);
        return absl::OkStatus();
      }
    }
    if (closed) return absl::OkStatus();
    if (drained_) {
      // Every job has completed; deliver what is left before ending the stream.
      for (const v1::JobResult& result : session->TakeEvents(absl::ZeroDuration(), &closed)) {
        v1::SessionEvent event;
        *event.mutable_job_done() = result;
        if (!write(event)) break;
      }
      session->Detach();
      return absl::UnavailableError("Attach: the daemon is shutting down");
    }
  }
}

namespace {

// Longest launch deadline a channel submit may ask for (a day; 0 = none).
constexpr double kMaxChannelTimeoutSeconds = 86400;

v1::ChannelEvent Rejected(uint64_t tag, const absl::Status& status) {
  v1::ChannelEvent event;
  v1::ChannelRejected* rejected = event.mutable_rejected();
  rejected->set_tag(tag);
  rejected->set_code(static_cast<int>(status.code()));
  rejected->set_message(std::string(status.message()));
  return event;
}

}  // namespace

absl::Status Daemon::Channel(const CallContext& call,
                             const std::function<bool(v1::ChannelRequest*)>& read,
                             const std::function<bool(const v1::ChannelEvent&)>& write,
                             const std::function<void()>& cancel) {
  v1::ChannelRequest first;
  if (!read(&first)) {
    return absl::InvalidArgumentError(
        "Channel: no first message: the stream ended before `open`, or its bytes are not a "
        "valid ChannelRequest");
  }
  if (first.request_case() != v1::ChannelRequest::kOpen) {
    return absl::InvalidArgumentError(
        "Channel: the first message must be `open` with the session id");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(first.open(), call));
  RETURN_IF_ERROR(session->Attach());
  // One writer at a time. A submit holds the lock from validation to its `accepted`, so that
  // no job_done of its jobs can overtake it.
  std::mutex write_mu;
  bool broken = false;  // guarded by write_mu
  auto send_locked = [&](const v1::ChannelEvent& event) {
    if (!broken && !write(event)) broken = true;
    return !broken;
  };
  {
    v1::ChannelEvent hello;
    hello.set_attached(session->id());
    std::lock_guard<std::mutex> lock(write_mu);
    if (!send_locked(hello)) {
      CloseAndForget(session);
      return absl::OkStatus();
    }
  }
  std::atomic<bool> protocol_error{false};
  std::atomic<bool> reader_exited{false};
  std::thread reader([&] {
    v1::ChannelRequest request;
    bool misbehaved = false;
    while (read(&request)) {
      std::lock_guard<std::mutex> lock(write_mu);
      if (request.request_case() != v1::ChannelRequest::kSubmit) {
        send_locked(Rejected(0, absl::InvalidArgumentError(
                                    "Channel: after `open`, only `submit` messages")));
        misbehaved = true;
        break;
      }
      v1::ChannelSubmit& submit = *request.mutable_submit();
      const double timeout = submit.timeout_seconds();
      absl::Status status;
      v1::SubmitBatchResponse accepted;
      if (!(timeout >= 0 && timeout <= kMaxChannelTimeoutSeconds)) {
        status = absl::InvalidArgumentError(absl::StrCat(
            "submit.timeout_seconds: ", timeout, "; allowed: 0 (none) to ",
            kMaxChannelTimeoutSeconds));
      } else {
        CallContext job_call = call;
        job_call.deadline = timeout > 0 ? absl::Now() + absl::Seconds(timeout)
                                        : absl::InfiniteFuture();
        v1::SubmitBatchRequest batch;
        batch.set_session_id(session->id());
        batch.mutable_jobs()->Swap(submit.mutable_jobs());
        status = SubmitBatch(job_call, batch, &accepted);
      }
      v1::ChannelEvent answer;
      if (status.ok()) {
        answer.mutable_accepted()->set_tag(submit.tag());
        answer.mutable_accepted()->mutable_job_ids()->Swap(accepted.mutable_job_ids());
      } else {
        answer = Rejected(submit.tag(), status);
      }
      if (!send_locked(answer)) break;
    }
    reader_exited = true;  // before protocol_error: the pump must not cancel then
    if (misbehaved) protocol_error = true;
  });
  absl::Status result = absl::OkStatus();
  bool close = false;
  while (true) {
    if (call.cancelled()) {  // the client went away: its session goes with it
      close = true;
      result = absl::CancelledError("Channel: client disconnected; session closed");
      break;
    }
    if (protocol_error) {
      close = true;
      result = absl::InvalidArgumentError(
          "Channel: after `open`, only `submit` messages; session closed");
      break;
    }
    bool closed = false;
    const bool draining = drained_;
    for (const v1::JobResult& done : session->TakeEvents(kPoll, &closed)) {
      v1::ChannelEvent event;
      *event.mutable_job_done() = done;
      std::lock_guard<std::mutex> lock(write_mu);
      if (!send_locked(event)) break;
    }
    bool is_broken;
    {
      std::lock_guard<std::mutex> lock(write_mu);
      is_broken = broken;
    }
    if (is_broken) {
      close = true;
      break;
    }
    if (closed) break;
    if (draining) {  // every job had completed before this last delivery
      session->Detach();
      result = absl::UnavailableError("Channel: the daemon is shutting down");
      v1::ChannelEvent closing;
      closing.mutable_closing()->set_code(static_cast<int>(result.code()));
      closing.mutable_closing()->set_message(std::string(result.message()));
      std::lock_guard<std::mutex> lock(write_mu);
      send_locked(closing);
      break;
    }
  }
  // A reader still in `read` is unblocked by ending the stream (its status is then CANCELLED;
  // a reader that stopped by itself leaves the stream to end with `result`).
  if (!reader_exited) cancel();
  reader.join();
  if (close) CloseAndForget(session);
  return result;
}

absl::Status Daemon::KeepAlive(const CallContext& call, const v1::KeepAliveRequest& req, v1::KeepAliveResponse* resp) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  session->Touch(absl::Now() + options_.lease);
  resp->set_lease_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(options_.lease)));
  return absl::OkStatus();
}

absl::Status Daemon::CloseSession(const CallContext& call, const v1::CloseSessionRequest& req,
                                  v1::CloseSessionResponse*) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  CloseAndForget(session);
  return absl::OkStatus();
}

absl::Status Daemon::ListSessions(const CallContext& call, const v1::ListSessionsRequest& req,
                                  v1::ListSessionsResponse* resp) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, s] : sessions_) {
    *resp->add_sessions() = s->Summary(!req.session_id().empty() && id == req.session_id());
  }
  return absl::OkStatus();
}

absl::Status Daemon::CreateFdToken(const CallContext& call, const v1::CreateFdTokenRequest& req,
                                   v1::CreateFdTokenResponse* resp) {
  RETURN_IF_ERROR(CheckServing("CreateFdToken"));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  if (options_.fd_socket.empty()) {
    return absl::FailedPreconditionError(
        "CreateFdToken: this daemon serves no descriptor side channel (--fd_socket is empty)");
  }
  ASSIGN_OR_RETURN(std::string token, fd_tokens_.Issue(session->serial(), call.peer, absl::Now()));
  resp->set_token(std::move(token));
  resp->set_socket_path(options_.fd_socket);
  resp->set_max_fds(static_cast<uint32_t>(fd_tokens_.limits().max_fds_per_token));
  resp->set_expires_in_seconds(absl::ToDoubleSeconds(fd_tokens_.limits().lifetime));
  return absl::OkStatus();
}

absl::Status Daemon::RegisterRegion(const CallContext& call, const v1::RegisterRegionRequest& req,
                                    v1::RegisterRegionResponse* resp) {
  RETURN_IF_ERROR(CheckServing("RegisterRegion"));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  RETURN_IF_ERROR(CheckName(req.name()));
  ASSIGN_OR_RETURN(const RegionImporter import, FindImporter(req));
  // The mappings a region holds are budgeted before it is mapped: the kernel's map limit
  // (vm.max_map_count) is shared by every client and by the daemon's own allocations.
  ASSIGN_OR_RETURN(Budget::Charge maps,
                   budgets_->maps.Take(MapsOf(req), "RegisterRegion", session->maps_account()));
  const absl::Time open_start = absl::Now();
  ASSIGN_OR_RETURN(
      ImportedRegion imported,
      import(req, ImportContext{call.peer, session->serial(), *gpu_, fd_tokens_,
                                options_.shm_trust_gid}));
  if (imported.kind == v1::MEMORY_DEVICE) metrics_->ObserveIpcOpen(absl::Now() - open_start);
  v1::Region info;
  info.set_memory(imported.kind);
  info.set_gpu_uuid(imported.gpu_uuid);
  info.set_size(imported.memory->size());
  // The maps charge goes with the memory (which in-flight jobs may keep past the region).
  Memory* const raw = imported.memory.get();
  std::shared_ptr<Memory> memory = std::shared_ptr<Memory>(
      raw,
      [memory = std::move(imported.memory),
       charge = std::make_shared<Budget::Charge>(std::move(maps))](Memory*) mutable {
        memory.reset();
        charge.reset();
      });
  ASSIGN_OR_RETURN(*resp->mutable_region(),
                   session->AddRegion(next_id_++, req.name(), info, std::move(memory)));
  return absl::OkStatus();
}

absl::Status Daemon::UnregisterRegion(const CallContext& call, const v1::UnregisterRegionRequest& req,
                                      v1::UnregisterRegionResponse* resp) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  ASSIGN_OR_RETURN(const bool deferred, session->RemoveRegion(req.region_id()));
  resp->set_deferred(deferred);
  return absl::OkStatus();
}

absl::Status Daemon::ListRegions(const CallContext& call, const v1::ListRegionsRequest& req,
                                 v1::ListRegionsResponse* resp) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  for (v1::Region& r : session->ListRegions()) *resp->add_regions() = std::move(r);
  return absl::OkStatus();
}

absl::Status Daemon::RegisterBlockSet(const CallContext& call, const v1::RegisterBlockSetRequest& req,
                                      v1::RegisterBlockSetResponse* resp) {
  RETURN_IF_ERROR(CheckServing("RegisterBlockSet"));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  RETURN_IF_ERROR(CheckName(req.name()));
  const RegionLookup lookup = [&session](uint64_t id) { return session->FindRegion(id); };
  // Charged before the tables are built (a 64-byte request can ask for millions of entries).
  ASSIGN_OR_RETURN(Budget::Charge charge,
                   budgets_->metadata.Take(BlockSetMetadataBytes(req, options_.limits.max_block_set_addresses),
                                           "RegisterBlockSet",
                                           session->metadata_account()));
  ASSIGN_OR_RETURN(std::shared_ptr<BlockSetRecord> record,
                   BuildBlockSet(req, lookup, options_.limits.max_block_set_addresses));
  record->id = next_id_++;
  record->charge = std::move(charge);
  *resp->mutable_block_set() = BlockSetToProto(*record, *gpu_);
  return session->AddBlockSet(std::move(record));
}

absl::Status Daemon::UnregisterBlockSet(const CallContext& call, const v1::UnregisterBlockSetRequest& req,
                                        v1::UnregisterBlockSetResponse*) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  return session->RemoveBlockSet(req.block_set_id());
}

absl::Status Daemon::ListBlockSets(const CallContext& call, const v1::ListBlockSetsRequest& req,
                                   v1::ListBlockSetsResponse* resp) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  for (const auto& bs : session->ListBlockSets()) {
    *resp->add_block_sets() = BlockSetToProto(*bs, *gpu_);
  }
  return absl::OkStatus();
}

absl::Status Daemon::CreatePool(const CallContext& call, const v1::CreatePoolRequest& req, v1::CreatePoolResponse* resp) {
  RETURN_IF_ERROR(CheckServing("CreatePool"));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  PoolTable::PoolAccounts accounts;
  accounts.metadata = session->metadata_account();
  accounts.host = session->pool_host_account();
  accounts.device = [&session](int ordinal) { return session->pool_device_account(ordinal); };
  ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, pools_.Create(req, accounts));
  *resp->mutable_pool() = pool->ToProto();
  return absl::OkStatus();
}

absl::Status Daemon::DestroyPool(const CallContext& call, const v1::DestroyPoolRequest& req, v1::DestroyPoolResponse*) {
  RETURN_IF_ERROR(FindSession(req.session_id(), call).status());
  return pools_.Destroy(req.name());
}

absl::Status Daemon::ListPools(const CallContext&, const v1::ListPoolsRequest&,
                               v1::ListPoolsResponse* resp) {
  for (const auto& pool : pools_.List()) *resp->add_pools() = pool->ToProto();
  return absl::OkStatus();
}

absl::Status Daemon::AllocateBlocks(const CallContext& call, const v1::AllocateBlocksRequest& req,
                                    v1::AllocateBlocksResponse* resp) {
  RETURN_IF_ERROR(FindSession(req.session_id(), call).status());
  ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, pools_.Find(req.pool()));
  ASSIGN_OR_RETURN(const std::vector<uint32_t> ids, pool->Allocate(req.count()));
  for (uint32_t id : ids) resp->add_block_ids(id);
  return absl::OkStatus();
}

absl::Status Daemon::FreeBlocks(const CallContext& call, const v1::FreeBlocksRequest& req, v1::FreeBlocksResponse*) {
  RETURN_IF_ERROR(FindSession(req.session_id(), call).status());
  ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, pools_.Find(req.pool()));
  return pool->Free({req.block_ids().begin(), req.block_ids().end()});
}

absl::Status Daemon::SubmitBatch(const CallContext& call, const v1::SubmitBatchRequest& req, v1::SubmitBatchResponse* resp) {
  const absl::Time received = absl::Now();
  // The batch's validation and planning time, filled in once all of it is planned (before any
  // of its jobs can start) and reported in each JobResult.
  auto submit_cost = std::make_shared<std::atomic<int64_t>>(0);
  RETURN_IF_ERROR(CheckServing("SubmitBatch"));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  if (call.cancelled()) return absl::CancelledError("SubmitBatch: call cancelled; nothing queued");
  if (absl::Now() >= call.deadline) {
    return absl::DeadlineExceededError("SubmitBatch: deadline passed; nothing queued");
  }
  const Limits& lim = options_.limits;
  if (req.jobs_size() > lim.max_jobs_per_batch) {
    return absl::ResourceExhaustedError(absl::StrCat("jobs: ", req.jobs_size(),
                                                     " jobs; at most ", lim.max_jobs_per_batch,
                                                     " per batch"));
  }
  const EndpointLookup lookup{
      [&session](uint64_t id) { return session->FindBlockSet(id); },
      [this](const std::string& name) { return pools_.Find(name); }};
  const PlanCharger charge = [&](int64_t bytes, const std::string& what) {
    return budgets_->metadata.Take(bytes, what, session->metadata_account());
  };
  // Validate and plan every job first: a batch is queued whole or not at all.
  std::map<Executor*, std::vector<std::unique_ptr<JobTask>>> groups;
  std::vector<std::pair<uint64_t, std::shared_ptr<CancelToken>>> ids;
  std::weak_ptr<Session> weak_session = session;
  for (int i = 0; i < req.jobs_size(); ++i) {
    const std::string field = absl::StrCat("jobs[", i, "]");
    ASSIGN_OR_RETURN(PlannedJob planned, PlanJob(req.jobs(i), field, lookup, lim, charge));
    Executor* executor = cpu_executor_.get();
    if (planned.device != kCpuJob) {
      if (planned.device >= static_cast<int>(gpu_workers_.size()) ||
          !gpu_workers_[planned.device]) {
        return absl::FailedPreconditionError(
            absl::StrCat(field, ": GPU ", planned.device, " has no worker (GPUs disabled?)"));
      }
      executor = gpu_workers_[planned.device].get();
    }
    auto task = std::make_unique<JobTask>(std::move(planned.plan));
    task->job_id = next_id_++;
    task->backend = planned.backend;
    task->max_sms = planned.max_sms;
    task->session = session->serial();
    task->holds = {planned.src.hold, planned.dst.hold,
                   std::make_shared<Budget::Charge>(std::move(planned.plan_charge))};
    task->cancelled = std::make_shared<CancelToken>();
    task->deadline = call.deadline;
    if (!options_.fault_fail_jobs_of_client.empty() &&
        session->client_name() == options_.fault_fail_jobs_of_client) {
      task->injected_failure = absl::InternalError(
          absl::StrCat("job ", task->job_id, " on ", executor->name(),
                       ": launch failed (injected by --fault_fail_jobs_of_client; test only)"));
    }
    if (executor != cpu_executor_.get()) {
      task->completion_event = std::move(planned.completion_event);
      task->start_event = std::move(planned.start_event);
      task->launched = [weak_session, id = task->job_id] {
        if (auto s = weak_session.lock()) s->MarkLaunched(id);
      };
    }
    JobCompletion completion;
    completion.job_id = task->job_id;
    completion.bytes = static_cast<uint64_t>(task->plan.bytes());
    completion.executor = executor->name();
    completion.metrics = &metrics_->Executor(ExecutorLabel(planned.device));
    completion.submit_cost = submit_cost;
    completion.log_session = LogSessionId(session->id());
    task->done = [this, weak_session, completion = std::move(completion)](
                     const JobOutcome& outcome) {
      const v1::JobResult result = CompleteJob(completion, outcome);
      if (auto s = weak_session.lock()) s->CompleteJob(result);
    };
    ids.emplace_back(task->job_id, task->cancelled);
    resp->add_job_ids(task->job_id);
    groups[executor].push_back(std::move(task));
  }
  RETURN_IF_ERROR(session->AddJobs(ids));
  submit_cost->store(absl::ToInt64Nanoseconds(absl::Now() - received));
  for (auto& [executor, tasks] : groups) {
    const absl::Status queued = executor->Submit(tasks);
    if (queued.ok()) continue;
    // Withdraw the whole batch: tasks already queued on other executors are cancelled (they
    // are dropped without running), and no job of it exists for the client any more.
    std::vector<uint64_t> withdrawn;
    for (auto& [id, token] : ids) {
      token->Cancel();
      withdrawn.push_back(id);
    }
    session->WithdrawJobs(withdrawn);
    resp->clear_job_ids();
    return queued;
  }
  return absl::OkStatus();
}

v1::JobResult Daemon::CompleteJob(const JobCompletion& job, const JobOutcome& outcome) {
  v1::JobResult r;
  r.set_job_id(job.job_id);
  r.set_submit_seconds(static_cast<double>(job.submit_cost->load()) * 1e-9);
  r.set_code(static_cast<int>(outcome.status.code()));
  r.set_message(std::string(outcome.status.message()));
  r.set_backend(BackendToProto(outcome.backend));
  r.set_executor(job.executor);
  r.set_queue_seconds(absl::ToDoubleSeconds(outcome.queued));
  r.set_run_seconds(absl::ToDoubleSeconds(outcome.run));
  if (outcome.status.ok()) {
    r.set_state(v1::JOB_DONE);
    r.set_bytes(job.bytes);
    ++jobs_done_;
    bytes_moved_ += job.bytes;
  } else if (outcome.status.code() == absl::StatusCode::kCancelled ||
             outcome.status.code() == absl::StatusCode::kDeadlineExceeded) {
    r.set_state(v1::JOB_CANCELLED);
    ++jobs_cancelled_;
  } else {
    r.set_state(v1::JOB_FAILED);
    ++jobs_failed_;
    uint64_t suppressed = 0;
    if (JobFailureLogLimit().Allow(absl::Now(), &suppressed)) {
      LogWarning("job failed", {{"session", job.log_session},
                                {"job", job.job_id},
                                {"executor", job.executor},
                                {"code", absl::StatusCodeToString(outcome.status.code())},
                                {"error", outcome.status.message()},
                                {"suppressed", suppressed}});
    }
  }
  job.metrics->ObserveJob(r.state(), outcome, job.bytes);
  return r;
}

absl::Status Daemon::Wait(const CallContext& call, const v1::WaitRequest& req,
                          v1::WaitResponse* resp) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  if (req.job_ids_size() > options_.limits.max_wait_ids) {
    return absl::ResourceExhaustedError(absl::StrCat("job_ids: ", req.job_ids_size(),
                                                     " ids; at most ", options_.limits.max_wait_ids,
                                                     " per Wait"));
  }
  // The id list and the answer it makes (a JobResult per id) are charged first.
  ASSIGN_OR_RETURN(Budget::Charge charge,
                   budgets_->metadata.Take(
                       static_cast<int64_t>(req.job_ids_size()) *
                           static_cast<int64_t>(sizeof(uint64_t) + sizeof(v1::JobResult)),
                       "Wait", session->metadata_account()));
  RETURN_IF_ERROR(session->BeginWait());
  absl::Time deadline = call.deadline;
  if (req.timeout_seconds() < 0) {
    deadline = absl::Now();  // poll
  } else if (req.timeout_seconds() > 0) {
    deadline = std::min(deadline, absl::Now() + absl::Seconds(req.timeout_seconds()));
  }
  absl::StatusOr<v1::WaitResponse> waited =
      session->Wait({req.job_ids().begin(), req.job_ids().end()}, deadline, req.until_launched(),
                    call.cancelled);
  session->EndWait();
  if (!waited.ok()) return waited.status();
  *resp = *std::move(waited);
  return absl::OkStatus();
}

absl::Status Daemon::CancelJobs(const CallContext& call, const v1::CancelJobsRequest& req,
                                v1::CancelJobsResponse* resp) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(req.session_id(), call));
  std::vector<uint64_t> cancelled, stopping;
  RETURN_IF_ERROR(
      session->CancelJobs({req.job_ids().begin(), req.job_ids().end()}, &cancelled, &stopping));
  for (uint64_t id : cancelled) resp->add_cancelled(id);
  for (uint64_t id : stopping) resp->add_stopping(id);
  return absl::OkStatus();
}

absl::Status Daemon::GetStats(const CallContext&, const v1::GetStatsRequest&,
                              v1::GetStatsResponse* resp) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    resp->set_sessions(sessions_.size());
    uint64_t regions = 0, mapped = 0;
    for (const auto& [id, s] : sessions_) {
      for (const v1::Region& r : s->ListRegions()) {
        ++regions;
        mapped += r.size();
      }
    }
    resp->set_regions(regions);
    resp->set_mapped_bytes(mapped);
  }
  resp->set_jobs_done(jobs_done_);
  resp->set_jobs_failed(jobs_failed_);
  resp->set_jobs_cancelled(jobs_cancelled_);
  resp->set_bytes_moved(bytes_moved_);
  auto add = [resp](const Executor& e) {
    v1::ExecutorStats* s = resp->add_executors();
    s->set_name(e.name());
    s->set_queue_depth(static_cast<uint32_t>(e.queue_depth()));
    s->set_queue_capacity(static_cast<uint32_t>(e.capacity()));
    s->set_jobs_done(e.jobs_done());
  };
  for (const auto& w : gpu_workers_) {
    if (w) add(*w);
  }
  add(*cpu_executor_);
  return absl::OkStatus();
}

absl::Status Daemon::CheckServing(absl::string_view rpc) const {
  if (!draining_) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(rpc, ": the daemon is draining"));
}

void Daemon::BeginDrain() { draining_ = true; }

void Daemon::Drain(absl::Time deadline) {
  if (drained_) return;
  // The executors drain side by side: each gets the whole time left.
  std::vector<std::thread> drains;
  for (auto& w : gpu_workers_) {
    if (w) drains.emplace_back([&w, deadline] { w->Drain(deadline); });
  }
  if (cpu_executor_) drains.emplace_back([this, deadline] { cpu_executor_->Drain(deadline); });
  for (std::thread& t : drains) t.join();
  drained_ = true;
}

}  // namespace kvshuttle
