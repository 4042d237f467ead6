// How kvs_load watches the daemon around a round: waits until every session of the round is
// gone, takes idle samples from /proc and/or /metrics that have stopped moving, and judges the
// growth between "before" and "after" against the thresholds of RunOptions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bench/load_options.h"
#include "bench/load_probe.h"
#include "client/client.h"

namespace kvshuttle::load {

// One sample from each configured source (unset: not configured, or it failed — reported on
// stderr, not fatal).
struct Samples {
  std::optional<DaemonSample> proc, metrics;
};

// True when both have the same sources with equal fd counts and CountedThreads.
bool SameCounts(const Samples& x, const Samples& y);

class DaemonWatch {
 public:
  explicit DaemonWatch(const RunOptions& options) : o_(options) {}

  // A pid or a metrics URL was given.
  bool enabled() const { return o_.daemon_pid > 0 || !o_.daemon_metrics_url.empty(); }
  Samples Sample() const;
  // Waits until the daemon is back to `idle`'s sessions and regions (every session of the
  // round closed and released), then RunOptions::settle. False if not within settle_timeout.
  bool WaitIdle(const Client& control, const v1::GetStatsResponse& idle) const;
  // "before": the first of two samples 250 ms apart with equal counts (or the last one after
  // settle_timeout).
  Samples StableSample() const;
  // "after": sampled every 250 ms until fds and threads are within the thresholds of `before`
  // (lingering teardown gets settle_timeout), the last sample otherwise.
  Samples SettledSample(const Samples& before) const;
  // The report's "daemon_resources" object ({"proc": ..., "metrics": ...}, null for a source
  // without both samples); appends a failure per exceeded threshold and prints a line per
  // source on stderr.
  std::string Judge(const Samples& before, const Samples& after,
                    std::vector<std::string>& failures) const;

 private:
  bool WithinCountLimits(const Samples& before, const Samples& after) const;
  std::string JudgeSource(const char* source, const std::optional<DaemonSample>& before,
                          const std::optional<DaemonSample>& after,
                          std::vector<std::string>& failures) const;

  const RunOptions& o_;
};

}  // namespace kvshuttle::load
