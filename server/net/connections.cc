// The unix acceptor and the table of peer credentials behind gRPC's "fd:N" peer strings.
#include "server/net/connections.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/ops/logging.h"

namespace kvshuttle {
namespace {

// The inode of the socket behind `fd`, or 0 when `fd` is not an open socket.
ino_t SocketInode(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  return st.st_ino;
}

}  // namespace

std::string PeerIdentity::ClientKey() const {
  if (local) return absl::StrCat("uid:", uid);
  // "ipv4:1.2.3.4:567" / "ipv6:[::1]:567" → the host part.
  absl::string_view a = address;
  const size_t colon = a.rfind(':');
  return std::string(colon == absl::string_view::npos ? a : a.substr(0, colon));
}

void ConnectionTable::Add(int fd, const PeerIdentity& peer, ino_t inode) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_[fd] = Entry{peer, inode};
}

absl::StatusOr<PeerIdentity> ConnectionTable::Resolve(absl::string_view grpc_peer) const {
  int fd = -1;
  if (!absl::StartsWith(grpc_peer, "fd:")) {
    PeerIdentity remote;
    remote.address = std::string(grpc_peer);
    return remote;
  }
  if (!absl::SimpleAtoi(grpc_peer.substr(3), &fd)) {
    return absl::UnavailableError(absl::StrCat("peer \"", grpc_peer, "\" is not a connection"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(fd);
  if (it == entries_.end() || SocketInode(fd) != it->second.inode) {
    return absl::UnavailableError(
        absl::StrCat("peer ", grpc_peer, ": the connection is gone; reconnect"));
  }
  return it->second.peer;
}

void ConnectionTable::Sweep(uid_t uid, int* of_uid, int* total) {
  std::lock_guard<std::mutex> lock(mu_);
  int mine = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (SocketInode(it->first) != it->second.inode) {
      it = entries_.erase(it);
      continue;
    }
    if (it->second.peer.uid == uid) ++mine;
    ++it;
  }
  *of_uid = mine;
  *total = static_cast<int>(entries_.size());
}

int ConnectionTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(entries_.size());
}

UnixAcceptor::UnixAcceptor(int listen_fd, ConnectionLimits limits, ConnectionTable& table,
                           std::function<void(int fd)> hand_over)
    : listen_fd_(listen_fd),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      limits_(limits),
      table_(table),
      hand_over_(std::move(hand_over)) {
  thread_ = std::thread([this] { Loop(); });
}

UnixAcceptor::~UnixAcceptor() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void UnixAcceptor::Stop() {
  if (stop_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void UnixAcceptor::Loop() {
  LogRateLimiter refusals(10);
  while (!stop_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LogError("unix acceptor: poll failed; no more connections are accepted",
               {{"error", std::strerror(errno)}});
      return;
    }
    if (stop_.load()) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        uint64_t suppressed = 0;
        if (refusals.Allow(absl::Now(), &suppressed)) {
          LogWarning("unix acceptor: out of file descriptors; connection left queued",
                     {{"error", std::strerror(errno)}, {"suppressed", suppressed}});
        }
        ::usleep(10000);  // the backlog keeps it; retry once descriptors are free
      }
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
      ::close(fd);
      continue;
    }
    int of_uid = 0, total = 0;
    table_.Sweep(cred.uid, &of_uid, &total);
    if (of_uid >= limits_.max_connections_per_uid || total >= limits_.max_connections) {
      ++refused_;
      uint64_t suppressed = 0;
      if (refusals.Allow(absl::Now(), &suppressed)) {
        LogWarning("unix connection refused: over the connection limit",
                   {{"uid", static_cast<uint64_t>(cred.uid)},
                    {"pid", static_cast<int64_t>(cred.pid)},
                    {"connections_of_uid", of_uid},
                    {"max_connections_per_uid", limits_.max_connections_per_uid},
                    {"connections", total},
                    {"max_connections", limits_.max_connections},
                    {"suppressed", suppressed}});
      }
      ::close(fd);
      continue;
    }
    PeerIdentity peer;
    peer.local = true;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
    peer.pid = cred.pid;
    peer.connection = next_connection_++;
    peer.address = absl::StrCat("uid ", cred.uid, " pid ", cred.pid);
    table_.Add(fd, peer, SocketInode(fd));
    hand_over_(fd);
  }
}

absl::StatusOr<int> BindUnixSocket(const std::string& path, int backlog) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path \"", path, "\" must be 1 to ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket(AF_UNIX)");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot bind ", path, ": ", std::strerror(err)));
  }
  if (::listen(fd, backlog) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on ", path, ": ", std::strerror(err)));
  }
  return fd;
}

}  // namespace kvshuttle
