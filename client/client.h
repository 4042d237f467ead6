// The C++ client of kvshuttled: a connection (Client) for the session-less RPCs and health,
// and a Session that owns everything a client registers, wrapping every session RPC.
//
//   ASSIGN_OR_RETURN(auto client, Client::Connect("unix:/run/kvshuttle/kvshuttle.sock",
//                                                 absl::Seconds(5)));
//   ASSIGN_OR_RETURN(auto session, Session::Open(*client, "my-worker", /*attach=*/true));
//   ASSIGN_OR_RETURN(v1::SubmitBatchResponse submitted, session->SubmitBatch(jobs));
//   ASSIGN_OR_RETURN(v1::WaitResponse done, session->Wait(ids, absl::Seconds(10)));
//
// Errors are absl::Status with the daemon's gRPC code and message (FromGrpcStatus).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "client/memfd_memory.h"
#include "kvshuttle/v1/kvshuttle.grpc.pb.h"

namespace kvshuttle {

namespace v1 = ::kvshuttle::v1;
namespace health_v1 = ::grpc::health::v1;

// Largest message either side of the channel accepts (the daemon's cap is GetInfo's
// limits.max_message_bytes).
inline constexpr int kClientMaxMessageBytes = 64 << 20;
// Deadline of every unary call unless Client::set_call_timeout says otherwise.
inline constexpr absl::Duration kDefaultCallTimeout = absl::Seconds(30);

// The one client-side mapping of a gRPC status: same code, same message.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The gRPC target for a user-given address: "unix:/path" and other URIs ("dns:", "ipv4:",
// "ipv6:", "unix-abstract:") unchanged, a path (no ':' or starting with '/' or '.') as a unix
// socket, anything else ("host:port") unchanged.
std::string NormalizeTarget(absl::string_view target);

// TLS to a daemon's TCP port served with kvshuttled --tls_cert (PEM text, not file names).
struct TlsOptions {
  std::string root_certs;   // CAs that signed the daemon's certificate; empty: gRPC's defaults
  std::string cert_chain;   // mTLS (kvshuttled --tls_client_ca): this client's certificate chain
  std::string private_key;  // ... and its private key
  std::string server_name;  // name to check the daemon's certificate for; empty: the target's
};

// TlsOptions from PEM files; an empty path leaves its field empty. NOT_FOUND naming the file
// when one cannot be read.
absl::StatusOr<TlsOptions> TlsOptionsFromFiles(const std::string& root_certs_file,
                                               const std::string& cert_chain_file,
                                               const std::string& private_key_file);

// A channel to one daemon. Thread-safe; must outlive the Sessions opened on it. When the daemon
// goes away (a restart) the channel reconnects by itself, retrying at least once a second;
// sessions do not survive that (Session::lost, Session::Reopen).
class Client {
 public:
  // Connects to `target` (see NormalizeTarget) and waits until the channel is ready.
  // UNAVAILABLE naming the target when it is not ready within `timeout`.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(absl::string_view target,
                                                         absl::Duration timeout);
  // The same over TLS (mTLS when tls.cert_chain is set). A TLS failure (wrong CA, no client
  // certificate for an mTLS daemon, a plaintext port) shows as UNAVAILABLE.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(absl::string_view target,
                                                         absl::Duration timeout,
                                                         const TlsOptions& tls);

  // Waits until the channel is connected (again): after a daemon restart, before reopening
  // sessions. UNAVAILABLE naming the target when it is not within `timeout`.
  absl::Status WaitForReady(absl::Duration timeout) const;

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  absl::StatusOr<v1::GetInfoResponse> GetInfo() const;
  absl::StatusOr<v1::ListPoolsResponse> ListPools() const;
  // `session_id` (optional) marks the caller's own session in the answer.
  absl::StatusOr<v1::ListSessionsResponse> ListSessions(absl::string_view session_id = "") const;
  absl::StatusOr<v1::GetStatsResponse> GetStats() const;
  // grpc.health.v1 Check of `service` ("" = the daemon as a whole).
  absl::StatusOr<health_v1::HealthCheckResponse::ServingStatus> Health(
      absl::string_view service = "") const;

  // Runs one unary Shuttle RPC with a deadline of `timeout` from now (call_timeout() when
  // absl::ZeroDuration()). Example: Call(&v1::Shuttle::Stub::GetInfo, v1::GetInfoRequest()).
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (v1::Shuttle::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
      const Request& request, absl::Duration timeout = absl::ZeroDuration()) const {
    grpc::ClientContext context;
    SetDeadline(context, timeout);
    Response response;
    const grpc::Status status = (stub_.get()->*method)(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response;
  }

  // Deadline of every call made through this client (default kDefaultCallTimeout).
  void set_call_timeout(absl::Duration timeout) { call_timeout_ = timeout; }
  absl::Duration call_timeout() const { return call_timeout_; }
  // The normalized target this client is connected to.
  const std::string& target() const { return target_; }
  v1::Shuttle::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  Client(std::string target, std::shared_ptr<grpc::Channel> channel);
  static absl::StatusOr<std::unique_ptr<Client>> ConnectWith(
      absl::string_view target, absl::Duration timeout,
      const std::shared_ptr<grpc::ChannelCredentials>& credentials,
      const std::string& server_name);
  void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) const;

  std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Shuttle::Stub> stub_;
  std::unique_ptr<health_v1::Health::Stub> health_stub_;
  absl::Duration call_timeout_ = kDefaultCallTimeout;
};

// Batches larger than this (serialized) go through the unary SubmitBatch even on an attached
// session: a message over the daemon's cap ends a stream, but only fails a unary call.
inline constexpr size_t kMaxChannelSubmitBytes = size_t{256} << 10;

// One session (RAII). Attached sessions live as long as their streaming channel (proto
// Channel), submit over it and collect job completions from it; others renew their lease every
// lease/3 from a background thread. The destructor closes the session (best effort) and joins the thread. Every method
// fills in session_id; all are thread-safe.
class Session {
 public:
  // Opens a session named `client_name`. With `attach`, waits (up to the client's call
  // timeout) for the stream's first `attached` event; an error if the stream ends first or the
  // event does not come.
  static absl::StatusOr<std::unique_ptr<Session>> Open(Client& client,
                                                       absl::string_view client_name,
                                                       bool attach);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const std::string& id() const { return id_; }
  const std::string& client_name() const { return client_name_; }
  uint32_t lease_seconds() const { return lease_seconds_; }
  bool attached() const { return attach_; }
  Client& client() const { return client_; }

  // Regions. `handle` is the 64-byte cudaIpcMemHandle_t of the allocation base.
  absl::StatusOr<v1::RegisterRegionResponse> RegisterCudaIpcRegion(
      absl::string_view handle, absl::string_view gpu_uuid, uint64_t offset, uint64_t size,
      absl::string_view name = "");
  // Host memory as memfd (the daemon maps what it is given; nothing can shrink under it).
  // SendDescriptors sends file descriptors over the daemon's side channel (GetInfo's
  // fd_socket) with a one-time token from CreateFdToken and returns the token;
  // RegisterMemfdRegion then lends [offset, offset + size) of descriptor `index` of that
  // message. The one-memfd form does both.
  absl::StatusOr<std::string> SendDescriptors(absl::Span<const int> fds);
  absl::StatusOr<v1::RegisterRegionResponse> RegisterMemfdRegion(absl::string_view token,
                                                                 uint32_t index, uint64_t offset,
                                                                 uint64_t size,
                                                                 absl::string_view name = "");
  absl::StatusOr<v1::RegisterRegionResponse> RegisterMemfdRegion(const MemfdMemory& memory,
                                                                 uint64_t offset, uint64_t size,
                                                                 absl::string_view name = "");
  // A named POSIX shm object the caller owns (compatibility; memfd is the safer transport).
  absl::StatusOr<v1::RegisterRegionResponse> RegisterHostShmRegion(absl::string_view shm_name,
                                                                   uint64_t offset,
                                                                   uint64_t size,
                                                                   absl::string_view name = "");
  absl::StatusOr<v1::UnregisterRegionResponse> UnregisterRegion(uint64_t region_id);
  absl::StatusOr<v1::ListRegionsResponse> ListRegions();

  // Block sets.
  absl::StatusOr<v1::RegisterBlockSetResponse> RegisterBlockSet(
      const v1::Layout& layout, uint32_t num_blocks, const v1::StridedPlacement& placement,
      absl::string_view name = "");
  absl::StatusOr<v1::RegisterBlockSetResponse> RegisterBlockSet(
      const v1::Layout& layout, uint32_t num_blocks, const v1::ExplicitPlacement& placement,
      absl::string_view name = "");
  absl::StatusOr<v1::UnregisterBlockSetResponse> UnregisterBlockSet(uint64_t block_set_id);
  absl::StatusOr<v1::ListBlockSetsResponse> ListBlockSets();

  // Pools. `gpu_uuid` empty = the daemon's first GPU (device pools).
  absl::StatusOr<v1::CreatePoolResponse> CreatePool(absl::string_view name,
                                                    const v1::Layout& layout,
                                                    uint32_t num_blocks, v1::MemoryKind memory,
                                                    absl::string_view gpu_uuid = "");
  absl::StatusOr<v1::DestroyPoolResponse> DestroyPool(absl::string_view name);
  absl::StatusOr<v1::AllocateBlocksResponse> AllocateBlocks(absl::string_view pool,
                                                            uint32_t count);
  absl::StatusOr<v1::FreeBlocksResponse> FreeBlocks(absl::string_view pool,
                                                    absl::Span<const uint32_t> block_ids);

  // Jobs. SubmitBatch overwrites request.session_id; on an attached session it goes over the
  // session's streaming channel (no unary call; the job deadline is the client's call timeout,
  // as for the unary call), else it is the SubmitBatch RPC. Wait asks the daemon to wait up to
  // `timeout` (the call deadline is stretched to cover it); unfinished jobs show their state.
  // `until_launched`: return once every job's copies are on its GPU stream (JobResult.launched)
  // or it finished — the moment a client stream may wait on the job's completion_event.
  absl::StatusOr<v1::SubmitBatchResponse> SubmitBatch(v1::SubmitBatchRequest request);
  // Always the unary SubmitBatch RPC (attached or not).
  absl::StatusOr<v1::SubmitBatchResponse> SubmitBatchUnary(v1::SubmitBatchRequest request);
  absl::StatusOr<v1::WaitResponse> Wait(absl::Span<const uint64_t> job_ids,
                                        absl::Duration timeout, bool until_launched = false);
  absl::StatusOr<v1::CancelJobsResponse> CancelJobs(absl::Span<const uint64_t> job_ids);

  // All sessions, this one marked `own`.
  absl::StatusOr<v1::ListSessionsResponse> ListSessions();
  // Renews the lease now (the background thread does this for unattached sessions).
  absl::StatusOr<v1::KeepAliveResponse> KeepAlive();

  // Attached sessions: the job completions received so far, removed from the session.
  std::vector<v1::JobResult> TakeEvents();
  // Attached sessions: waits up to `timeout` for the completion of job `job_id` and takes it
  // (it is no longer among TakeEvents'). DEADLINE_EXCEEDED when it does not come in time,
  // UNAVAILABLE when the channel ended first, FAILED_PRECONDITION on an unattached session.
  absl::StatusOr<v1::JobResult> AwaitJob(uint64_t job_id, absl::Duration timeout);
  // Blocks until at least `count` completions are waiting in TakeEvents, the stream ends or
  // `timeout` passes; true when `count` are waiting.
  bool WaitForEvents(size_t count, absl::Duration timeout);
  // OK while the channel is open (or for unattached sessions); its final status after.
  absl::Status StreamStatus() const;

  // True once the daemon no longer holds this session: its channel ended (the daemon
  // died, drained or closed it), or, unattached, a KeepAlive answered NOT_FOUND (a daemon
  // restart, an expired lease). Every later call on it fails; see Reopen.
  bool lost() const;
  // Opens a new session with this one's client name and attach mode on the same Client — what
  // a client does once lost() (after a daemon restart, once Client::WaitForReady). Nothing
  // carries over: regions and block sets must be registered again.
  absl::StatusOr<std::unique_ptr<Session>> Reopen() const;

 private:
  Session(Client& client, std::string client_name, std::string id, uint32_t lease_seconds,
          bool attach);
  absl::Status StartAttach();
  void ChannelLoop();
  absl::StatusOr<v1::SubmitBatchResponse> SubmitOverChannel(v1::SubmitBatchRequest request);
  void KeepAliveLoop();

  Client& client_;
  const std::string client_name_;
  const std::string id_;
  const uint32_t lease_seconds_;
  const bool attach_;

  grpc::ClientContext attach_context_;  // of the channel; cancelled by the destructor
  std::thread thread_;                  // channel reader or KeepAlive loop
  // Attached sessions: the streaming channel (proto Channel). Writes and the final Finish
  // are serialized by write_mu_ (taken before mu_ when both are held).
  std::unique_ptr<grpc::ClientReaderWriter<v1::ChannelRequest, v1::ChannelEvent>> channel_;
  std::mutex write_mu_;
  bool channel_closed_ = false;  // guarded by write_mu_: no more writes

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool attached_event_ = false;    // the `attached` event arrived
  bool stream_ended_ = false;      // the channel finished
  absl::Status stream_status_;     // its final status
  bool stopping_ = false;          // destructor running
  bool lost_ = false;              // see lost()
  std::vector<v1::JobResult> events_;
  absl::Status closing_;  // the daemon's ChannelClosing reason, if it sent one
  // Channel submits waiting for their accepted / rejected, by tag.
  uint64_t next_tag_ = 0;
  std::map<uint64_t, std::optional<absl::StatusOr<v1::SubmitBatchResponse>>> submits_;
};

}  // namespace kvshuttle
