// Smoke test of the `kvshuttle` CLI against a real daemon: demo (all 25 layout pairs, byte
// exact), health, and info --json (parsed back into GetInfoResponse).
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "absl/strings/match.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

#ifndef KVS_CLI_PATH
#error "KVS_CLI_PATH must name the kvshuttle CLI"
#endif

namespace kvshuttle::it {
namespace {

class CliTest : public SharedDaemonTest<CliTest> {
 public:
  static DaemonConfig Config() { return DaemonConfig{}; }

 protected:
  // Runs `kvshuttle --target unix:<socket> args...` (30 s at most).
  static absl::StatusOr<CommandResult> Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {KVS_CLI_PATH, "--target", daemon_->target()});
    return RunCommand(args, absl::Seconds(30));
  }
};

TEST_F(CliTest, DemoConvertsAll25PairsByteExact) {
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult demo, Cli({"demo"}));
  EXPECT_TRUE(demo.exited_ok()) << DescribeWaitStatus(demo.wait_status) << "\n" << demo.output;
  EXPECT_TRUE(absl::StrContains(demo.output, "25/25")) << demo.output;
}

TEST_F(CliTest, HealthIsServing) {
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult health, Cli({"health"}));
  EXPECT_TRUE(health.exited_ok()) << DescribeWaitStatus(health.wait_status) << "\n"
                                  << health.output;
  EXPECT_TRUE(absl::StrContains(health.output, "SERVING")) << health.output;
}

TEST_F(CliTest, InfoJsonParses) {
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult info, Cli({"--json", "info"}));
  ASSERT_TRUE(info.exited_ok()) << DescribeWaitStatus(info.wait_status) << "\n" << info.output;
  EXPECT_TRUE(absl::StrContains(info.output, "\"version\"")) << info.output;
  v1::GetInfoResponse parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(info.output, &parsed);
  ASSERT_TRUE(status.ok()) << status.ToString() << "\n" << info.output;
  EXPECT_FALSE(parsed.version().empty());
  EXPECT_EQ(parsed.listen_address(), daemon_->target());
}

// The table form shows every budget with its limit and use (issue 13: "kvshuttle info shows
// them and current use"); the JSON form carries the same numbers.
TEST_F(CliTest, InfoShowsBudgetsAndTheirUse) {
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult info, Cli({"info"}));
  ASSERT_TRUE(info.exited_ok()) << DescribeWaitStatus(info.wait_status) << "\n" << info.output;
  for (const char* expected : {"BUDGET", "metadata", "maps", "pool_host", "per client",
                               "per session", "fd channel"}) {
    EXPECT_TRUE(absl::StrContains(info.output, expected)) << expected << "\n" << info.output;
  }
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult json, Cli({"--json", "info"}));
  v1::GetInfoResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.output, &parsed).ok())
      << json.output;
  ASSERT_FALSE(parsed.budgets().empty()) << json.output;
  for (const v1::BudgetUsage& budget : parsed.budgets()) {
    EXPECT_GT(budget.limit(), 0) << budget.name();
    EXPECT_GE(budget.used(), 0) << budget.name();
    EXPECT_LE(budget.used(), budget.limit()) << budget.name();
  }
}

// Global flags may also follow the command.
TEST_F(CliTest, JsonFlagAfterTheCommand) {
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult info, Cli({"info", "--json"}));
  EXPECT_TRUE(info.exited_ok()) << DescribeWaitStatus(info.wait_status) << "\n" << info.output;
  v1::GetInfoResponse parsed;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(info.output, &parsed).ok())
      << info.output;
}

TEST_F(CliTest, UnreachableDaemonFailsWithoutHanging) {
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult health,
                           RunCommand({KVS_CLI_PATH, "--timeout", "2", "--target",
                                       "unix:" + UniqueTmpPath(".nobody.sock"), "health"},
                                      absl::Seconds(15)));
  EXPECT_FALSE(health.exited_ok()) << health.output;
}

}  // namespace
}  // namespace kvshuttle::it
