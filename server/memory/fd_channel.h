// The descriptor side channel: a SOCK_SEQPACKET unix socket beside the gRPC socket (same
// directory, mode and group) over which a client process sends file descriptors (memfd host
// memory, CUDA VMM allocations exported as POSIX fds) that gRPC cannot carry. The sender's uid
// and pid come from the kernel (SO_PEERCRED) and must be those of the process the token was
// issued to (FdTokens).
//
// Wire format, one message each way per connection:
//   client → daemon: 32 bytes {"KVSFD1\0\0", token[16], uint32 count (little endian),
//                    uint32 0} with `count` descriptors as SCM_RIGHTS;
//   daemon → client: {uint32 code (google.rpc.Code, 0 = OK), message bytes (≤ 240)}.
// Anything else — a short or long message, truncated control data, another kind of control
// message, a count that does not match, no message within the timeout — is refused, every
// descriptor received is closed, and the connection is closed.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/memory/fd_tokens.h"

namespace kvshuttle {

inline constexpr char kFdChannelMagic[8] = {'K', 'V', 'S', 'F', 'D', '1', '\0', '\0'};
inline constexpr size_t kFdChannelMessageBytes = 32;

struct FdChannelLimits {
  int max_connections = 64;                     // connections waiting for their message
  absl::Duration timeout = absl::Seconds(2);    // accept → message received
};

class FdChannel {
 public:
  // Binds `path` (as `path`.<pid>, published at `path` with `mode` and `gid` like the gRPC
  // socket) and serves it on a thread. The path must be free (PrepareSocketPath).
  static absl::StatusOr<std::unique_ptr<FdChannel>> Start(const std::string& path, uint32_t mode,
                                                          int gid, FdTokens& tokens,
                                                          FdChannelLimits limits = {});
  ~FdChannel();  // stops and unlinks the socket
  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;

  const std::string& path() const { return path_; }
  // Messages refused so far (bad format, credentials, limits).
  uint64_t refused() const { return refused_.load(); }

 private:
  FdChannel(std::string path, int listen_fd, int wake_fd, FdTokens& tokens, FdChannelLimits limits);
  void Loop();
  // Reads and answers the one message of connection `fd` (readable now).
  void Serve(int fd, uid_t uid, pid_t pid);

  const std::string path_;
  const int listen_fd_;
  const int wake_fd_;
  FdTokens& tokens_;
  const FdChannelLimits limits_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace kvshuttle
