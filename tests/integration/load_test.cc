// The short CI version of the load run (issue #7): kvs_load (bench/load_tool.cc) with 8 client
// threads × 200 jobs, and 4 worker processes on the Attach-event path, against a real
// kvshuttled; every run must end with 0 errors, every sampled destination byte-exact and no fd
// or thread growth of the daemon between its idle states before and after. A daemon whose
// queue cannot take a batch shows that errors fail the run, counted by gRPC code.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

// The port of the daemon's metrics endpoint, from its "serving" log line (0 if not found).
int MetricsPort(const DaemonProcess& daemon) {
  const std::string kPrefix = "metrics=http://127.0.0.1:";
  int port = 0;
  WaitUntil(
      [&] {
        const std::string out = daemon.Stderr();
        const size_t at = out.find(kPrefix);
        if (at == std::string::npos) return false;
        const size_t start = at + kPrefix.size();
        return absl::SimpleAtoi(out.substr(start, out.find('/', start) - start), &port);
      },
      absl::Seconds(10));
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// A kvs_load run and its JSON report.
struct LoadRun {
  CommandResult command;
  std::string json;
};

absl::StatusOr<LoadRun> RunLoad(const DaemonProcess& daemon, std::vector<std::string> flags) {
  const std::string out = UniqueTmpPath(".json");
  std::vector<std::string> argv = {KVS_LOAD_PATH, "--target=" + daemon.target(),
                                   absl::StrCat("--daemon_pid=", daemon.pid()), "--out=" + out,
                                   "--noprogress"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<CommandResult> command = RunCommand(argv, absl::Seconds(90));
  if (!command.ok()) return command.status();
  LoadRun run{*std::move(command), ReadFile(out)};
  ::unlink(out.c_str());
  return run;
}

// The daemon's idle figures before and after must be equal for fds and threads; the report
// says so in its growth fields (kvs_load fails the run otherwise, and we check that too).
void ExpectCleanRun(const LoadRun& run, const DaemonProcess& daemon, int64_t jobs,
                    int64_t verified) {
  EXPECT_TRUE(run.command.exited_ok()) << DescribeWaitStatus(run.command.wait_status) << "\n"
                                       << run.command.output << "\n--- kvshuttled ---\n"
                                       << daemon.Stderr();
  EXPECT_TRUE(absl::StrContains(run.json, "\"pass\": true")) << run.json;
  EXPECT_TRUE(absl::StrContains(run.json, "\"errors_total\": 0}")) << run.json;
  EXPECT_TRUE(absl::StrContains(run.json, absl::StrCat("\"jobs_done\": ", jobs, ","))) << run.json;
  EXPECT_TRUE(absl::StrContains(run.json, absl::StrCat("\"jobs_verified\": ", verified, ",")))
      << run.json;
  EXPECT_TRUE(absl::StrContains(run.json, "\"open_fds\": 0, \"threads\": 0, \"threads_total\""))
      << run.json;
}

TEST(LoadTest, ThreadsRunWithoutErrorsOrGrowth) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DaemonProcess> daemon,
                           DaemonProcess::Start(WithFlags({"--metrics_address=127.0.0.1:0"})));
  const int port = MetricsPort(*daemon);
  ASSERT_GT(port, 0) << daemon->Stderr();
  KVS_ASSERT_OK_AND_ASSIGN(
      const LoadRun run,
      RunLoad(*daemon,
              {"--clients=8", "--jobs=200", "--batch=4", "--memory=host", "--verify_every=10",
               absl::StrCat("--daemon_metrics=http://127.0.0.1:", port, "/metrics")}));
  ExpectCleanRun(run, *daemon, 1600, 160);
  // Both sources were sampled: /proc and the daemon's own gauges.
  EXPECT_TRUE(absl::StrContains(run.json, "\"metrics\": {\"before\"")) << run.json;
  EXPECT_TRUE(absl::StrContains(run.json, "\"proc\": {\"before\"")) << run.json;
}

TEST(LoadTest, ProcessesOnAttachEventsRunWithoutErrorsOrGrowth) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DaemonProcess> daemon, DaemonProcess::Start());
  KVS_ASSERT_OK_AND_ASSIGN(
      const LoadRun run,
      RunLoad(*daemon, {"--clients=4", "--processes", "--jobs=100", "--warmup_jobs=10",
                        "--completion=events", "--batch=3", "--pairs=2", "--blocks=8",
                        "--layouts=hnd:operational_hnd", "--verify_every=5"}));
  ExpectCleanRun(run, *daemon, 400, 80);
}

TEST(LoadTest, ErrorsFailTheRunAndAreCountedByCode) {
  // A queue of 2 cannot take a batch of 4: every SubmitBatch is RESOURCE_EXHAUSTED.
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DaemonProcess> daemon,
                           DaemonProcess::Start(WithFlags({"--queue_capacity=2"})));
  KVS_ASSERT_OK_AND_ASSIGN(const LoadRun run, RunLoad(*daemon, {"--clients=2", "--jobs=20",
                                                                "--batch=4", "--warmup_jobs=0"}));
  EXPECT_TRUE(WIFEXITED(run.command.wait_status) && WEXITSTATUS(run.command.wait_status) == 1)
      << DescribeWaitStatus(run.command.wait_status) << "\n"
      << run.command.output;
  EXPECT_TRUE(absl::StrContains(run.json, "\"SubmitBatch:RESOURCE_EXHAUSTED\": ")) << run.json;
  EXPECT_TRUE(absl::StrContains(run.json, "\"pass\": false")) << run.json;
}

}  // namespace
}  // namespace kvshuttle::it
