// One-time tokens that bind file descriptors sent over the side channel (fd_channel.h) to the
// gRPC session that asked for them. A session gets a token over gRPC (CreateFdToken); the same
// process (uid and pid from the kernel, on both sockets) sends up to `max_fds` descriptors with
// it; RegisterRegion then names (token, index) to use one of them. Tokens expire; a token is
// delivered at most once; each descriptor is taken at most once; whatever is left is closed at
// expiry or when the session goes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/net/connections.h"

namespace kvshuttle {

// An owned file descriptor (closed on destruction). Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct FdTokenLimits {
  int max_fds_per_token = 64;        // descriptors one message may carry
  int max_pending_per_session = 8;   // tokens a session holds (issued or delivered, not expired)
  int max_pending = 256;             // tokens in the whole daemon
  absl::Duration lifetime = absl::Seconds(30);  // from issue to the last use
};

inline constexpr size_t kFdTokenBytes = 16;

class FdTokens {
 public:
  explicit FdTokens(FdTokenLimits limits = {}) : limits_(limits) {}

  // A new token for `session` (its serial) and its caller, `peer`, which must be a unix-socket
  // peer. FAILED_PRECONDITION for other peers; RESOURCE_EXHAUSTED over a pending limit.
  absl::StatusOr<std::string> Issue(uint64_t session, const PeerIdentity& peer, absl::Time now);
  // Stores `fds` under `token`, sent by a process with `uid`/`pid`. PERMISSION_DENIED when the
  // sender is not the process the token was issued to; NOT_FOUND for an unknown or expired
  // token; FAILED_PRECONDITION when it was delivered already; INVALID_ARGUMENT for 0 or more
  // than max_fds_per_token descriptors. On error the descriptors are closed.
  absl::Status Deliver(const std::string& token, std::vector<UniqueFd> fds, uid_t uid, pid_t pid,
                       absl::Time now);
  // Takes descriptor `index` of the parcel delivered under `token` for `session`. NOT_FOUND for
  // an unknown/expired token or another session's; FAILED_PRECONDITION when nothing was sent
  // with it yet or that descriptor was taken; OUT_OF_RANGE for an index past what was sent.
  absl::StatusOr<UniqueFd> Take(uint64_t session, const std::string& token, uint32_t index,
                                absl::Time now);
  // Closes what expired tokens hold.
  void Expire(absl::Time now);
  // Forgets every token of `session` (closing its descriptors).
  void DropSession(uint64_t session);
  int pending() const;
  const FdTokenLimits& limits() const { return limits_; }

 private:
  struct Parcel {
    uint64_t session = 0;
    uid_t uid = 0;
    pid_t pid = 0;
    absl::Time expires;
    bool delivered = false;
    std::vector<UniqueFd> fds;  // empty slots were taken
  };
  void ExpireLocked(absl::Time now);

  const FdTokenLimits limits_;
  mutable std::mutex mu_;
  std::map<std::string, Parcel> parcels_;
};

}  // namespace kvshuttle
