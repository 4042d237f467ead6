// Counters, gauges, histograms, families, the registry and the text exposition format.
#include "server/ops/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kvshuttle::metrics {
namespace {

[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr, "kvshuttle metrics: %s\n", what.c_str());
  std::abort();
}

bool ValidName(absl::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                       (allow_colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"}` for the names and values, plus `le` when given; "" when there are none.
void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const std::string* le) {
  if (names.empty() && le == nullptr) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += EscapeLabelValue(i < values.size() ? values[i] : std::string());
    out += '"';
  }
  if (le != nullptr) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void AppendSampleLine(std::string& out, const std::string& name, const char* suffix,
                      const std::vector<std::string>& label_names, const Sample& sample,
                      const std::string* le, double value) {
  out += name;
  out += suffix;
  AppendLabels(out, label_names, sample.label_values, le);
  out += ' ';
  out += FormatNumber(value);
  out += '\n';
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Histogram

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  const size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Families

void FamilySnapshot::Add(std::vector<std::string> label_values, double value) {
  Sample sample;
  sample.label_values = std::move(label_values);
  sample.value = value;
  samples.push_back(std::move(sample));
}

template <typename T>
Family<T>::Family(std::string name, std::string help, MetricType type,
                  std::vector<std::string> label_names, std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)) {}

template <typename T>
T& Family<T>::Labels(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size()) {
    Fatal(name_ + ": " + std::to_string(label_values.size()) + " label values for " +
          std::to_string(label_names_.size()) + " label names");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  std::unique_ptr<T>& child = children_[label_values];
  if (child == nullptr) {
    if constexpr (std::is_same_v<T, Histogram>) {
      child = std::make_unique<Histogram>(bounds_);
    } else {
      child = std::make_unique<T>();
    }
  }
  return *child;
}

template <typename T>
FamilySnapshot Family<T>::Collect() const {
  FamilySnapshot out;
  out.name = name_;
  out.help = help_;
  out.type = type_;
  out.label_names = label_names_;
  out.bounds = bounds_;
  std::lock_guard<std::mutex> lock(mutex_);
  out.samples.reserve(children_.size());
  for (const auto& [values, child] : children_) {
    Sample sample;
    sample.label_values = values;
    if constexpr (std::is_same_v<T, Histogram>) {
      sample.cumulative = child->CumulativeCounts();
      sample.sum = child->sum();
    } else {
      sample.value = child->value();
    }
    out.samples.push_back(std::move(sample));
  }
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---------------------------------------------------------------------------------------------
// Registry

void Registry::CheckNewName(const std::string& name, const std::vector<std::string>& label_names) {
  if (!ValidName(name, /*allow_colon=*/true)) Fatal("invalid metric name \"" + name + "\"");
  for (const std::string& label : label_names) {
    if (!ValidName(label, /*allow_colon=*/false) || label == "le" || label.rfind("__", 0) == 0) {
      Fatal(name + ": invalid label name \"" + label + "\"");
    }
  }
  if (std::find(names_.begin(), names_.end(), name) != names_.end()) {
    Fatal("metric \"" + name + "\" registered twice");
  }
  names_.push_back(name);
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckNewName(name, label_names);
  counters_.emplace_back(new Family<Counter>(std::move(name), std::move(help),
                                             MetricType::kCounter, std::move(label_names), {}));
  order_.emplace_back(MetricType::kCounter, counters_.size() - 1);
  return *counters_.back();
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckNewName(name, label_names);
  gauges_.emplace_back(new Family<Gauge>(std::move(name), std::move(help), MetricType::kGauge,
                                         std::move(label_names), {}));
  order_.emplace_back(MetricType::kGauge, gauges_.size() - 1);
  return *gauges_.back();
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckNewName(name, label_names);
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      Fatal(name + ": bucket bounds must be finite and strictly increasing");
    }
  }
  histograms_.emplace_back(new Family<Histogram>(std::move(name), std::move(help),
                                                 MetricType::kHistogram, std::move(label_names),
                                                 std::move(bounds)));
  order_.emplace_back(MetricType::kHistogram, histograms_.size() - 1);
  return *histograms_.back();
}

void Registry::AddCollector(Collector collector) {
  std::lock_guard<std::mutex> lock(mutex_);
  collectors_.push_back(std::move(collector));
}

std::vector<FamilySnapshot> Registry::Collect() const {
  std::vector<FamilySnapshot> out;
  std::vector<Collector> collectors;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out.reserve(order_.size());
    for (const auto& [type, index] : order_) {
      switch (type) {
        case MetricType::kCounter:
          out.push_back(counters_[index]->Collect());
          break;
        case MetricType::kGauge:
          out.push_back(gauges_[index]->Collect());
          break;
        case MetricType::kHistogram:
          out.push_back(histograms_[index]->Collect());
          break;
      }
    }
    collectors = collectors_;
  }
  // Outside the lock: collectors take their owners' locks.
  for (const Collector& collector : collectors) collector(out);
  return out;
}

std::string Registry::RenderText(const std::vector<FamilySnapshot>& families) {
  std::string out;
  for (const FamilySnapshot& family : families) {
    out += "# HELP ";
    out += family.name;
    out += ' ';
    out += EscapeHelp(family.help);
    out += "\n# TYPE ";
    out += family.name;
    out += ' ';
    out += TypeName(family.type);
    out += '\n';
    for (const Sample& sample : family.samples) {
      if (family.type != MetricType::kHistogram) {
        AppendSampleLine(out, family.name, "", family.label_names, sample, nullptr, sample.value);
        continue;
      }
      // A sample without counts (a collector's mistake) renders as an empty histogram.
      const uint64_t total = sample.cumulative.empty() ? 0 : sample.cumulative.back();
      for (size_t i = 0; i <= family.bounds.size(); ++i) {
        const std::string le =
            i < family.bounds.size() ? FormatNumber(family.bounds[i]) : std::string("+Inf");
        const uint64_t count = i < sample.cumulative.size() ? sample.cumulative[i] : total;
        AppendSampleLine(out, family.name, "_bucket", family.label_names, sample, &le,
                         static_cast<double>(count));
      }
      AppendSampleLine(out, family.name, "_sum", family.label_names, sample, nullptr, sample.sum);
      AppendSampleLine(out, family.name, "_count", family.label_names, sample, nullptr,
                       static_cast<double>(total));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text-format helpers

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const std::to_chars_result r = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, r.ptr);
}

}  // namespace kvshuttle::metrics
