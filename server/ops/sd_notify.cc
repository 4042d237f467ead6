// sd_notify datagrams and the watchdog thread.
#include "server/ops/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/ops/logging.h"

namespace kvshuttle {

absl::Status SdNotifier::Notify(absl::string_view state) const {
  if (socket_.empty()) return absl::OkStatus();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if ((socket_[0] != '/' && socket_[0] != '@') || socket_.size() < 2 ||
      socket_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "NOTIFY_SOCKET=\"", socket_, "\": not an absolute path or @abstract socket name of at most ",
        sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, socket_.data(), socket_.size());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  if (socket_[0] == '@') {
    addr.sun_path[0] = '\0';  // abstract namespace: the name is not NUL-terminated
  } else {
    ++length;  // include the terminating NUL of a path
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "sd_notify: socket(AF_UNIX, SOCK_DGRAM)");
  ssize_t sent = -1;
  do {
    sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&addr), length);
  } while (sent < 0 && errno == EINTR);
  const int send_errno = errno;
  ::close(fd);
  if (sent < 0) {
    return absl::ErrnoToStatus(send_errno, absl::StrCat("sd_notify to ", socket_));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<absl::Duration>> WatchdogInterval(absl::string_view watchdog_usec,
                                                               absl::string_view watchdog_pid,
                                                               pid_t self) {
  if (watchdog_usec.empty()) return std::optional<absl::Duration>();
  uint64_t usec = 0;
  if (!absl::SimpleAtoi(watchdog_usec, &usec) || usec == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WATCHDOG_USEC=\"", watchdog_usec, "\": not a positive number of microseconds"));
  }
  if (!watchdog_pid.empty()) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(watchdog_pid, &pid) || pid <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("WATCHDOG_PID=\"", watchdog_pid, "\": not a process id"));
    }
    if (pid != self) return std::optional<absl::Duration>();  // meant for another process
  }
  return std::optional<absl::Duration>(absl::Microseconds(usec) / 2);
}

Watchdog::Watchdog(const SdNotifier& notifier, absl::Duration interval,
                   std::function<bool()> healthy)
    : notifier_(notifier), interval_(interval), healthy_(std::move(healthy)) {
  thread_ = std::thread([this] { Loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::Loop() {
  bool reported = false;  // log a failing ping once, not every interval
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    lock.unlock();
    if (healthy_()) {
      const absl::Status sent = notifier_.Notify("WATCHDOG=1");
      if (!sent.ok() && !reported) {
        LogWarning("watchdog ping failed", {{"error", sent.ToString()}});
      }
      reported = !sent.ok();
    }
    lock.lock();
    wake_.wait_for(lock, absl::ToChronoMicroseconds(interval_), [this] { return stop_; });
  }
}

}  // namespace kvshuttle
