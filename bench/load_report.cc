// Percentiles, the worker-process result format and JSON helpers of kvs_load.
#include "bench/load_report.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace kvshuttle::load {

LatencySummary Summarize(std::vector<int64_t> samples_ns) {
  LatencySummary s;
  s.count = static_cast<int64_t>(samples_ns.size());
  if (samples_ns.empty()) return s;
  std::sort(samples_ns.begin(), samples_ns.end());
  auto rank = [&](double p) {
    const size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(samples_ns.size())));
    return samples_ns[std::clamp<size_t>(k, 1, samples_ns.size()) - 1] / 1e3;
  };
  s.p50_us = rank(0.50);
  s.p90_us = rank(0.90);
  s.p99_us = rank(0.99);
  s.max_us = samples_ns.back() / 1e3;
  s.mean_us = std::accumulate(samples_ns.begin(), samples_ns.end(), 0.0) /
              static_cast<double>(samples_ns.size()) / 1e3;
  return s;
}

std::string ToJson(const LatencySummary& s) {
  return absl::StrFormat(
      "{\"count\": %d, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"max\": %.1f, "
      "\"mean\": %.1f}",
      s.count, s.p50_us, s.p90_us, s.p99_us, s.max_us, s.mean_us);
}

std::string SerializeResult(const ClientResult& r) {
  std::string out =
      absl::StrCat("planned ", r.jobs_planned, "\nsubmitted ", r.jobs_submitted, "\ndone ",
                   r.jobs_done, "\nverified ", r.jobs_verified, "\nbytes ", r.payload_bytes, "\n");
  if (!r.gpu_uuid.empty()) absl::StrAppend(&out, "gpu ", r.gpu_uuid, "\n");
  for (const auto& [key, count] : r.errors) absl::StrAppend(&out, "error ", key, " ", count, "\n");
  for (int64_t ns : r.latency_ns) absl::StrAppend(&out, "lat ", ns, "\n");
  for (int64_t ns : r.daemon_ns) absl::StrAppend(&out, "srv ", ns, "\n");
  return out + "end\n";
}

absl::StatusOr<ClientResult> ParseResult(absl::string_view text) {
  ClientResult r;
  bool ended = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    auto bad = [&] {
      return absl::InvalidArgumentError(absl::StrCat("worker result line \"", line, "\""));
    };
    if (ended) return bad();
    if (line == "end") {
      ended = true;
      continue;
    }
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    int64_t v = 0;
    if (f.size() == 2 && f[0] == "gpu") {
      r.gpu_uuid = std::string(f[1]);
      continue;
    }
    if (f.size() == 3 && f[0] == "error" && absl::SimpleAtoi(f[2], &v)) {
      r.AddError(f[1], v);
      continue;
    }
    if (f.size() != 2 || !absl::SimpleAtoi(f[1], &v)) return bad();
    const std::pair<absl::string_view, int64_t*> counters[] = {{"planned", &r.jobs_planned},
                                                               {"submitted", &r.jobs_submitted},
                                                               {"done", &r.jobs_done},
                                                               {"verified", &r.jobs_verified},
                                                               {"bytes", &r.payload_bytes}};
    bool known = false;
    for (const auto& [key, field] : counters) {
      if (f[0] != key) continue;
      *field = v;
      known = true;
    }
    if (f[0] == "lat" || f[0] == "srv") {
      (f[0] == "lat" ? r.latency_ns : r.daemon_ns).push_back(v);
      known = true;
    }
    if (!known) return bad();
  }
  if (!ended) return absl::InvalidArgumentError("worker result: no \"end\" line (cut short)");
  return r;
}

std::string ToJson(const DaemonSample& s) {
  return absl::StrCat("{\"rss_bytes\": ", s.rss_bytes, ", \"open_fds\": ", s.open_fds,
                      ", \"threads\": ", s.threads,
                      ", \"grpc_pool_threads\": ", s.grpc_pool_threads,
                      ", \"sessions\": ", s.sessions, ", \"regions\": ", s.regions, "}");
}

}  // namespace kvshuttle::load
