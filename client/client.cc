// Client and Session: channel setup, the gRPC → absl::Status mapping, and the session's
// background thread (streaming-channel reader or KeepAlive loop).
#include "client/client.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"

namespace kvshuttle {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

std::string NormalizeTarget(absl::string_view target) {
  for (absl::string_view scheme : {"unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme)) return std::string(target);
  }
  if (!absl::StrContains(target, ':') || absl::StartsWith(target, "/") ||
      absl::StartsWith(target, ".")) {
    return absl::StrCat("unix:", target);
  }
  return std::string(target);
}

// ---------------------------------------------------------------------------------------------
// Client

Client::Client(std::string target, std::shared_ptr<grpc::Channel> channel)
    : target_(std::move(target)),
      channel_(std::move(channel)),
      stub_(v1::Shuttle::NewStub(channel_)),
      health_stub_(health_v1::Health::NewStub(channel_)) {}

absl::StatusOr<TlsOptions> TlsOptionsFromFiles(const std::string& root_certs_file,
                                               const std::string& cert_chain_file,
                                               const std::string& private_key_file) {
  TlsOptions tls;
  const std::pair<const std::string*, std::string*> files[] = {
      {&root_certs_file, &tls.root_certs},
      {&cert_chain_file, &tls.cert_chain},
      {&private_key_file, &tls.private_key}};
  for (const auto& [path, pem] : files) {
    if (path->empty()) continue;
    std::ifstream in(*path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("TLS file ", *path, ": cannot read it"));
    std::stringstream text;
    text << in.rdbuf();
    *pem = text.str();
  }
  return tls;
}

absl::StatusOr<std::unique_ptr<Client>> Client::ConnectWith(
    absl::string_view target, absl::Duration timeout,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const std::string& server_name) {
  std::string normalized = NormalizeTarget(target);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kClientMaxMessageBytes);
  args.SetMaxSendMessageSize(kClientMaxMessageBytes);
  // A restarted daemon is found within a second (gRPC's default backoff grows to 2 minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(normalized, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("target \"", target, "\": no channel"));
  }
  std::unique_ptr<Client> client(new Client(std::move(normalized), std::move(channel)));
  RETURN_IF_ERROR(client->WaitForReady(timeout));
  return client;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(absl::string_view target,
                                                        absl::Duration timeout) {
  return ConnectWith(target, timeout, grpc::InsecureChannelCredentials(), "");
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(absl::string_view target,
                                                        absl::Duration timeout,
                                                        const TlsOptions& tls) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tls.root_certs;
  ssl.pem_cert_chain = tls.cert_chain;
  ssl.pem_private_key = tls.private_key;
  return ConnectWith(target, timeout, grpc::SslCredentials(ssl), tls.server_name);
}

absl::Status Client::WaitForReady(absl::Duration timeout) const {
  if (!channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + timeout))) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", target_, " within ",
                                               absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

void Client::SetDeadline(grpc::ClientContext& context, absl::Duration timeout) const {
  if (timeout <= absl::ZeroDuration()) timeout = call_timeout_;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::StatusOr<v1::GetInfoResponse> Client::GetInfo() const {
  return Call(&v1::Shuttle::Stub::GetInfo, v1::GetInfoRequest());
}

absl::StatusOr<v1::ListPoolsResponse> Client::ListPools() const {
  return Call(&v1::Shuttle::Stub::ListPools, v1::ListPoolsRequest());
}

absl::StatusOr<v1::ListSessionsResponse> Client::ListSessions(
    absl::string_view session_id) const {
  v1::ListSessionsRequest request;
  request.set_session_id(std::string(session_id));
  return Call(&v1::Shuttle::Stub::ListSessions, request);
}

absl::StatusOr<v1::GetStatsResponse> Client::GetStats() const {
  return Call(&v1::Shuttle::Stub::GetStats, v1::GetStatsRequest());
}

absl::StatusOr<health_v1::HealthCheckResponse::ServingStatus> Client::Health(
    absl::string_view service) const {
  grpc::ClientContext context;
  SetDeadline(context, absl::ZeroDuration());
  health_v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  health_v1::HealthCheckResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(health_stub_->Check(&context, request, &response)));
  return response.status();
}

// ---------------------------------------------------------------------------------------------
// Session: lifetime

Session::Session(Client& client, std::string client_name, std::string id,
                 uint32_t lease_seconds, bool attach)
    : client_(client),
      client_name_(std::move(client_name)),
      id_(std::move(id)),
      lease_seconds_(lease_seconds),
      attach_(attach) {}

absl::StatusOr<std::unique_ptr<Session>> Session::Open(Client& client,
                                                       absl::string_view client_name,
                                                       bool attach) {
  v1::OpenSessionRequest request;
  request.set_client_name(std::string(client_name));
  ASSIGN_OR_RETURN(v1::OpenSessionResponse opened,
                   client.Call(&v1::Shuttle::Stub::OpenSession, request));
  std::unique_ptr<Session> session(
      new Session(client, std::string(client_name), opened.session_id(), opened.lease_seconds(),
                  attach));
  if (attach) {
    RETURN_IF_ERROR(session->StartAttach());
  } else {
    session->thread_ = std::thread(&Session::KeepAliveLoop, session.get());
  }
  return session;
}

absl::Status Session::StartAttach() {
  channel_ = client_.stub().Channel(&attach_context_);
  v1::ChannelRequest open;
  open.set_open(id_);
  if (!channel_->Write(open)) {
    // The stream is broken already; Finish says why.
    absl::Status status = FromGrpcStatus(channel_->Finish());
    std::lock_guard<std::mutex> lock(write_mu_);
    channel_closed_ = true;
    return absl::Status(status.code(),
                        absl::StrCat("Channel ended before `open` was sent: ", status.ToString()));
  }
  thread_ = std::thread(&Session::ChannelLoop, this);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(client_.call_timeout()),
               [this] { return attached_event_ || stream_ended_; });
  if (attached_event_) return absl::OkStatus();
  if (stream_ended_) {
    return absl::Status(stream_status_.code(),
                        absl::StrCat("Channel ended before the attached event: ",
                                     stream_status_.ToString()));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("Channel: no attached event within ",
                   absl::FormatDuration(client_.call_timeout())));
}

Session::~Session() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  v1::CloseSessionRequest request;
  request.set_session_id(id_);
  (void)client_.Call(&v1::Shuttle::Stub::CloseSession, request);  // best effort
  if (attach_) attach_context_.TryCancel();
  if (thread_.joinable()) thread_.join();
}

void Session::ChannelLoop() {
  v1::ChannelEvent event;
  while (channel_->Read(&event)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      switch (event.event_case()) {
        case v1::ChannelEvent::kAttached:
          attached_event_ = true;
          break;
        case v1::ChannelEvent::kJobDone:
          events_.push_back(std::move(*event.mutable_job_done()));
          break;
        case v1::ChannelEvent::kAccepted: {
          auto it = submits_.find(event.accepted().tag());
          if (it != submits_.end()) {
            v1::SubmitBatchResponse response;
            response.mutable_job_ids()->Swap(event.mutable_accepted()->mutable_job_ids());
            it->second = std::move(response);
          }
          break;
        }
        case v1::ChannelEvent::kRejected: {
          auto it = submits_.find(event.rejected().tag());
          if (it != submits_.end()) {
            it->second = absl::Status(static_cast<absl::StatusCode>(event.rejected().code()),
                                      event.rejected().message());
          }
          break;
        }
        case v1::ChannelEvent::kClosing:
          closing_ = absl::Status(static_cast<absl::StatusCode>(event.closing().code()),
                                  event.closing().message());
          break;
        case v1::ChannelEvent::EVENT_NOT_SET:
          break;
      }
    }
    cv_.notify_all();
  }
  absl::Status status;
  {
    std::lock_guard<std::mutex> write_lock(write_mu_);
    channel_closed_ = true;
    status = FromGrpcStatus(channel_->Finish());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_ended_ = true;
    // The daemon's stated reason, when it gave one, says more than the CANCELLED it ends with.
    stream_status_ = closing_.ok() ? std::move(status) : closing_;
    lost_ = !stopping_;
  }
  cv_.notify_all();
}

absl::StatusOr<v1::SubmitBatchResponse> Session::SubmitOverChannel(
    v1::SubmitBatchRequest request) {
  // A batch over the daemon's message cap would end the channel (and the session with it):
  // large batches take the unary call, whose refusal costs only that call. They gain nothing
  // from the channel anyway (planning them costs more than a call).
  if (request.ByteSizeLong() > kMaxChannelSubmitBytes) return SubmitBatchUnary(std::move(request));
  const absl::Duration timeout = client_.call_timeout();
  v1::ChannelRequest message;
  v1::ChannelSubmit* submit = message.mutable_submit();
  submit->mutable_jobs()->Swap(request.mutable_jobs());
  submit->set_timeout_seconds(absl::ToDoubleSeconds(timeout));
  uint64_t tag = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tag = ++next_tag_;
    submits_.emplace(tag, std::nullopt);
  }
  submit->set_tag(tag);
  bool written = false;
  {
    std::lock_guard<std::mutex> write_lock(write_mu_);
    written = !channel_closed_ && channel_->Write(message);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (written) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                 [&] { return submits_[tag].has_value() || stream_ended_; });
  }
  std::optional<absl::StatusOr<v1::SubmitBatchResponse>> answer = std::move(submits_[tag]);
  submits_.erase(tag);
  if (answer.has_value()) return *std::move(answer);
  if (stream_ended_ || !written) {
    return absl::UnavailableError(absl::StrCat(
        "SubmitBatch: the session's channel ended (", stream_status_.ToString(),
        "); whether the batch was queued is unknown"));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "SubmitBatch: no answer on the channel within ", absl::FormatDuration(timeout),
      "; whether the batch was queued is unknown"));
}

void Session::KeepAliveLoop() {
  const auto interval = std::max(std::chrono::milliseconds(int64_t{lease_seconds_} * 1000 / 3),
                                 std::chrono::milliseconds(500));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval, [this] { return stopping_; })) {
    lock.unlock();
    const absl::StatusOr<v1::KeepAliveResponse> kept = KeepAlive();
    lock.lock();
    if (kept.status().code() == absl::StatusCode::kNotFound) lost_ = true;
  }
}

std::vector<v1::JobResult> Session::TakeEvents() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::JobResult> events;
  events.swap(events_);
  return events;
}

absl::StatusOr<v1::JobResult> Session::AwaitJob(uint64_t job_id, absl::Duration timeout) {
  if (!attach_) {
    return absl::FailedPreconditionError(
        "AwaitJob: the session is not attached (completions come only through Wait)");
  }
  std::unique_lock<std::mutex> lock(mu_);
  auto find = [&] {
    return std::find_if(events_.begin(), events_.end(),
                        [job_id](const v1::JobResult& r) { return r.job_id() == job_id; });
  };
  auto it = events_.end();
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
               [&] { return (it = find()) != events_.end() || stream_ended_; });
  if (it == events_.end()) it = find();
  if (it != events_.end()) {
    v1::JobResult result = std::move(*it);
    events_.erase(it);
    return result;
  }
  if (stream_ended_) {
    return absl::UnavailableError(absl::StrCat("AwaitJob: the session's channel ended (",
                                               stream_status_.ToString(), ")"));
  }
  return absl::DeadlineExceededError(absl::StrCat("AwaitJob: job ", job_id, " did not complete within ",
                                                  absl::FormatDuration(timeout)));
}

bool Session::WaitForEvents(size_t count, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
               [&] { return events_.size() >= count || stream_ended_; });
  return events_.size() >= count;
}

absl::Status Session::StreamStatus() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stream_ended_ ? stream_status_ : absl::OkStatus();
}

bool Session::lost() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lost_;
}

absl::StatusOr<std::unique_ptr<Session>> Session::Reopen() const {
  return Open(client_, client_name_, attach_);
}

// ---------------------------------------------------------------------------------------------
// Session: RPC wrappers

absl::StatusOr<v1::RegisterRegionResponse> Session::RegisterCudaIpcRegion(
    absl::string_view handle, absl::string_view gpu_uuid, uint64_t offset, uint64_t size,
    absl::string_view name) {
  v1::RegisterRegionRequest request;
  request.set_session_id(id_);
  request.set_name(std::string(name));
  v1::CudaIpcMemory* memory = request.mutable_cuda_ipc();
  memory->set_handle(std::string(handle));
  memory->set_gpu_uuid(std::string(gpu_uuid));
  memory->set_offset(offset);
  memory->set_size(size);
  return client_.Call(&v1::Shuttle::Stub::RegisterRegion, request);
}

absl::StatusOr<std::string> Session::SendDescriptors(absl::Span<const int> fds) {
  v1::CreateFdTokenRequest request;
  request.set_session_id(id_);
  ASSIGN_OR_RETURN(v1::CreateFdTokenResponse token,
                   client_.Call(&v1::Shuttle::Stub::CreateFdToken, request));
  RETURN_IF_ERROR(kvshuttle::SendDescriptors(token.socket_path(), token.token(), fds));
  return token.token();
}

absl::StatusOr<v1::RegisterRegionResponse> Session::RegisterMemfdRegion(
    absl::string_view token, uint32_t index, uint64_t offset, uint64_t size,
    absl::string_view name) {
  v1::RegisterRegionRequest request;
  request.set_session_id(id_);
  request.set_name(std::string(name));
  v1::HostMemfdMemory* memory = request.mutable_host_memfd();
  memory->set_fd_token(std::string(token));
  memory->set_fd_index(index);
  memory->set_offset(offset);
  memory->set_size(size);
  return client_.Call(&v1::Shuttle::Stub::RegisterRegion, request);
}

absl::StatusOr<v1::RegisterRegionResponse> Session::RegisterMemfdRegion(
    const MemfdMemory& memory, uint64_t offset, uint64_t size, absl::string_view name) {
  const int fd = memory.fd();
  ASSIGN_OR_RETURN(const std::string token, SendDescriptors({&fd, 1}));
  return RegisterMemfdRegion(token, 0, offset, size, name);
}

absl::StatusOr<v1::RegisterRegionResponse> Session::RegisterHostShmRegion(
    absl::string_view shm_name, uint64_t offset, uint64_t size, absl::string_view name) {
  v1::RegisterRegionRequest request;
  request.set_session_id(id_);
  request.set_name(std::string(name));
  v1::HostShmMemory* memory = request.mutable_host_shm();
  memory->set_name(std::string(shm_name));
  memory->set_offset(offset);
  memory->set_size(size);
  return client_.Call(&v1::Shuttle::Stub::RegisterRegion, request);
}

absl::StatusOr<v1::UnregisterRegionResponse> Session::UnregisterRegion(uint64_t region_id) {
  v1::UnregisterRegionRequest request;
  request.set_session_id(id_);
  request.set_region_id(region_id);
  return client_.Call(&v1::Shuttle::Stub::UnregisterRegion, request);
}

absl::StatusOr<v1::ListRegionsResponse> Session::ListRegions() {
  v1::ListRegionsRequest request;
  request.set_session_id(id_);
  return client_.Call(&v1::Shuttle::Stub::ListRegions, request);
}

namespace {

// A RegisterBlockSet request without its placement.
v1::RegisterBlockSetRequest BlockSetRequest(const std::string& session_id,
                                            const v1::Layout& layout, uint32_t num_blocks,
                                            absl::string_view name) {
  v1::RegisterBlockSetRequest request;
  request.set_session_id(session_id);
  request.set_name(std::string(name));
  *request.mutable_layout() = layout;
  request.set_num_blocks(num_blocks);
  return request;
}

}  // namespace

absl::StatusOr<v1::RegisterBlockSetResponse> Session::RegisterBlockSet(
    const v1::Layout& layout, uint32_t num_blocks, const v1::StridedPlacement& placement,
    absl::string_view name) {
  v1::RegisterBlockSetRequest request = BlockSetRequest(id_, layout, num_blocks, name);
  *request.mutable_strided() = placement;
  return client_.Call(&v1::Shuttle::Stub::RegisterBlockSet, request);
}

absl::StatusOr<v1::RegisterBlockSetResponse> Session::RegisterBlockSet(
    const v1::Layout& layout, uint32_t num_blocks, const v1::ExplicitPlacement& placement,
    absl::string_view name) {
  v1::RegisterBlockSetRequest request = BlockSetRequest(id_, layout, num_blocks, name);
  *request.mutable_explicit_table() = placement;
  return client_.Call(&v1::Shuttle::Stub::RegisterBlockSet, request);
}

absl::StatusOr<v1::UnregisterBlockSetResponse> Session::UnregisterBlockSet(
    uint64_t block_set_id) {
  v1::UnregisterBlockSetRequest request;
  request.set_session_id(id_);
  request.set_block_set_id(block_set_id);
  return client_.Call(&v1::Shuttle::Stub::UnregisterBlockSet, request);
}

absl::StatusOr<v1::ListBlockSetsResponse> Session::ListBlockSets() {
  v1::ListBlockSetsRequest request;
  request.set_session_id(id_);
  return client_.Call(&v1::Shuttle::Stub::ListBlockSets, request);
}

absl::StatusOr<v1::CreatePoolResponse> Session::CreatePool(absl::string_view name,
                                                           const v1::Layout& layout,
                                                           uint32_t num_blocks,
                                                           v1::MemoryKind memory,
                                                           absl::string_view gpu_uuid) {
  v1::CreatePoolRequest request;
  request.set_session_id(id_);
  request.set_name(std::string(name));
  *request.mutable_layout() = layout;
  request.set_num_blocks(num_blocks);
  request.set_memory(memory);
  request.set_gpu_uuid(std::string(gpu_uuid));
  return client_.Call(&v1::Shuttle::Stub::CreatePool, request);
}

absl::StatusOr<v1::DestroyPoolResponse> Session::DestroyPool(absl::string_view name) {
  v1::DestroyPoolRequest request;
  request.set_session_id(id_);
  request.set_name(std::string(name));
  return client_.Call(&v1::Shuttle::Stub::DestroyPool, request);
}

absl::StatusOr<v1::AllocateBlocksResponse> Session::AllocateBlocks(absl::string_view pool,
                                                                   uint32_t count) {
  v1::AllocateBlocksRequest request;
  request.set_session_id(id_);
  request.set_pool(std::string(pool));
  request.set_count(count);
  return client_.Call(&v1::Shuttle::Stub::AllocateBlocks, request);
}

absl::StatusOr<v1::FreeBlocksResponse> Session::FreeBlocks(absl::string_view pool,
                                                           absl::Span<const uint32_t> block_ids) {
  v1::FreeBlocksRequest request;
  request.set_session_id(id_);
  request.set_pool(std::string(pool));
  request.mutable_block_ids()->Add(block_ids.begin(), block_ids.end());
  return client_.Call(&v1::Shuttle::Stub::FreeBlocks, request);
}

absl::StatusOr<v1::SubmitBatchResponse> Session::SubmitBatch(v1::SubmitBatchRequest request) {
  if (attach_) return SubmitOverChannel(std::move(request));
  return SubmitBatchUnary(std::move(request));
}

absl::StatusOr<v1::SubmitBatchResponse> Session::SubmitBatchUnary(
    v1::SubmitBatchRequest request) {
  request.set_session_id(id_);
  return client_.Call(&v1::Shuttle::Stub::SubmitBatch, request);
}

absl::StatusOr<v1::WaitResponse> Session::Wait(absl::Span<const uint64_t> job_ids,
                                               absl::Duration timeout, bool until_launched) {
  v1::WaitRequest request;
  request.set_session_id(id_);
  request.mutable_job_ids()->Add(job_ids.begin(), job_ids.end());
  request.set_timeout_seconds(absl::ToDoubleSeconds(timeout));
  request.set_until_launched(until_launched);
  // The daemon answers when the jobs are done or `timeout` passed; leave it room to answer.
  const absl::Duration deadline = std::max(client_.call_timeout(), timeout + absl::Seconds(5));
  return client_.Call(&v1::Shuttle::Stub::Wait, request, deadline);
}

absl::StatusOr<v1::CancelJobsResponse> Session::CancelJobs(absl::Span<const uint64_t> job_ids) {
  v1::CancelJobsRequest request;
  request.set_session_id(id_);
  request.mutable_job_ids()->Add(job_ids.begin(), job_ids.end());
  return client_.Call(&v1::Shuttle::Stub::CancelJobs, request);
}

absl::StatusOr<v1::ListSessionsResponse> Session::ListSessions() {
  return client_.ListSessions(id_);
}

absl::StatusOr<v1::KeepAliveResponse> Session::KeepAlive() {
  v1::KeepAliveRequest request;
  request.set_session_id(id_);
  return client_.Call(&v1::Shuttle::Stub::KeepAlive, request);
}

}  // namespace kvshuttle
