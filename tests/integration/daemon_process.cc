// ChildProcess and DaemonProcess: fork+exec with a log file, bounded waits, /proc probes.
#include "tests/integration/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/net/listener.h"

#ifndef KVS_DAEMON_PATH
#error "KVS_DAEMON_PATH must name the kvshuttled binary"
#endif

namespace kvshuttle::it {
namespace {

constexpr absl::Duration kPollStep = absl::Milliseconds(5);
constexpr absl::Duration kStartTimeout = absl::Seconds(10);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// True when something accepts connections on the unix socket `path`.
bool SocketAccepts(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string UniqueTmpPath(absl::string_view suffix) {
  static std::atomic<int> counter{0};
  return absl::StrCat("/tmp/kvs-it-", ::getpid(), "-", counter.fetch_add(1), suffix);
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exited with ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return absl::StrCat("killed by signal ", WTERMSIG(wait_status));
  return absl::StrCat("wait status ", wait_status);
}

// ---------------------------------------------------------------------------------------------
// ChildProcess

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(
    const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("Spawn: empty argv");
  // Everything the child needs is prepared here: between fork and exec it may only make
  // async-signal-safe calls (this process runs gRPC threads).
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::string log_path = UniqueTmpPath(".log");
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", log_path));
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    ::close(log_fd);
    return absl::ErrnoToStatus(errno, "open /dev/null");
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the test died before prctl
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) ::_exit(127);
    ::close_range(3, ~0u, 0);  // no inherited channel sockets or files
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(log_fd);
  ::close(null_fd);
  if (pid < 0) {
    ::unlink(log_path.c_str());
    return absl::ErrnoToStatus(fork_errno, "fork");
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, std::move(log_path)));
}

ChildProcess::~ChildProcess() {
  Kill();
  ::unlink(log_path_.c_str());
}

bool ChildProcess::running() {
  if (reaped_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = status;
    return false;
  }
  return r == 0;
}

absl::StatusOr<int> ChildProcess::WaitExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (running()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid_, " still running after ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollStep);
  }
  return wait_status_;
}

void ChildProcess::Signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

void ChildProcess::Kill() {
  if (reaped_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  if (::waitpid(pid_, &status, 0) == pid_) wait_status_ = status;
  reaped_ = true;
}

std::string ChildProcess::Output() const { return ReadFile(log_path_); }

bool ChildProcess::WaitForOutput(absl::string_view text, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (absl::StrContains(Output(), text)) return true;
    if (!running() || absl::Now() >= deadline) return absl::StrContains(Output(), text);
    absl::SleepFor(absl::Milliseconds(10));
  }
}

bool CommandResult::exited_ok() const {
  return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(argv);
  if (!child.ok()) return child.status();
  absl::StatusOr<int> status = (*child)->WaitExit(timeout);
  CommandResult result;
  result.output = (*child)->Output();
  if (!status.ok()) {
    return absl::DeadlineExceededError(absl::StrCat(argv[0], ": ", status.status().message(),
                                                    "; output so far:\n", result.output));
  }
  result.wait_status = *status;
  return result;
}

// ---------------------------------------------------------------------------------------------
// DaemonProcess

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(DaemonConfig config) {
  std::unique_ptr<DaemonProcess> daemon(new DaemonProcess());
  daemon->socket_path_ =
      config.socket_path.empty() ? UniqueTmpPath(".sock") : std::move(config.socket_path);
  // No metrics endpoint (tests run daemons in parallel; a test that wants one passes
  // --metrics_address, which comes later and wins) and no /etc config file.
  std::vector<std::string> argv = {KVS_DAEMON_PATH, "--listen=unix:" + daemon->socket_path_,
                                   absl::StrCat("--gpus=", config.gpus ? "true" : "false"),
                                   "--metrics_address=", "--config="};
  argv.insert(argv.end(), config.flags.begin(), config.flags.end());
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(argv);
  if (!child.ok()) return child.status();
  daemon->child_ = *std::move(child);

  const absl::Time deadline = absl::Now() + kStartTimeout;
  auto failure = [&](absl::string_view what) {
    return absl::UnavailableError(absl::StrCat("kvshuttled (pid ", daemon->pid(), ") ", what,
                                               "; its output:\n", daemon->Stderr()));
  };
  while (true) {
    if (!daemon->child_->running()) {
      absl::StatusOr<int> status = daemon->child_->WaitExit(absl::ZeroDuration());
      return failure(absl::StrCat(DescribeWaitStatus(status.value_or(0)), " before serving"));
    }
    if (absl::Now() >= deadline) return failure("did not serve within 10 s");
    if (daemon->client_ == nullptr && SocketAccepts(daemon->socket_path_)) {
      absl::StatusOr<std::unique_ptr<Client>> client =
          Client::Connect(daemon->target(), deadline - absl::Now());
      if (client.ok()) {
        daemon->client_ = *std::move(client);
        daemon->client_->set_call_timeout(absl::Seconds(10));
      }
    }
    if (daemon->client_ != nullptr) {
      absl::StatusOr<health_v1::HealthCheckResponse::ServingStatus> health =
          daemon->client_->Health();
      struct stat st {};
      if (health.ok() && *health == health_v1::HealthCheckResponse::SERVING &&
          ::lstat(daemon->socket_path_.c_str(), &st) == 0) {
        daemon->socket_dev_ = st.st_dev;
        daemon->socket_ino_ = st.st_ino;
        return daemon;
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

DaemonProcess::~DaemonProcess() {
  client_.reset();
  if (child_ != nullptr) child_->Kill();
  struct stat st {};
  if (::lstat(socket_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
      st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
    ::unlink(socket_path_.c_str());
  }
  // A daemon killed before it published its socket leaves it under the staging name.
  if (child_ != nullptr) {
    const std::string staging = StagingSocketPath(socket_path_, child_->pid());
    if (::lstat(staging.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(staging.c_str());
  }
}

absl::StatusOr<std::unique_ptr<Client>> DaemonProcess::Connect() const {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(target(), absl::Seconds(5));
  if (client.ok()) (*client)->set_call_timeout(absl::Seconds(10));
  return client;
}

absl::StatusOr<int> DaemonProcess::Stop(absl::Duration timeout) {
  SendTerm();
  return child_->WaitExit(timeout);
}

void DaemonProcess::Kill() { child_->Kill(); }

int DaemonProcess::CountMappings(absl::string_view needle) const {
  std::ifstream maps(absl::StrCat("/proc/", pid(), "/maps"));
  if (!maps) return -1;
  int count = 0;
  for (std::string line; std::getline(maps, line);) {
    if (absl::StrContains(line, needle)) ++count;
  }
  return count;
}

int DaemonProcess::CountOpenFds() const {
  std::error_code ec;
  int count = 0;
  for (std::filesystem::directory_iterator it(absl::StrCat("/proc/", pid(), "/fd"), ec), end;
       !ec && it != end; it.increment(ec)) {
    ++count;
  }
  return ec ? -1 : count;
}

int64_t DaemonProcess::VmRssKiB() const { return StatusField("VmRSS:"); }
int64_t DaemonProcess::VmHwmKiB() const { return StatusField("VmHWM:"); }
int64_t DaemonProcess::Threads() const { return StatusField("Threads:"); }

int64_t DaemonProcess::StatusField(absl::string_view field) const {
  std::ifstream status(absl::StrCat("/proc/", pid(), "/status"));
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field)) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) return kib;
  }
  return -1;
}

}  // namespace kvshuttle::it
