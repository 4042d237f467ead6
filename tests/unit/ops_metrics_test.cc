// server/ops/metrics: exact text exposition of a small registry, escaping, cumulative
// histogram buckets, collectors, and counts under concurrent updates.
#include "server/ops/metrics.h"

#include <gtest/gtest.h>

#include <limits>
#include <thread>
#include <vector>

namespace kvshuttle::metrics {
namespace {

TEST(MetricsTest, RendersASmallRegistryExactly) {
  Registry registry;
  Family<Counter>& jobs = registry.AddCounter("t_jobs_total", "Jobs.", {"executor", "status"});
  Family<Gauge>& up = registry.AddGauge("t_up", "Up.");
  Family<Histogram>& run = registry.AddHistogram("t_run_seconds", "Run time.", {"executor"},
                                                 {0.001, 0.01, 0.1});
  jobs.Labels({"gpu0", "done"}).Increment(3);
  jobs.Labels({"cpu", "done"}).Increment();
  up.Get().Set(1);
  Histogram& cpu = run.Labels({"cpu"});
  cpu.Observe(0.0005);
  cpu.Observe(0.001);  // on a bound: counted in that bucket (le = less or equal)
  cpu.Observe(0.05);
  cpu.Observe(7);

  EXPECT_EQ(registry.Render(),
            "# HELP t_jobs_total Jobs.\n"
            "# TYPE t_jobs_total counter\n"
            "t_jobs_total{executor=\"cpu\",status=\"done\"} 1\n"
            "t_jobs_total{executor=\"gpu0\",status=\"done\"} 3\n"
            "# HELP t_up Up.\n"
            "# TYPE t_up gauge\n"
            "t_up 1\n"
            "# HELP t_run_seconds Run time.\n"
            "# TYPE t_run_seconds histogram\n"
            "t_run_seconds_bucket{executor=\"cpu\",le=\"0.001\"} 2\n"
            "t_run_seconds_bucket{executor=\"cpu\",le=\"0.01\"} 2\n"
            "t_run_seconds_bucket{executor=\"cpu\",le=\"0.1\"} 3\n"
            "t_run_seconds_bucket{executor=\"cpu\",le=\"+Inf\"} 4\n"
            "t_run_seconds_sum{executor=\"cpu\"} 7.0515\n"
            "t_run_seconds_count{executor=\"cpu\"} 4\n");
}

TEST(MetricsTest, FamiliesWithoutSamplesRenderOnlyHelpAndType) {
  Registry registry;
  registry.AddCounter("t_empty_total", "Nothing yet.", {"method"});
  EXPECT_EQ(registry.Render(), "# HELP t_empty_total Nothing yet.\n# TYPE t_empty_total counter\n");
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(EscapeLabelValue("plain {x=y}"), "plain {x=y}");
  EXPECT_EQ(EscapeHelp("back\\slash \"quoted\"\nnext"), "back\\\\slash \"quoted\"\\nnext");

  Registry registry;
  registry.AddGauge("t_pool_blocks", "Blocks\nper pool.", {"pool"})
      .Labels({"kv \"main\"\\\n"})
      .Set(2);
  EXPECT_EQ(registry.Render(),
            "# HELP t_pool_blocks Blocks\\nper pool.\n"
            "# TYPE t_pool_blocks gauge\n"
            "t_pool_blocks{pool=\"kv \\\"main\\\"\\\\\\n\"} 2\n");
}

TEST(MetricsTest, FormatsNumbersInShortestRoundTripForm) {
  EXPECT_EQ(FormatNumber(0), "0");
  EXPECT_EQ(FormatNumber(42), "42");
  EXPECT_EQ(FormatNumber(1e-5), "1e-05");
  EXPECT_EQ(FormatNumber(2.5e-5), "2.5e-05");
  EXPECT_EQ(FormatNumber(0.25), "0.25");
  EXPECT_EQ(FormatNumber(1099511627776.0), "1099511627776");
  EXPECT_EQ(FormatNumber(-3.5), "-3.5");
  EXPECT_EQ(FormatNumber(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatNumber(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatNumber(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndEndWithTheTotal) {
  Histogram h({1, 2, 4, 8});
  for (double v : {0.5, 1.0, 1.5, 3.0, 3.0, 9.0, 100.0}) h.Observe(v);
  EXPECT_EQ(h.CumulativeCounts(), (std::vector<uint64_t>{2, 3, 5, 5, 7}));
  EXPECT_DOUBLE_EQ(h.sum(), 118.0);
  const std::vector<uint64_t> counts = h.CumulativeCounts();
  for (size_t i = 1; i < counts.size(); ++i) EXPECT_GE(counts[i], counts[i - 1]);
}

TEST(MetricsTest, GaugesGoUpAndDown) {
  Gauge g;
  g.Set(5);
  g.Add(-7);
  EXPECT_DOUBLE_EQ(g.value(), -2);
}

TEST(MetricsTest, CollectorsAddScrapeTimeFamiliesAfterTheRegisteredOnes) {
  Registry registry;
  registry.AddGauge("t_static", "Static.").Get().Set(1);
  int calls = 0;
  registry.AddCollector([&calls](std::vector<FamilySnapshot>& out) {
    ++calls;
    FamilySnapshot& f = out.emplace_back();
    f.name = "t_sessions";
    f.help = "Sessions.";
    f.type = MetricType::kGauge;
    f.label_names = {"kind"};
    f.Add({"a"}, calls);
  });
  registry.Render();
  EXPECT_EQ(registry.Render(),
            "# HELP t_static Static.\n# TYPE t_static gauge\nt_static 1\n"
            "# HELP t_sessions Sessions.\n# TYPE t_sessions gauge\nt_sessions{kind=\"a\"} 2\n");
}

TEST(MetricsTest, ChildrenAreStableAndCountConcurrentIncrementsExactly) {
  Registry registry;
  Family<Counter>& counter = registry.AddCounter("t_ops_total", "Ops.", {"thread"});
  Family<Histogram>& latency =
      registry.AddHistogram("t_latency_seconds", "Latency.", {}, {0.5});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.Labels({"shared"}).Increment();
        counter.Labels({std::to_string(t % 2)}).Increment(2);
        latency.Get().Observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  // Scrapes while the counts move: always consistent (+Inf bucket == _count ≥ lower buckets).
  for (int i = 0; i < 50; ++i) {
    for (const FamilySnapshot& f : registry.Collect()) {
      for (const Sample& s : f.samples) {
        if (f.type != MetricType::kHistogram) continue;
        ASSERT_EQ(s.cumulative.size(), 2u);
        EXPECT_LE(s.cumulative[0], s.cumulative[1]);
      }
    }
  }
  for (std::thread& t : threads) t.join();
  EXPECT_DOUBLE_EQ(counter.Labels({"shared"}).value(), kThreads * kPerThread);
  EXPECT_DOUBLE_EQ(counter.Labels({"0"}).value(), 2.0 * kThreads / 2 * kPerThread);
  EXPECT_EQ(&counter.Labels({"1"}), &counter.Labels({"1"}));
  const std::vector<uint64_t> counts = latency.Get().CumulativeCounts();
  EXPECT_EQ(counts[0], uint64_t{kThreads} * kPerThread / 2);
  EXPECT_EQ(counts[1], uint64_t{kThreads} * kPerThread);
  EXPECT_DOUBLE_EQ(latency.Get().sum(), kThreads * (kPerThread / 2) * 1.25);
}

TEST(MetricsDeathTest, WrongLabelCountOrBadNamesAbortNamingTheMetric) {
  EXPECT_DEATH(
      {
        Registry registry;
        registry.AddCounter("t_x_total", "X.", {"a", "b"}).Labels({"only one"});
      },
      "t_x_total: 1 label values for 2 label names");
  EXPECT_DEATH(
      {
        Registry registry;
        registry.AddGauge("9bad", "Bad.");
      },
      "invalid metric name");
  EXPECT_DEATH(
      {
        Registry registry;
        registry.AddHistogram("t_h", "H.", {"le"}, {1});
      },
      "invalid label name \"le\"");
  EXPECT_DEATH(
      {
        Registry registry;
        registry.AddGauge("t_twice", "A.");
        registry.AddCounter("t_twice", "B.");
      },
      "registered twice");
  EXPECT_DEATH(
      {
        Registry registry;
        registry.AddHistogram("t_h", "H.", {}, {1, 1});
      },
      "strictly increasing");
}

}  // namespace
}  // namespace kvshuttle::metrics
