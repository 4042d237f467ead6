// Operations, end to end against real daemons: /metrics after real RPCs and jobs, /healthz
// (also while draining), a metrics address in use, config file + environment + flag
// precedence through --print_config, configuration errors, --version and --help, JSON logs,
// and the systemd notify protocol (READY, WATCHDOG, STOPPING).
#include <arpa/inet.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

// ---------------------------------------------------------------------------------------------
// Helpers: a tiny HTTP client, metric lookup, the port from the daemon's log, a notify socket.

struct HttpResult {
  int status = 0;
  std::string headers;
  std::string body;
};

HttpResult HttpRequest(int port, const std::string& method, const std::string& path) {
  HttpResult result;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return result;
  }
  const std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buffer[8192];
  ssize_t n = 0;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
  ::close(fd);
  const size_t head_end = response.find("\r\n\r\n");
  if (head_end == std::string::npos) return result;
  result.headers = response.substr(0, head_end);
  result.body = response.substr(head_end + 4);
  const std::vector<std::string> status_line = absl::StrSplit(result.headers, ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &result.status)) {
    result.status = -1;
  }
  return result;
}

HttpResult HttpGet(int port, const std::string& path) { return HttpRequest(port, "GET", path); }

// The value of the sample `series` (name with its labels exactly as rendered), or -1.
double Metric(const std::string& exposition, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::StartsWith(line, series + " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
  }
  return -1;
}

// The port of the daemon's metrics endpoint, from its "serving" log line (0 if not found).
int MetricsPort(const DaemonProcess& daemon) {
  int port = 0;
  WaitUntil(
      [&] {
        const std::string out = daemon.Stderr();
        const size_t at = out.find("metrics=http://127.0.0.1:");
        if (at == std::string::npos) return false;
        const size_t start = at + std::strlen("metrics=http://127.0.0.1:");
        return absl::SimpleAtoi(out.substr(start, out.find('/', start) - start), &port);
      },
      absl::Seconds(10));
  return port;
}

// A unix datagram socket like systemd's notify socket: a path, or "@name" (abstract).
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
      ++length;
    }
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), length) == 0;
  }
  ~NotifySocket() {
    ::close(fd_);
    if (name_[0] != '@') ::unlink(name_.c_str());
  }
  bool bound() const { return bound_; }
  const std::string& name() const { return name_; }
  // The next datagram, or "" after `timeout`.
  std::string Receive(absl::Duration timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) != 1) return "";
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }
  // Receives until a datagram starting with `prefix` arrives; "" after `timeout`.
  std::string ReceiveStartingWith(absl::string_view prefix, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::string message = Receive(deadline - absl::Now());
      if (absl::StartsWith(message, prefix)) return message;
    }
    return "";
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

// Waits for the exit (after a SIGTERM) while the test's client keeps calling: an idle C++ gRPC
// client reads the server's GOAWAY only on its 5 s backup poll, which would hold the server's
// shutdown that long.
absl::StatusOr<int> WaitExitBusily(DaemonProcess& daemon) {
  WaitUntil(
      [&] {
        (void)daemon.client().Health();
        return !daemon.running();
      },
      absl::Seconds(20));
  return daemon.WaitExit(absl::Seconds(1));
}

// A file under /tmp with `text`, removed on destruction.
class TempFile {
 public:
  explicit TempFile(const std::string& text) : path_(UniqueTmpPath(".conf")) {
    std::ofstream(path_) << text;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs kvshuttled with `env` ("NAME=VALUE", through /usr/bin/env) and `args`.
absl::StatusOr<CommandResult> RunDaemon(const std::vector<std::string>& env,
                                        const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(KVS_DAEMON_PATH);
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, absl::Seconds(20));
}

// ---------------------------------------------------------------------------------------------
// /metrics and /healthz on a shared daemon

class OpsMetricsTest : public SharedDaemonTest<OpsMetricsTest> {
 public:
  static DaemonConfig Config() {
    return WithFlags({"--metrics_address=127.0.0.1:0", "--cpu_threads=1"});
  }
};

TEST_F(OpsMetricsTest, ScrapesShowJobsBytesRpcsAndState) {
  const int port = MetricsPort(*daemon_);
  ASSERT_GT(port, 0) << daemon_->Stderr();
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client(), "it-metrics", /*attach=*/false));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 16, 4, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 16, 4, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, nhd, 4, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 4, Placement::kStrided, 2));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      RunBatch(*session, {MakeJob(src.endpoint(), dst.endpoint(), WholeBlocks(nhd, uni),
                                  IdentityPairs(4))}));
  ASSERT_TRUE(done.all_done()) << done.DebugString();
  ASSERT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  v1::SubmitBatchRequest unknown;
  v1::Endpoint nowhere;
  nowhere.set_block_set_id(999999);
  *unknown.add_jobs() = MakeJob(nowhere, dst.endpoint(), WholeBlocks(nhd, uni), IdentityPairs(1));
  EXPECT_TRUE(HasStatus(session->SubmitBatch(unknown), StatusCode::kNotFound, {}));
  KVS_ASSERT_OK(session->CreatePool("it-metrics-pool", LayoutToProto(uni), 8, v1::MEMORY_HOST));
  KVS_ASSERT_OK(session->AllocateBlocks("it-metrics-pool", 3));

  const HttpResult scrape = HttpGet(port, "/metrics");
  ASSERT_EQ(scrape.status, 200) << scrape.headers;
  EXPECT_TRUE(absl::StrContains(scrape.headers,
                                "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  const std::string& m = scrape.body;
  SCOPED_TRACE(m);
  EXPECT_GE(Metric(m, "kvshuttle_jobs_total{executor=\"cpu\",status=\"done\"}"), 1);
  EXPECT_EQ(Metric(m, "kvshuttle_jobs_total{executor=\"cpu\",status=\"failed\"}"), 0);
  EXPECT_GE(Metric(m, "kvshuttle_bytes_moved_total{executor=\"cpu\"}"),
            static_cast<double>(done.results(0).bytes()));
  EXPECT_GT(done.results(0).bytes(), 0u);
  EXPECT_GE(Metric(m, "kvshuttle_rpc_total{method=\"SubmitBatch\",code=\"OK\"}"), 1);
  EXPECT_GE(Metric(m, "kvshuttle_rpc_total{method=\"SubmitBatch\",code=\"NOT_FOUND\"}"), 1);
  EXPECT_GE(Metric(m, "kvshuttle_rpc_total{method=\"OpenSession\",code=\"OK\"}"), 1);
  EXPECT_GE(Metric(m, "kvshuttle_rpc_seconds_count{method=\"SubmitBatch\"}"), 2);
  EXPECT_GE(Metric(m, "kvshuttle_job_run_seconds_count{executor=\"cpu\"}"), 1);
  EXPECT_GE(Metric(m, "kvshuttle_job_latency_seconds_bucket{executor=\"cpu\",le=\"+Inf\"}"), 1);
  EXPECT_GE(Metric(m, "kvshuttle_job_latency_seconds_bucket{executor=\"cpu\",le=\"10\"}"), 1);
  EXPECT_EQ(Metric(m, "kvshuttle_ipc_open_seconds_count"), 0);
  EXPECT_GE(Metric(m, "kvshuttle_sessions"), 1);
  EXPECT_GE(Metric(m, "kvshuttle_block_sets"), 2);
  EXPECT_GE(Metric(m, "kvshuttle_regions{kind=\"host_shm\"}"), 2);
  EXPECT_EQ(Metric(m, "kvshuttle_regions{kind=\"cuda_ipc\"}"), 0);
  EXPECT_GE(Metric(m, "kvshuttle_mapped_bytes{kind=\"host_shm\"}"),
            static_cast<double>(src.bytes() + dst.bytes()));
  EXPECT_GE(Metric(m, "kvshuttle_pools"), 1);
  EXPECT_EQ(Metric(m, "kvshuttle_pool_blocks{pool=\"it-metrics-pool\",state=\"used\"}"), 3);
  EXPECT_EQ(Metric(m, "kvshuttle_pool_blocks{pool=\"it-metrics-pool\",state=\"free\"}"), 5);
  EXPECT_EQ(Metric(m, "kvshuttle_queue_depth{executor=\"cpu\"}"), 0);
  EXPECT_EQ(Metric(m, "kvshuttle_up"), 1);
  EXPECT_EQ(Metric(m, "kvshuttle_draining"), 0);
  EXPECT_GT(Metric(m, "kvshuttle_process_open_fds"), 3);
  EXPECT_GT(Metric(m, "kvshuttle_process_threads"), 1);
  EXPECT_GT(Metric(m, "kvshuttle_process_resident_bytes"), 1 << 20);
  EXPECT_TRUE(absl::StrContains(m, "\nkvshuttle_build_info{version=\"")) << "build_info";
  EXPECT_TRUE(absl::StrContains(m, "# TYPE kvshuttle_jobs_total counter\n"));
  EXPECT_TRUE(absl::StrContains(m, "# TYPE kvshuttle_job_run_seconds histogram\n"));
  EXPECT_TRUE(absl::StrContains(m, "# TYPE kvshuttle_sessions gauge\n"));

  // Closing the session takes its regions and block sets out of the gauges.
  const double sessions = Metric(m, "kvshuttle_sessions");
  KVS_ASSERT_OK(session->DestroyPool("it-metrics-pool"));
  session.reset();
  const std::string after = HttpGet(port, "/metrics").body;
  EXPECT_EQ(Metric(after, "kvshuttle_sessions"), sessions - 1) << after;
  EXPECT_EQ(Metric(after, "kvshuttle_pool_blocks{pool=\"it-metrics-pool\",state=\"used\"}"), -1);
}

TEST_F(OpsMetricsTest, HealthzIsOkAndOtherPathsOrMethodsAreRefused) {
  const int port = MetricsPort(*daemon_);
  ASSERT_GT(port, 0);
  const HttpResult health = HttpGet(port, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_TRUE(absl::StrContains(health.headers, "Connection: close"));
  EXPECT_EQ(HttpGet(port, "/").status, 404);
  EXPECT_EQ(HttpGet(port, "/metrics/x").status, 404);
  EXPECT_EQ(HttpRequest(port, "POST", "/metrics").status, 405);
  EXPECT_EQ(HttpRequest(port, "DELETE", "/healthz").status, 405);
}

// ---------------------------------------------------------------------------------------------
// Drain and startup failures, each on its own daemon

TEST(OpsDrainTest, HealthzAndGaugesReportTheDrainWhileInFlightWorkFinishes) {
  KVS_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<DaemonProcess> daemon,
      DaemonProcess::Start(WithFlags({"--metrics_address=127.0.0.1:0", "--cpu_threads=1"})));
  const int port = MetricsPort(*daemon);
  ASSERT_GT(port, 0) << daemon->Stderr();
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon->client(), "it-drain", /*attach=*/false));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlowJobs> slow, SlowJobs::Create(*session));
  v1::SubmitBatchRequest request;
  *request.add_jobs() = slow->Job(absl::Milliseconds(2000));
  KVS_ASSERT_OK(session->SubmitBatch(request));
  daemon->SendTerm();
  HttpResult health;
  EXPECT_TRUE(WaitUntil(
      [&] {
        health = HttpGet(port, "/healthz");
        return health.status == 503;
      },
      absl::Seconds(5)))
      << health.status << " " << health.body;
  EXPECT_EQ(health.body, "draining\n");
  const std::string m = HttpGet(port, "/metrics").body;
  EXPECT_EQ(Metric(m, "kvshuttle_draining"), 1) << m;
  EXPECT_EQ(Metric(m, "kvshuttle_up"), 0) << m;
  KVS_ASSERT_OK_AND_ASSIGN(int status, WaitExitBusily(*daemon));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << DescribeWaitStatus(status);
  EXPECT_EQ(HttpGet(port, "/healthz").status, 0) << "the endpoint goes with the daemon";
}

TEST(OpsStartupTest, AMetricsAddressInUseFailsStartupNamingTheFlagAndAddress) {
  const int taken = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  socklen_t length = sizeof(addr);
  ::getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &length);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));

  absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
      DaemonProcess::Start(WithFlags({"--metrics_address=" + address}));
  ::close(taken);
  ASSERT_FALSE(daemon.ok());
  EXPECT_TRUE(absl::StrContains(daemon.status().message(), "exited with 1"))
      << daemon.status();
  EXPECT_TRUE(absl::StrContains(
      daemon.status().message(),
      absl::StrCat("--metrics_address: cannot serve metrics on ", address,
                   ": bind: Address already in use")))
      << daemon.status();
}

// ---------------------------------------------------------------------------------------------
// Configuration end to end

TEST(OpsConfigTest, PrintConfigShowsFlagOverEnvironmentOverFileOverDefault) {
  TempFile file(
      "# kvshuttled test configuration\n"
      "cpu_threads = 3\n"
      "listen = unix:/tmp/from-file.sock\n"
      "log_level = warning   # overridden by the environment, then the flag\n"
      "max_pools = 5\n");
  KVS_ASSERT_OK_AND_ASSIGN(
      CommandResult result,
      RunDaemon({"KVSHUTTLED_LISTEN=unix:/tmp/from-env.sock", "KVSHUTTLED_LOG_LEVEL=debug"},
                {"--config=" + file.path(), "--log_level=error", "--print_config"}));
  ASSERT_TRUE(result.exited_ok()) << DescribeWaitStatus(result.wait_status) << result.output;
  const std::string& out = result.output;
  for (const std::string& line : {
           std::string("\nlisten = unix:/tmp/from-env.sock  # env KVSHUTTLED_LISTEN\n"),
           std::string("\nlog_level = error  # command line\n"),
           absl::StrCat("\ncpu_threads = 3  # ", file.path(), ":2\n"),
           absl::StrCat("\nmax_pools = 5  # ", file.path(), ":5\n"),
           absl::StrCat("\nconfig = ", file.path(), "  # command line\n"),
           std::string("\ntcp = \"\"  # default\n"),
           std::string("\nmetrics_address = 0.0.0.0:9461  # default\n"),
       }) {
    EXPECT_TRUE(absl::StrContains(out, line)) << "missing: " << line << "\nin:\n" << out;
  }

  // Every flag --help lists is in the effective configuration, and --help explains the layers.
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult help, RunDaemon({}, {"--help"}));
  EXPECT_TRUE(absl::StrContains(help.output, "KVSHUTTLED_")) << help.output;
  EXPECT_TRUE(absl::StrContains(help.output, "/etc/kvshuttle/kvshuttled.conf")) << help.output;
  const std::regex flag_line(R"(\n    --([a-z_]+) \()");
  int listed = 0;
  for (auto it = std::sregex_iterator(help.output.begin(), help.output.end(), flag_line);
       it != std::sregex_iterator(); ++it, ++listed) {
    EXPECT_TRUE(absl::StrContains(out, absl::StrCat("\n", (*it)[1].str(), " = ")))
        << (*it)[1].str() << " is not in --print_config";
  }
  EXPECT_GE(listed, 20) << help.output;
}

TEST(OpsConfigTest, ConfigurationErrorsStopStartupNamingTheSource) {
  TempFile typo("listen = unix:/tmp/x.sock\ncpu_thread = 3\n");
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult result,
                           RunDaemon({}, {"--config=" + typo.path(), "--print_config"}));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output,
                                absl::StrCat(typo.path(), ":2: unknown key \"cpu_thread\"")))
      << result.output;

  KVS_ASSERT_OK_AND_ASSIGN(result, RunDaemon({"KVSHUTTLED_BOGUS=1"}, {"--config="}));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output,
                                "environment variable KVSHUTTLED_BOGUS names no flag"))
      << result.output;

  KVS_ASSERT_OK_AND_ASSIGN(result, RunDaemon({"KVSHUTTLED_SOCKET_MODE=999"}, {"--config="}));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output,
                                "--socket_mode=\"999\" (from env KVSHUTTLED_SOCKET_MODE): not an "
                                "octal mode"))
      << result.output;

  // --print_config reports a configuration that would not start instead of printing it.
  TempFile loud("log_level = loud\n");
  KVS_ASSERT_OK_AND_ASSIGN(result, RunDaemon({}, {"--config=" + loud.path(), "--print_config"}));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
  EXPECT_TRUE(absl::StrContains(
      result.output, absl::StrCat("--log_level=\"loud\" (from ", loud.path(),
                                  ":1): one of debug, info, warning, error")))
      << result.output;

  KVS_ASSERT_OK_AND_ASSIGN(result,
                           RunDaemon({"KVSHUTTLED_METRICS_ADDRESS=9461"}, {"--print_config"}));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output,
                                "--metrics_address=\"9461\" (from env KVSHUTTLED_METRICS_ADDRESS): "
                                "not host:port"))
      << result.output;

  KVS_ASSERT_OK_AND_ASSIGN(result, RunDaemon({}, {"--config=/nonexistent/kvs.conf"}));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output, "/nonexistent/kvs.conf")) << result.output;
}

TEST(OpsVersionTest, VersionNamesVersionCommitAndCuda) {
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult result, RunDaemon({}, {"--version"}));
  EXPECT_TRUE(result.exited_ok()) << result.output;
  EXPECT_TRUE(std::regex_match(
      result.output,
      std::regex(R"(kvshuttled \d+\.\d+\.\d+ \(commit ([0-9a-f]+|unknown), CUDA (\d+\.\d+|none)\)\n)")))
      << result.output;
}

// ---------------------------------------------------------------------------------------------
// Logs

TEST(OpsLogTest, JsonLogsAreOneObjectPerLineAndNeverHoldASessionId) {
  KVS_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<DaemonProcess> daemon,
      DaemonProcess::Start(WithFlags({"--log_format=json", "--log_level=debug"})));
  std::string session_id;
  {
    KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                             Session::Open(daemon->client(), "it \"json\"\n", /*attach=*/false));
    session_id = session->id();
    EXPECT_TRUE(HasStatus(session->UnregisterRegion(424242), StatusCode::kNotFound, {}));
  }
  daemon->SendTerm();
  KVS_ASSERT_OK_AND_ASSIGN(int status, WaitExitBusily(*daemon));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string out = daemon->Stderr();
  EXPECT_FALSE(absl::StrContains(out, session_id)) << "a session id is a capability";
  std::set<std::string> messages;
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    ++lines;
    google::protobuf::Struct event;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &event).ok())
        << "not JSON: " << line;
    const auto& f = event.fields();
    ASSERT_TRUE(f.count("ts") && f.count("level") && f.count("msg")) << line;
    EXPECT_TRUE(std::regex_match(f.at("ts").string_value(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")))
        << line;
    EXPECT_TRUE(std::set<std::string>({"debug", "info", "warning", "error"})
                    .count(f.at("level").string_value()))
        << line;
    messages.insert(f.at("msg").string_value());
    if (f.at("msg").string_value() == "session opened") {
      EXPECT_EQ(f.at("client").string_value(), "it \"json\"\n");
      EXPECT_EQ(f.at("session").string_value(), session_id.substr(0, 8));
    }
    if (f.at("msg").string_value() == "rpc" &&
        f.at("method").string_value() == "UnregisterRegion") {
      EXPECT_EQ(f.at("code").string_value(), "NOT_FOUND") << line;
    }
  }
  EXPECT_GE(lines, 5) << out;
  for (const char* expected : {"session opened", "session closed", "rpc", "draining", "stopped"}) {
    EXPECT_TRUE(messages.count(expected)) << "no \"" << expected << "\" event in:\n" << out;
  }
}

// ---------------------------------------------------------------------------------------------
// systemd notify protocol

// Starts kvshuttled with `env` added (NOTIFY_SOCKET & co.).
absl::StatusOr<std::unique_ptr<ChildProcess>> SpawnWithEnv(const std::vector<std::string>& env,
                                                            const std::string& socket_path) {
  std::vector<std::string> argv = {"/usr/bin/env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.insert(argv.end(), {KVS_DAEMON_PATH, "--listen=unix:" + socket_path, "--gpus=false",
                           "--metrics_address=", "--config="});
  return ChildProcess::Spawn(argv);
}

TEST(OpsSystemdTest, NotifiesReadyThenWatchdogPingsThenStoppingOnSigterm) {
  NotifySocket notify(UniqueTmpPath(".notify"));
  ASSERT_TRUE(notify.bound());
  const std::string socket_path = UniqueTmpPath(".sock");
  KVS_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<ChildProcess> daemon,
      SpawnWithEnv({"NOTIFY_SOCKET=" + notify.name(), "WATCHDOG_USEC=200000"}, socket_path));
  const std::string ready = notify.Receive(absl::Seconds(10));
  EXPECT_TRUE(absl::StartsWith(ready, "READY=1\nSTATUS=serving on unix:" + socket_path + ", 0 GPUs"))
      << ready << "\n" << daemon->Output();
  // WATCHDOG_USEC=200 ms: a ping every 100 ms.
  EXPECT_EQ(notify.Receive(absl::Seconds(2)), "WATCHDOG=1") << daemon->Output();
  EXPECT_EQ(notify.Receive(absl::Seconds(2)), "WATCHDOG=1") << daemon->Output();
  daemon->Signal(SIGTERM);
  const std::string stopping = notify.ReceiveStartingWith("STOPPING=1", absl::Seconds(10));
  EXPECT_EQ(stopping, "STOPPING=1\nSTATUS=draining (SIGTERM)") << daemon->Output();
  KVS_ASSERT_OK_AND_ASSIGN(int status, daemon->WaitExit(absl::Seconds(10)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << daemon->Output();
}

TEST(OpsSystemdTest, AbstractSocketAndNoWatchdogForAnotherPid) {
  NotifySocket notify(absl::StrCat("@kvs-it-notify-", ::getpid()));
  ASSERT_TRUE(notify.bound());
  const std::string socket_path = UniqueTmpPath(".sock");
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ChildProcess> daemon,
                           SpawnWithEnv({"NOTIFY_SOCKET=" + notify.name(), "WATCHDOG_USEC=100000",
                                         absl::StrCat("WATCHDOG_PID=", ::getpid())},
                                        socket_path));
  const std::string ready = notify.Receive(absl::Seconds(10));
  EXPECT_TRUE(absl::StartsWith(ready, "READY=1\n")) << ready << "\n" << daemon->Output();
  EXPECT_EQ(notify.Receive(absl::Milliseconds(500)), "") << "the watchdog is another process's";
  daemon->Signal(SIGTERM);
  EXPECT_EQ(notify.Receive(absl::Seconds(10)), "STOPPING=1\nSTATUS=draining (SIGTERM)");
  KVS_ASSERT_OK_AND_ASSIGN(int status, daemon->WaitExit(absl::Seconds(10)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << daemon->Output();
  ::unlink(socket_path.c_str());
}

}  // namespace
}  // namespace kvshuttle::it
