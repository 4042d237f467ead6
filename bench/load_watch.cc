// DaemonWatch: idle waits, settled samples and the growth verdict of a kvs_load run.
#include "bench/load_watch.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/load_report.h"

namespace kvshuttle::load {

Samples DaemonWatch::Sample() const {
  const RunOptions& o = o_;
  Samples s;
  if (o.daemon_pid > 0) {
    absl::StatusOr<DaemonSample> proc = SampleProc(o.daemon_pid);
    if (proc.ok()) {
      s.proc = *proc;
    } else {
      std::fprintf(stderr, "kvs_load: /proc sample: %s\n", proc.status().ToString().c_str());
    }
  }
  if (!o.daemon_metrics_url.empty()) {
    absl::StatusOr<DaemonSample> metrics = SampleMetrics(o.daemon_metrics_url);
    if (metrics.ok()) {
      s.metrics = *metrics;
    } else {
      std::fprintf(stderr, "kvs_load: metrics sample: %s\n", metrics.status().ToString().c_str());
    }
  }
  // The gauge cannot tell thread names; /proc, sampled just before, can.
  if (s.proc && s.metrics) s.metrics->grpc_pool_threads = s.proc->grpc_pool_threads;
  return s;
}

// Growth of fds/threads within the thresholds in every source that has both samples.
bool DaemonWatch::WithinCountLimits(const Samples& before, const Samples& after) const {
  const RunOptions& o = o_;
  auto ok = [&](const std::optional<DaemonSample>& b, const std::optional<DaemonSample>& a) {
    return !b || !a ||
           (a->open_fds - b->open_fds <= o.max_fd_growth &&
            CountedThreads(*a) - CountedThreads(*b) <= o.max_thread_growth);
  };
  return ok(before.proc, after.proc) && ok(before.metrics, after.metrics);
}

bool SameCounts(const Samples& x, const Samples& y) {
  auto same = [](const std::optional<DaemonSample>& a, const std::optional<DaemonSample>& b) {
    return a.has_value() == b.has_value() &&
           (!a || (a->open_fds == b->open_fds && CountedThreads(*a) == CountedThreads(*b)));
  };
  return same(x.proc, y.proc) && same(x.metrics, y.metrics);
}

bool DaemonWatch::WaitIdle(const Client& control, const v1::GetStatsResponse& idle) const {
  const RunOptions& o = o_;
  const absl::Time deadline = absl::Now() + o.settle_timeout;
  while (true) {
    absl::StatusOr<v1::GetStatsResponse> stats = control.GetStats();
    if (stats.ok() && stats->sessions() <= idle.sessions() && stats->regions() <= idle.regions()) {
      absl::SleepFor(o.settle);
      return true;
    }
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

Samples DaemonWatch::StableSample() const {
  const absl::Time deadline = absl::Now() + o_.settle_timeout;
  Samples last = Sample();
  while (absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(250));
    Samples next = Sample();
    if (SameCounts(last, next)) return last;
    last = next;
  }
  return last;
}

Samples DaemonWatch::SettledSample(const Samples& before) const {
  const absl::Time deadline = absl::Now() + o_.settle_timeout;
  Samples last = Sample();
  while (!WithinCountLimits(before, last) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(250));
    last = Sample();
  }
  return last;
}

// The resource section of one source, with its failures appended to `failures`.
std::string DaemonWatch::JudgeSource(const char* source, const std::optional<DaemonSample>& before,
                                     const std::optional<DaemonSample>& after,
                                     std::vector<std::string>& failures) const {
  const RunOptions& o = o_;
  if (!before || !after) return "null";
  const int64_t rss = after->rss_bytes - before->rss_bytes;
  const int64_t fds = after->open_fds - before->open_fds;
  const int64_t threads = after->threads - before->threads;
  const int64_t counted = CountedThreads(*after) - CountedThreads(*before);
  const int64_t pools = after->grpc_pool_threads >= 0 && before->grpc_pool_threads >= 0
                            ? after->grpc_pool_threads - before->grpc_pool_threads
                            : 0;
  if (fds > o.max_fd_growth) {
    failures.push_back(absl::StrCat(source, ": open fds grew by ", fds, " (", before->open_fds,
                                    " -> ", after->open_fds, "; limit ", o.max_fd_growth, ")"));
  }
  if (counted > o.max_thread_growth) {
    failures.push_back(absl::StrCat(source, ": threads grew by ", counted, " (",
                                    CountedThreads(*before), " -> ", CountedThreads(*after),
                                    " besides gRPC's pools; limit ", o.max_thread_growth, ")"));
  }
  if (rss > o.max_rss_growth_mib * 1048576) {
    failures.push_back(absl::StrFormat("%s: resident memory grew by %.1f MiB (limit %d MiB)",
                                       source, rss / 1048576.0, o.max_rss_growth_mib));
  }
  std::fprintf(stderr,
               "  daemon (%s): rss %.1f -> %.1f MiB (%+.1f), fds %lld -> %lld (%+lld), "
               "threads %lld -> %lld (%+lld, of which gRPC pools %+lld)\n",
               source, before->rss_bytes / 1048576.0, after->rss_bytes / 1048576.0, rss / 1048576.0,
               static_cast<long long>(before->open_fds), static_cast<long long>(after->open_fds),
               static_cast<long long>(fds), static_cast<long long>(before->threads),
               static_cast<long long>(after->threads), static_cast<long long>(threads),
               static_cast<long long>(pools));
  return absl::StrCat("{\"before\": ", ToJson(*before), ", \"after\": ", ToJson(*after),
                      ", \"growth\": {\"rss_bytes\": ", rss, ", \"open_fds\": ", fds,
                      ", \"threads\": ", counted, ", \"threads_total\": ", threads,
                      ", \"grpc_pool_threads\": ", pools, "}}");
}

std::string DaemonWatch::Judge(const Samples& before, const Samples& after,
                               std::vector<std::string>& failures) const {
  const std::string proc = JudgeSource("proc", before.proc, after.proc, failures);
  const std::string metrics = JudgeSource("metrics", before.metrics, after.metrics, failures);
  if (o_.daemon_pid > 0 && proc == "null") failures.push_back("no /proc samples");
  if (!o_.daemon_metrics_url.empty() && metrics == "null") {
    failures.push_back("no metrics samples");
  }
  return absl::StrCat("{\"proc\": ", proc, ",\n                       \"metrics\": ", metrics, "}");
}

}  // namespace kvshuttle::load
