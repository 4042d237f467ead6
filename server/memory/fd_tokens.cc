// FdTokens and UniqueFd.
#include "server/memory/fd_tokens.h"

#include <unistd.h>

#include <random>

#include "absl/strings/str_cat.h"

namespace kvshuttle {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

void FdTokens::ExpireLocked(absl::Time now) {
  for (auto it = parcels_.begin(); it != parcels_.end();) {
    it = it->second.expires <= now ? parcels_.erase(it) : std::next(it);
  }
}

absl::StatusOr<std::string> FdTokens::Issue(uint64_t session, const PeerIdentity& peer,
                                            absl::Time now) {
  if (!peer.local) {
    return absl::FailedPreconditionError(
        "CreateFdToken: descriptors travel only over the unix socket's side channel; this call "
        "came over TCP");
  }
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLocked(now);
  int mine = 0;
  for (const auto& [token, parcel] : parcels_) mine += parcel.session == session ? 1 : 0;
  if (mine >= limits_.max_pending_per_session) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "CreateFdToken: the session holds ", mine, " of at most ",
        limits_.max_pending_per_session, " unexpired descriptor tokens"));
  }
  if (static_cast<int>(parcels_.size()) >= limits_.max_pending) {
    return absl::ResourceExhaustedError(absl::StrCat("CreateFdToken: ", parcels_.size(),
                                                     " of at most ", limits_.max_pending,
                                                     " descriptor tokens are pending"));
  }
  std::random_device rd;
  std::string token(kFdTokenBytes, '\0');
  for (char& c : token) c = static_cast<char>(rd());
  Parcel parcel;
  parcel.session = session;
  parcel.uid = peer.uid;
  parcel.pid = peer.pid;
  parcel.expires = now + limits_.lifetime;
  parcels_.emplace(token, std::move(parcel));
  return token;
}

absl::Status FdTokens::Deliver(const std::string& token, std::vector<UniqueFd> fds, uid_t uid,
                               pid_t pid, absl::Time now) {
  if (fds.empty() || static_cast<int>(fds.size()) > limits_.max_fds_per_token) {
    return absl::InvalidArgumentError(absl::StrCat("fds: ", fds.size(),
                                                   " descriptors; send 1 to ",
                                                   limits_.max_fds_per_token, " per token"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLocked(now);
  auto it = parcels_.find(token);
  if (it == parcels_.end()) {
    return absl::NotFoundError("token: unknown or expired descriptor token");
  }
  Parcel& parcel = it->second;
  if (parcel.uid != uid || parcel.pid != pid) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token: issued to another process (uid ", parcel.uid, " pid ", parcel.pid,
        "); the sender is uid ", uid, " pid ", pid));
  }
  if (parcel.delivered) {
    return absl::FailedPreconditionError("token: descriptors were sent with it already");
  }
  parcel.delivered = true;
  parcel.fds = std::move(fds);
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> FdTokens::Take(uint64_t session, const std::string& token,
                                        uint32_t index, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLocked(now);
  auto it = parcels_.find(token);
  if (it == parcels_.end() || it->second.session != session) {
    return absl::NotFoundError("fd_token: unknown or expired descriptor token of this session");
  }
  Parcel& parcel = it->second;
  if (!parcel.delivered) {
    return absl::FailedPreconditionError(
        "fd_token: no descriptors were sent with this token over the side channel yet");
  }
  if (index >= parcel.fds.size()) {
    return absl::OutOfRangeError(absl::StrCat("fd_index: ", index, " is outside [0, ",
                                              parcel.fds.size() - 1, "] (descriptors sent)"));
  }
  if (!parcel.fds[index]) {
    return absl::FailedPreconditionError(
        absl::StrCat("fd_index: descriptor ", index, " of this token was used already"));
  }
  UniqueFd fd = std::move(parcel.fds[index]);
  bool left = false;
  for (const UniqueFd& f : parcel.fds) left = left || static_cast<bool>(f);
  if (!left) parcels_.erase(it);
  return fd;
}

void FdTokens::Expire(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLocked(now);
}

void FdTokens::DropSession(uint64_t session) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = parcels_.begin(); it != parcels_.end();) {
    it = it->second.session == session ? parcels_.erase(it) : std::next(it);
  }
}

int FdTokens::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(parcels_.size());
}

}  // namespace kvshuttle
