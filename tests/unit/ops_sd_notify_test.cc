// server/ops/sd_notify: datagrams to a path socket and to an abstract ('@') socket, the
// watchdog interval rules of sd_watchdog_enabled(3), and the watchdog thread.
#include "server/ops/sd_notify.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

// A unix datagram socket bound to `name` (a path, or "@name" for the abstract namespace), as
// systemd's notify socket is.
class NotifySocket {
 public:
  explicit NotifySocket(std::string name) : name_(std::move(name)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name_.data(), name_.size());
    socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    if (name_[0] == '@') {
      addr.sun_path[0] = '\0';
    } else {
      ::unlink(name_.c_str());
      ++length;
    }
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), length) == 0;
  }
  ~NotifySocket() {
    ::close(fd_);
    if (name_[0] != '@') ::unlink(name_.c_str());
  }
  bool bound() const { return bound_; }
  // The next datagram, or "" after `timeout_ms`.
  std::string Receive(int timeout_ms = 2000) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return "";
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

TEST(SdNotifyTest, SendsDatagramsToAPathSocket) {
  NotifySocket socket(absl::StrCat("/tmp/kvs-notify-test-", ::getpid(), ".sock"));
  ASSERT_TRUE(socket.bound());
  SdNotifier notifier(absl::StrCat("/tmp/kvs-notify-test-", ::getpid(), ".sock"));
  ASSERT_TRUE(notifier.enabled());
  ASSERT_TRUE(notifier.Notify("READY=1\nSTATUS=serving").ok());
  EXPECT_EQ(socket.Receive(), "READY=1\nSTATUS=serving");
  ASSERT_TRUE(notifier.Notify("STOPPING=1").ok());
  EXPECT_EQ(socket.Receive(), "STOPPING=1");
}

TEST(SdNotifyTest, SendsDatagramsToAnAbstractSocket) {
  const std::string name = absl::StrCat("@kvs-notify-test-", ::getpid());
  NotifySocket socket(name);
  ASSERT_TRUE(socket.bound());
  SdNotifier notifier(name);
  ASSERT_TRUE(notifier.Notify("READY=1").ok());
  EXPECT_EQ(socket.Receive(), "READY=1");
}

TEST(SdNotifyTest, DisabledWithoutASocketAndErrorsNameTheSocket) {
  SdNotifier off("");
  EXPECT_FALSE(off.enabled());
  EXPECT_TRUE(off.Notify("READY=1").ok());

  EXPECT_TRUE(HasStatus(SdNotifier("relative/path").Notify("READY=1"),
                        absl::StatusCode::kInvalidArgument,
                        {"NOTIFY_SOCKET=\"relative/path\"", "absolute path or @abstract"}));
  EXPECT_TRUE(HasStatus(SdNotifier("/" + std::string(200, 'x')).Notify("READY=1"),
                        absl::StatusCode::kInvalidArgument, {"at most 107 bytes"}));
  const absl::Status missing = SdNotifier("/tmp/kvs-no-such-notify.sock").Notify("READY=1");
  EXPECT_FALSE(missing.ok());
  EXPECT_TRUE(HasStatus(missing, missing.code(), {"sd_notify to /tmp/kvs-no-such-notify.sock"}));
}

TEST(SdNotifyTest, WatchdogIntervalIsHalfOfWatchdogUsecForThisProcess) {
  const pid_t self = 1234;
  EXPECT_EQ(*WatchdogInterval("", "", self), std::nullopt);
  EXPECT_EQ(*WatchdogInterval("4000000", "", self), absl::Seconds(2));
  EXPECT_EQ(*WatchdogInterval("4000000", "1234", self), absl::Seconds(2));
  EXPECT_EQ(*WatchdogInterval("4000000", "99", self), std::nullopt);  // another process's
  EXPECT_TRUE(HasStatus(WatchdogInterval("soon", "", self).status(),
                        absl::StatusCode::kInvalidArgument, {"WATCHDOG_USEC=\"soon\""}));
  EXPECT_TRUE(HasStatus(WatchdogInterval("0", "", self).status(),
                        absl::StatusCode::kInvalidArgument, {"WATCHDOG_USEC=\"0\""}));
  EXPECT_TRUE(HasStatus(WatchdogInterval("100", "me", self).status(),
                        absl::StatusCode::kInvalidArgument, {"WATCHDOG_PID=\"me\""}));
}

TEST(SdNotifyTest, WatchdogPingsWhileHealthyOnly) {
  const std::string name = absl::StrCat("@kvs-watchdog-test-", ::getpid());
  NotifySocket socket(name);
  ASSERT_TRUE(socket.bound());
  SdNotifier notifier(name);
  std::atomic<bool> healthy{true};
  {
    Watchdog watchdog(notifier, absl::Milliseconds(20), [&healthy] { return healthy.load(); });
    EXPECT_EQ(socket.Receive(), "WATCHDOG=1");
    EXPECT_EQ(socket.Receive(), "WATCHDOG=1");
    healthy = false;
    socket.Receive(100);  // a ping already under way
    EXPECT_EQ(socket.Receive(200), "") << "no ping while unhealthy";
    healthy = true;
    EXPECT_EQ(socket.Receive(), "WATCHDOG=1");
  }
  while (!socket.Receive(50).empty()) {
  }
  EXPECT_EQ(socket.Receive(100), "") << "no ping after the watchdog is destroyed";
}

}  // namespace
}  // namespace kvshuttle
