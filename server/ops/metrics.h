// A small Prometheus metrics library: counters, gauges and histograms with label sets, and a
// registry that renders the text exposition format 0.0.4.
//
// Why our own: Debian 12's prometheus-cpp ships only shared libraries (plus civetweb as a .so),
// which rules out the statically linked release binary, and the GPU hosts do not have them.
// The text format is small and stable; this file and metrics.cc are all of it.
//
// Thread safety: every method may be called from any thread. Observations are lock-free
// (atomics); creating a labelled child and collecting take the family's mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kvshuttle::metrics {

// Content-Type of a rendered registry.
inline constexpr absl::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { kCounter, kGauge, kHistogram };

// A value that only goes up (resets when the process restarts).
class Counter {
 public:
  // Precondition: delta ≥ 0.
  void Increment(double delta = 1) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with upper bounds `bounds` (strictly increasing; +Inf is
// implicit) and sums them. An observation v lands in the first bucket with v ≤ bound.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts, one per bound plus the +Inf bucket (whose count is the total).
  std::vector<uint64_t> CumulativeCounts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; +Inf last
  std::atomic<double> sum_{0};
};

// One labelled sample of a collected family.
struct Sample {
  std::vector<std::string> label_values;  // in the family's label_names order
  double value = 0;                       // counters and gauges
  std::vector<uint64_t> cumulative;       // histograms: per bound, then +Inf
  double sum = 0;                         // histograms
};

// A family as collected for rendering. Collectors build these for values computed at scrape
// time (e.g. gauges read from the daemon's state).
struct FamilySnapshot {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<std::string> label_names;
  std::vector<double> bounds;  // histograms
  std::vector<Sample> samples;

  // Appends a counter/gauge sample.
  void Add(std::vector<std::string> label_values, double value);
};

// Children of one metric name, one per distinct tuple of label values, created on first use
// and kept for the life of the family (references stay valid).
template <typename T>
class Family {
 public:
  // The child for `label_values` (one per label name, in order). A wrong count is a
  // programming error: the process aborts naming the family.
  T& Labels(const std::vector<std::string>& label_values);
  // The child of a family without labels.
  T& Get() { return Labels({}); }
  FamilySnapshot Collect() const;

 private:
  friend class Registry;
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         std::vector<double> bounds);

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Adds families computed at scrape time to `out`.
using Collector = std::function<void(std::vector<FamilySnapshot>& out)>;

// The metrics of a process. Names follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*, label
// names [a-zA-Z_][a-zA-Z0-9_]*, "le" reserved); a bad or duplicate name is a programming error
// and aborts. Families render in registration order, then the collectors' families.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  // `bounds`: strictly increasing finite upper bounds.
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names, std::vector<double> bounds);
  void AddCollector(Collector collector);

  std::vector<FamilySnapshot> Collect() const;
  // Collect() in the text exposition format.
  std::string Render() const { return RenderText(Collect()); }

  // The text exposition format of `families`: HELP and TYPE lines, then the samples
  // (histograms as cumulative _bucket{le=...}, _sum and _count).
  static std::string RenderText(const std::vector<FamilySnapshot>& families);

 private:
  void CheckNewName(const std::string& name, const std::vector<std::string>& label_names);

  mutable std::mutex mutex_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
  // Registration order across the three kinds: (kind, index).
  std::vector<std::pair<MetricType, size_t>> order_;
  std::vector<Collector> collectors_;
};

// Text-format helpers (exposed for tests). A label value escapes \ " and newline; a HELP text
// escapes \ and newline. Numbers: shortest round-trip form, "+Inf", "-Inf", "NaN".
std::string EscapeLabelValue(absl::string_view value);
std::string EscapeHelp(absl::string_view help);
std::string FormatNumber(double value);

}  // namespace kvshuttle::metrics
