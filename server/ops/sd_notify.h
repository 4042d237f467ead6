// The systemd notify protocol (sd_notify(3)), implemented here because the release binary is
// static and libsystemd is not: datagrams of "KEY=VALUE" lines to $NOTIFY_SOCKET, and a
// watchdog thread sending WATCHDOG=1 while the daemon is healthy.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kvshuttle {

class SdNotifier {
 public:
  // `socket`: the value of $NOTIFY_SOCKET — an absolute path, or "@name" for an abstract
  // socket; empty disables notifications (Notify then does nothing).
  explicit SdNotifier(std::string socket) : socket_(std::move(socket)) {}

  bool enabled() const { return !socket_.empty(); }
  const std::string& socket() const { return socket_; }

  // Sends `state` (newline-separated assignments, e.g. "READY=1\nSTATUS=serving") as one
  // datagram. OK when disabled; INVALID_ARGUMENT for an unusable socket address; the errno of
  // a failed send naming the socket otherwise.
  absl::Status Notify(absl::string_view state) const;

 private:
  std::string socket_;
};

// The watchdog ping interval for $WATCHDOG_USEC and $WATCHDOG_PID: half of WATCHDOG_USEC when
// it is set and WATCHDOG_PID is empty or equals `self`; nullopt when there is no watchdog for
// this process. INVALID_ARGUMENT naming the variable for a value that is not a positive integer.
absl::StatusOr<std::optional<absl::Duration>> WatchdogInterval(absl::string_view watchdog_usec,
                                                               absl::string_view watchdog_pid,
                                                               pid_t self);

// Sends WATCHDOG=1 every `interval` from its own thread, each time only after `healthy()`
// returned true (a hung daemon then stops pinging and systemd restarts it). Stops on
// destruction.
class Watchdog {
 public:
  Watchdog(const SdNotifier& notifier, absl::Duration interval, std::function<bool()> healthy);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void Loop();

  const SdNotifier& notifier_;
  const absl::Duration interval_;
  const std::function<bool()> healthy_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvshuttle
