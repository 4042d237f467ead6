// kvs_load's numbers: latency percentiles, the text a worker process sends its parent, and the
// bits of JSON the report is assembled from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/text_escape.h"  // JsonString
#include "bench/load_client.h"
#include "bench/load_probe.h"

namespace kvshuttle::load {

// Percentiles (nearest rank: the smallest sample with at least p of all samples at or below
// it) in microseconds; all 0 for no samples. Example: {1..100 us} → p50 50, p99 99, max 100.
struct LatencySummary {
  int64_t count = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0, mean_us = 0;
};
LatencySummary Summarize(std::vector<int64_t> samples_ns);
std::string ToJson(const LatencySummary& s);

// The worker protocol: one ClientResult as "key value" lines ending in "end"; Parse is the
// exact inverse. INVALID_ARGUMENT naming the line for anything else.
std::string SerializeResult(const ClientResult& result);
absl::StatusOr<ClientResult> ParseResult(absl::string_view text);

// {"rss_bytes": .., "open_fds": .., "threads": .., "grpc_pool_threads": ..,
//  "sessions": .., "regions": ..}.
std::string ToJson(const DaemonSample& sample);

}  // namespace kvshuttle::load
