// The pure parts of kvs_load (bench/load_*): Prometheus text lookups, metrics URLs, nearest-rank
// percentiles, the worker result format and workload validation. CPU only, no daemon.
#include <gtest/gtest.h>

#include <numeric>

#include "bench/load_client.h"
#include "bench/load_probe.h"
#include "bench/load_report.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle::load {
namespace {

using ::kvshuttle::testing::HasStatus;

constexpr char kExposition[] =
    "# HELP kvshuttle_build_info Build.\n"
    "# TYPE kvshuttle_build_info gauge\n"
    "kvshuttle_build_info{version=\"0.1.0\",commit=\"3e54d66a1b2c\"} 1\n"
    "kvshuttle_sessions 3\n"
    "kvshuttle_sessions_extra 7\n"
    "kvshuttle_regions{kind=\"cuda_ipc\"} 2\n"
    "kvshuttle_regions{kind=\"host_shm\"} 5\n"
    "kvshuttle_process_open_fds 14\n"
    "kvshuttle_process_resident_bytes 2.0447232e+07\n";

TEST(LoadProbeTest, MetricLookups) {
  EXPECT_EQ(MetricValue(kExposition, "kvshuttle_sessions"), 3);
  EXPECT_EQ(MetricValue(kExposition, "kvshuttle_process_open_fds"), 14);
  EXPECT_EQ(MetricValue(kExposition, "kvshuttle_process_resident_bytes"), 20447232);
  EXPECT_EQ(MetricValue(kExposition, "kvshuttle_regions{kind=\"host_shm\"}"), 5);
  EXPECT_EQ(MetricValue(kExposition, "kvshuttle_process_threads"), -1);
  EXPECT_EQ(MetricSum(kExposition, "kvshuttle_regions"), 7);
  EXPECT_EQ(MetricSum(kExposition, "kvshuttle_sessions"), 3);  // not _extra
  EXPECT_EQ(MetricSum(kExposition, "kvshuttle_pools"), -1);
  EXPECT_EQ(MetricLabel(kExposition, "kvshuttle_build_info", "commit"), "3e54d66a1b2c");
  EXPECT_EQ(MetricLabel(kExposition, "kvshuttle_build_info", "version"), "0.1.0");
  EXPECT_EQ(MetricLabel(kExposition, "kvshuttle_build_info", "ommit"), "");
}

TEST(LoadProbeTest, GrpcPoolThreadsAreKnownByName) {
  EXPECT_TRUE(IsGrpcPoolThread("default-executo"));
  EXPECT_TRUE(IsGrpcPoolThread("grpc_global_tim"));
  EXPECT_TRUE(IsGrpcPoolThread("event_engine"));
  EXPECT_FALSE(IsGrpcPoolThread("grpcpp_sync_ser"));  // one per running handler: counted
  EXPECT_FALSE(IsGrpcPoolThread("kvshuttled"));
  DaemonSample sample;
  sample.threads = 20;
  EXPECT_EQ(CountedThreads(sample), 20);  // pools unknown (metrics only)
  sample.grpc_pool_threads = 7;
  EXPECT_EQ(CountedThreads(sample), 13);
}

TEST(LoadProbeTest, HttpUrls) {
  absl::StatusOr<HttpUrl> url = ParseHttpUrl("http://127.0.0.1:9461/metrics");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 9461);
  EXPECT_EQ(url->path, "/metrics");
  url = ParseHttpUrl("http://[::1]:80");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->path, "/");
  EXPECT_TRUE(
      HasStatus(ParseHttpUrl("https://x:1/"), absl::StatusCode::kInvalidArgument, {"http://"}));
  EXPECT_TRUE(HasStatus(ParseHttpUrl("http://x:0/"), absl::StatusCode::kInvalidArgument, {"port"}));
  EXPECT_TRUE(
      HasStatus(ParseHttpUrl("http://:9/"), absl::StatusCode::kInvalidArgument, {"no host"}));
}

TEST(LoadReportTest, NearestRankPercentiles) {
  std::vector<int64_t> ns(100);
  std::iota(ns.begin(), ns.end(), 1);
  for (int64_t& v : ns) v *= 1000;  // 1..100 us, shuffled order does not matter
  std::swap(ns[0], ns[99]);
  const LatencySummary s = Summarize(ns);
  EXPECT_EQ(s.count, 100);
  EXPECT_EQ(s.p50_us, 50);
  EXPECT_EQ(s.p90_us, 90);
  EXPECT_EQ(s.p99_us, 99);
  EXPECT_EQ(s.max_us, 100);
  EXPECT_DOUBLE_EQ(s.mean_us, 50.5);
  EXPECT_EQ(Summarize({7000}).p99_us, 7);
  EXPECT_EQ(Summarize({}).count, 0);
}

TEST(LoadReportTest, WorkerResultRoundTrips) {
  ClientResult r;
  r.jobs_planned = 10;
  r.jobs_submitted = 8;
  r.jobs_done = 7;
  r.jobs_verified = 2;
  r.payload_bytes = 1 << 20;
  r.latency_ns = {5, 6, 7};
  r.daemon_ns = {1, 2};
  r.gpu_uuid = "GPU-00000000-0000-0000-0000-000000000001";
  r.AddError("SubmitBatch:RESOURCE_EXHAUSTED", 2);
  r.AddError("verify:MISMATCH");
  absl::StatusOr<ClientResult> back = ParseResult(SerializeResult(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->jobs_planned, 10);
  EXPECT_EQ(back->jobs_submitted, 8);
  EXPECT_EQ(back->jobs_done, 7);
  EXPECT_EQ(back->jobs_verified, 2);
  EXPECT_EQ(back->payload_bytes, 1 << 20);
  EXPECT_EQ(back->latency_ns, r.latency_ns);
  EXPECT_EQ(back->daemon_ns, r.daemon_ns);
  EXPECT_EQ(back->gpu_uuid, r.gpu_uuid);
  EXPECT_EQ(back->errors, r.errors);
  EXPECT_EQ(back->error_count(), 3);
  // A worker that died mid-way leaves no "end" line.
  EXPECT_TRUE(HasStatus(ParseResult("planned 1\n"), absl::StatusCode::kInvalidArgument, {"end"}));
  EXPECT_TRUE(HasStatus(ParseResult("planned x\nend\n"), absl::StatusCode::kInvalidArgument,
                        {"planned x"}));
}

TEST(LoadReportTest, JsonStrings) {
  EXPECT_EQ(JsonString("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST(LoadClientTest, WorkloadValidationNamesTheFlag) {
  Workload w;
  EXPECT_TRUE(ValidateWorkload(w).ok());
  w.batch = 17;  // 17 jobs × 1 pair > 16 destination blocks
  EXPECT_TRUE(HasStatus(ValidateWorkload(w), absl::StatusCode::kInvalidArgument, {"--batch"}));
  w = Workload();
  w.dst.shape.hd = 64;
  EXPECT_TRUE(HasStatus(ValidateWorkload(w), absl::StatusCode::kInvalidArgument, {"--layouts"}));
  EXPECT_EQ(BlockSetBytes(Workload().src, 16), int64_t{16} * 4 * 2 * 16 * 8 * 128 * 2);
}

}  // namespace
}  // namespace kvshuttle::load
