// Issue #13, item 8: chaos. Valid clients convert and check bytes while a hostile client (another
// uid, kvs_it_chaos_hostile_client) runs every hostile pattern of the issue at once against the
// same daemon: session hoarding, metadata amplifiers, shm truncation, queue hogging, idle and
// garbage connections, oversized messages, Wait floods. The valid clients see 0 errors and
// every conversion byte-exact; the daemon never exits; its RSS, descriptors, mappings and
// threads stay within the budgets it was started with. Bounded (20 s of chaos), loopback only.
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

constexpr int kChaosSeconds = 20;
constexpr int kValidClients = 4;
constexpr uid_t kHostileUid = 65534;  // nobody

// The budgets the daemon runs with; the bounds below are derived from them.
constexpr int kMaxConnections = 128;
constexpr int kMaxConnectionsPerUid = 48;
constexpr int kMapsBudget = 512;
constexpr int kMetadataBudgetMib = 128;
constexpr int kGrpcMemoryMib = 128;
constexpr int kMaxRpcThreads = 64;

struct Peak {
  int64_t rss_kib = 0;
  int fds = 0;
  int maps = 0;
  int64_t threads = 0;
  void Take(const DaemonProcess& d) {
    rss_kib = std::max(rss_kib, d.VmRssKiB());
    fds = std::max(fds, d.CountOpenFds());
    maps = std::max(maps, d.CountMappings(""));
    threads = std::max(threads, d.Threads());
  }
  std::string ToString() const {
    return absl::StrCat("RSS ", rss_kib >> 10, " MiB, ", fds, " fds, ", maps, " mappings, ",
                        threads, " threads");
  }
};

TEST(ChaosTest, ValidClientsSeeNoErrorsWhileAHostileClientRunsEveryPattern) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root: the hostile client must run as another uid (" << kHostileUid
                 << ") for the per-client limits to separate it from the valid clients";
  }
  absl::StatusOr<std::unique_ptr<DaemonProcess>> started = DaemonProcess::Start(WithFlags({
      "--socket_mode=0666",  // the hostile uid must reach the socket
      "--cpu_threads=2",
      "--max_sessions_per_client=8",
      absl::StrCat("--max_connections=", kMaxConnections),
      absl::StrCat("--max_connections_per_uid=", kMaxConnectionsPerUid),
      "--connection_idle_seconds=2",
      "--max_message_mib=16",
      absl::StrCat("--grpc_memory_mib=", kGrpcMemoryMib),
      absl::StrCat("--metadata_budget_mib=", kMetadataBudgetMib),
      "--session_metadata_budget_mib=32",
      absl::StrCat("--maps_budget=", kMapsBudget),
      "--session_maps_budget=64",
      "--pool_host_fraction=0.02",
      "--max_waits_per_session=4",
      "--max_wait_ids=65536",
      absl::StrCat("--max_rpc_threads=", kMaxRpcThreads),
  }));
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<DaemonProcess> daemon = *std::move(started);
  // Warm up what the daemon allocates once (executor threads, the first registration), then
  // take the baseline.
  KVS_ASSERT_OK(WarmUpRegistration(daemon->client()));
  const int64_t rss0 = daemon->VmRssKiB();
  const int fds0 = daemon->CountOpenFds();
  const int maps0 = daemon->CountMappings("");
  const int64_t threads0 = daemon->Threads();

  KVS_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<ChildProcess> hostile,
      ChildProcess::Spawn({KVS_CHAOS_HOSTILE_PATH, daemon->socket_path(),
                           absl::StrCat(kChaosSeconds), absl::StrCat(kHostileUid)}));
  ASSERT_TRUE(hostile->WaitForOutput("HOSTILE STARTED", absl::Seconds(10))) << hostile->Output();

  std::atomic<bool> stop{false};
  std::atomic<int64_t> conversions{0};
  std::mutex errors_mu;
  std::vector<std::string> errors;
  auto error = [&](std::string e) {
    std::lock_guard<std::mutex> lock(errors_mu);
    errors.push_back(std::move(e));
  };
  std::vector<std::thread> valid;
  for (int c = 0; c < kValidClients; ++c) {
    valid.emplace_back([&, c] {
      absl::StatusOr<std::unique_ptr<Client>> client = daemon->Connect();
      if (!client.ok()) return error(absl::StrCat("client ", c, ": ", client.status().ToString()));
      absl::StatusOr<std::unique_ptr<Session>> session =
          Session::Open(**client, absl::StrCat("chaos-valid-", c), /*attach=*/true);
      if (!session.ok()) return error(absl::StrCat("session ", c, ": ", session.status().ToString()));
      const BlockShape shape{.nl = 2, .no = 2, .nt = 8, .nh = 4, .hd = 16};
      for (uint64_t round = 0; !stop; ++round) {
        const LayoutKind kinds[] = {LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                    LayoutKind::kUniversal};
        const LayoutDesc from = MakeLayout(kinds[round % 3], shape);
        const LayoutDesc to = MakeLayout(kinds[(round + 1) % 3], shape);
        absl::StatusOr<HostBlockSet> src =
            MakeHostBlockSet(**session, from, 4, Placement::kStrided, round * 2 + 1);
        absl::StatusOr<HostBlockSet> dst =
            MakeHostBlockSet(**session, to, 4, Placement::kStrided, round * 2 + 2);
        if (!src.ok() || !dst.ok()) {
          return error(absl::StrCat("client ", c, " round ", round, ": block sets: ",
                                    (src.ok() ? dst.status() : src.status()).ToString()));
        }
        const TransferSpec spec = WholeBlocks(from, to);
        const std::vector<BlockPair> pairs = {{0, 3, 0, 0}, {2, 1, 0, 0}, {3, 0, 0, 0}};
        absl::StatusOr<std::vector<uint8_t>> expected = ExpectedAfter(*src, *dst, spec, pairs);
        absl::StatusOr<v1::WaitResponse> done = RunBatch(
            **session, {MakeJob(src->endpoint(), dst->endpoint(), spec, pairs)},
            absl::Seconds(30));
        if (!expected.ok() || !done.ok()) {
          return error(absl::StrCat("client ", c, " round ", round, ": ",
                                    (done.ok() ? expected.status() : done.status()).ToString()));
        }
        if (done->results_size() != 1 || done->results(0).state() != v1::JOB_DONE) {
          return error(absl::StrCat("client ", c, " round ", round, ": ", done->DebugString()));
        }
        if (!BytesEqual(dst->data(), *expected)) {
          return error(absl::StrCat("client ", c, " round ", round, ": wrong bytes"));
        }
        for (const HostBlockSet* set : {&*src, &*dst}) {
          absl::StatusOr<v1::UnregisterRegionResponse> gone =
              (*session)->UnregisterRegion(set->region_id);
          if (!gone.ok()) return error(absl::StrCat("client ", c, ": ", gone.status().ToString()));
        }
        ++conversions;
      }
    });
  }

  Peak peak;
  bool died = false;
  const absl::Time end = absl::Now() + absl::Seconds(kChaosSeconds);
  while (absl::Now() < end) {
    if (!daemon->running()) {
      died = true;
      break;
    }
    peak.Take(*daemon);
    absl::SleepFor(absl::Milliseconds(100));
  }
  stop = true;
  for (std::thread& t : valid) t.join();
  absl::StatusOr<int> hostile_exit = hostile->WaitExit(absl::Seconds(30));
  ASSERT_FALSE(died) << "the daemon exited\n" << daemon->Stderr();
  ASSERT_TRUE(hostile_exit.ok()) << hostile->Output();
  EXPECT_TRUE(absl::StrContains(hostile->Output(), "HOSTILE DONE")) << hostile->Output();
  std::printf("%s", hostile->Output().c_str());
  std::printf("valid conversions: %lld; daemon peak: %s (baseline RSS %lld MiB, %d fds, %d "
              "mappings, %lld threads)\n",
              static_cast<long long>(conversions.load()), peak.ToString().c_str(),
              static_cast<long long>(rss0 >> 10), fds0, maps0,
              static_cast<long long>(threads0));

  EXPECT_TRUE(errors.empty()) << absl::StrJoin(errors, "\n");
  EXPECT_GE(conversions.load(), kValidClients) << "the valid clients made no progress";
  ASSERT_TRUE(daemon->running()) << daemon->Stderr();
  // Within the budgets: connections and tokens bound descriptors; the maps budget bounds
  // region mappings (each thread adds a stack and its guard); the RPC thread cap bounds
  // threads; metadata plus gRPC's memory bound (plus allocator slack) bound the RSS.
  EXPECT_LE(peak.fds, fds0 + kMaxConnections + 64) << peak.ToString();
  EXPECT_LE(peak.threads, threads0 + kMaxRpcThreads + 16) << peak.ToString();
  EXPECT_LE(peak.maps, maps0 + kMapsBudget + 2 * (peak.threads - threads0) + 64)
      << peak.ToString();
  EXPECT_LE(peak.rss_kib - rss0,
            (int64_t{kMetadataBudgetMib + kGrpcMemoryMib + 192} << 10) + kSanitizerSlackKiB)
      << peak.ToString();
  // The daemon still serves a newcomer after the hostile client left.
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> after,
                           Session::Open(daemon->client(), "chaos-after", /*attach=*/false));
  absl::StatusOr<int> stopped = daemon->Stop(absl::Seconds(15));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << DescribeWaitStatus(*stopped);
}

}  // namespace
}  // namespace kvshuttle::it
