// Child processes of the integration tier: a generic fork+exec'd ChildProcess (stdout/stderr to
// a log file, bounded waits, SIGKILL on destruction) and DaemonProcess, a kvshuttled on its own
// unix socket with leak probes over /proc/<pid>.
#pragma once

#include <gtest/gtest.h>
#include <cstdio>

#include <sys/types.h>

#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace kvshuttle::it {

// A unique path under /tmp for this test process: "/tmp/kvs-it-<pid>-<n><suffix>".
std::string UniqueTmpPath(absl::string_view suffix);

// One fork+exec'd child. Its stdout and stderr go to a log file (removed on destruction); it
// gets SIGKILL when this process dies (PR_SET_PDEATHSIG) and on destruction if still running,
// so a failing test never leaves it behind.
class ChildProcess {
 public:
  // Starts argv[0] (a path) with `argv`.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();  // false once it exited (reaps it)
  // Waits up to `timeout` for the exit; returns the wait status (WIFEXITED etc.) or
  // DEADLINE_EXCEEDED (the child keeps running).
  absl::StatusOr<int> WaitExit(absl::Duration timeout);
  void Signal(int sig);
  // SIGKILL and reap (idempotent).
  void Kill();
  // Everything the child wrote to stdout and stderr so far.
  std::string Output() const;
  // Waits up to `timeout` until Output() contains `text`; false on timeout or early exit.
  bool WaitForOutput(absl::string_view text, absl::Duration timeout);

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}

  pid_t pid_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  std::string log_path_;
};

// "exited with 3", "killed by signal 9", ...
std::string DescribeWaitStatus(int wait_status);

// Runs a command to completion (bounded by `timeout`, then SIGKILL) and returns its exit
// status and combined output.
struct CommandResult {
  int wait_status = 0;
  std::string output;
  bool exited_ok() const;  // exited with status 0
};
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout);

struct DaemonConfig {
  std::vector<std::string> flags;  // extra flags, e.g. "--cpu_threads=1"
  bool gpus = false;               // --gpus=<this>
  std::string socket_path;         // empty: UniqueTmpPath(".sock")
};

// DaemonConfig with `flags` (and the other fields at their defaults).
inline DaemonConfig WithFlags(std::vector<std::string> flags) {
  DaemonConfig config;
  config.flags = std::move(flags);
  return config;
}

// kvshuttled on a unix socket. Start returns once the socket accepts and health is SERVING
// (at most 10 s), else the error with the daemon's stderr.
class DaemonProcess {
 public:
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(DaemonConfig config = {});
  // Kill() if still running; removes the socket file its daemon left behind (not one a daemon
  // started later on the same path serves).
  ~DaemonProcess();

  pid_t pid() const { return child_->pid(); }
  const std::string& socket_path() const { return socket_path_; }
  std::string target() const { return "unix:" + socket_path_; }
  // A client connected at Start (health checks, session-less RPCs, sessions).
  Client& client() const { return *client_; }
  // Opens another connection (e.g. to give a session its own channel).
  absl::StatusOr<std::unique_ptr<Client>> Connect() const;

  // SIGTERM and wait up to `timeout`; returns the wait status. client() stays usable (its
  // calls then fail UNAVAILABLE).
  absl::StatusOr<int> Stop(absl::Duration timeout = absl::Seconds(10));
  // SIGTERM only (the test watches the drain itself); then WaitExit.
  void SendTerm() { child_->Signal(SIGTERM); }
  absl::StatusOr<int> WaitExit(absl::Duration timeout) { return child_->WaitExit(timeout); }
  // SIGKILL and reap.
  void Kill();
  bool running() { return child_->running(); }
  std::string Stderr() const { return child_->Output(); }

  // Leak probes. Lines of /proc/<pid>/maps containing `needle` (default: the shm objects
  // SharedMemory creates); -1 when the file cannot be read.
  int CountMappings(absl::string_view needle = "/dev/shm/kvshuttle-") const;
  // Entries of /proc/<pid>/fd; -1 when unreadable.
  int CountOpenFds() const;
  // VmRSS (resident) and VmHWM (peak resident) of /proc/<pid>/status in KiB, and its thread
  // count; -1 when unreadable.
  int64_t VmRssKiB() const;
  int64_t VmHwmKiB() const;
  int64_t Threads() const;

 private:
  DaemonProcess() = default;
  int64_t StatusField(absl::string_view field) const;

  std::unique_ptr<ChildProcess> child_;
  std::string socket_path_;
  // The socket file this daemon published (device, inode), recorded once it served.
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  std::unique_ptr<Client> client_;
};

// A test suite sharing one daemon, started with Derived::Config(); prints the daemon's output
// when a test fails.
template <typename Derived>
class SharedDaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
        DaemonProcess::Start(Derived::Config());
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr) << "the daemon did not start"; }
  void TearDown() override {
    if (HasFailure() && daemon_ != nullptr) {
      std::printf("--- kvshuttled output ---\n%s\n", daemon_->Stderr().c_str());
    }
  }
  static Client& client() { return daemon_->client(); }

  static inline DaemonProcess* daemon_ = nullptr;
};

}  // namespace kvshuttle::it
