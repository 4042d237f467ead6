// FdChannel: accept, read one message with its descriptors, hand them to FdTokens, answer.
#include "server/memory/fd_channel.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/net/listener.h"
#include "server/ops/logging.h"

namespace kvshuttle {
namespace {

constexpr size_t kMaxReplyMessage = 240;

void Reply(int fd, const absl::Status& status) {
  std::string out(4, '\0');
  const uint32_t code = static_cast<uint32_t>(status.code());
  std::memcpy(out.data(), &code, 4);
  out.append(std::string(status.message().substr(0, kMaxReplyMessage)));
  (void)!::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

absl::StatusOr<std::unique_ptr<FdChannel>> FdChannel::Start(const std::string& path,
                                                            uint32_t mode, int gid,
                                                            FdTokens& tokens,
                                                            FdChannelLimits limits) {
  const std::string bound = StagingSocketPath(path, ::getpid());
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "fd channel: socket(AF_UNIX, SOCK_SEQPACKET)");
  sockaddr_un addr{};
  if (bound.size() >= sizeof(addr.sun_path)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("fd channel: socket path ", bound, " is too long"));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, bound.data(), bound.size());
  const mode_t old_umask = ::umask(0777 & ~mode);
  const int bound_rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old_umask);
  if (bound_rc != 0 || ::listen(fd, 256) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(bound.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("fd channel: cannot listen on ", bound, ": ", std::strerror(err)));
  }
  if (absl::Status published = PublishSocket(bound, path, mode, gid); !published.ok()) {
    ::close(fd);
    return published;
  }
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return std::unique_ptr<FdChannel>(new FdChannel(path, fd, wake, tokens, limits));
}

FdChannel::FdChannel(std::string path, int listen_fd, int wake_fd, FdTokens& tokens,
                     FdChannelLimits limits)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      tokens_(tokens),
      limits_(limits) {
  thread_ = std::thread([this] { Loop(); });
}

FdChannel::~FdChannel() {
  stop_ = true;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
  ::unlink(path_.c_str());
}

void FdChannel::Loop() {
  struct Pending {
    uid_t uid;
    pid_t pid;
    absl::Time deadline;
  };
  std::map<int, Pending> pending;
  while (!stop_.load()) {
    std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    absl::Time next = absl::InfiniteFuture();
    for (const auto& [fd, p] : pending) {
      fds.push_back({fd, POLLIN, 0});
      next = std::min(next, p.deadline);
    }
    int timeout_ms = -1;
    if (next != absl::InfiniteFuture()) {
      timeout_ms = static_cast<int>(
          std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    if (stop_.load()) break;
    const absl::Time now = absl::Now();
    for (size_t i = 2; i < fds.size(); ++i) {
      const int fd = fds[i].fd;
      const Pending p = pending.at(fd);
      if (fds[i].revents != 0) {
        Serve(fd, p.uid, p.pid);
      } else if (now < p.deadline) {
        continue;
      } else {
        ++refused_;
        Reply(fd, absl::DeadlineExceededError("no message within the timeout"));
      }
      ::close(fd);
      pending.erase(fd);
    }
    if ((fds[0].revents & POLLIN) != 0) {
      while (true) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
            static_cast<int>(pending.size()) >= limits_.max_connections) {
          ++refused_;
          Reply(fd, absl::ResourceExhaustedError("too many side-channel connections at once"));
          ::close(fd);
          continue;
        }
        pending[fd] = Pending{cred.uid, cred.pid, now + limits_.timeout};
      }
    }
  }
  for (const auto& [fd, p] : pending) ::close(fd);
}

void FdChannel::Serve(int fd, uid_t uid, pid_t pid) {
  char data[kFdChannelMessageBytes + 1];
  const int max_fds = tokens_.limits().max_fds_per_token;
  // One descriptor more than allowed fits, so that too many show up as too many (not as a
  // truncation that silently drops some).
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (max_fds + 1)));
  iovec iov{data, sizeof(data)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  std::vector<UniqueFd> received;
  bool foreign_control = false;
  if (n >= 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int received_fd = -1;
          std::memcpy(&received_fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          received.emplace_back(received_fd);
        }
      } else {
        foreign_control = true;
      }
    }
  }
  absl::Status status;
  uint32_t count = 0;
  if (n < 0) {
    status = absl::InvalidArgumentError(absl::StrCat("recvmsg: ", std::strerror(errno)));
  } else if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "message or descriptors truncated: send one ", kFdChannelMessageBytes,
        "-byte message with at most ", max_fds, " descriptors"));
  } else if (foreign_control) {
    status = absl::InvalidArgumentError("control data other than SCM_RIGHTS descriptors");
  } else if (static_cast<size_t>(n) != kFdChannelMessageBytes ||
             std::memcmp(data, kFdChannelMagic, sizeof(kFdChannelMagic)) != 0) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "not a kvshuttle descriptor message (", n, " bytes; expected ", kFdChannelMessageBytes,
        " starting with KVSFD1)"));
  } else {
    std::memcpy(&count, data + 24, sizeof(count));
    if (count != received.size()) {
      status = absl::InvalidArgumentError(absl::StrCat("count: ", count, " but ",
                                                       received.size(), " descriptors arrived"));
    }
  }
  if (status.ok()) {
    const std::string token(data + 8, kFdTokenBytes);
    status = tokens_.Deliver(token, std::move(received), uid, pid, absl::Now());
  }
  if (!status.ok()) {
    ++refused_;
    LogDebug("fd channel: message refused",
             {{"uid", static_cast<uint64_t>(uid)}, {"pid", static_cast<int64_t>(pid)},
              {"error", status.message()}});
  }
  Reply(fd, status);
}

}  // namespace kvshuttle
