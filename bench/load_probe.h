// The daemon's resource figures kvs_load compares before and after a run: resident memory, open
// descriptors and threads, read from /proc/<pid> (same host, same user or root) or scraped from
// its Prometheus endpoint with a minimal HTTP/1.1 GET over TCP.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kvshuttle::load {

// One sample; -1 where the source does not give the figure.
struct DaemonSample {
  int64_t rss_bytes = -1;
  int64_t open_fds = -1;
  int64_t threads = -1;
  // Of `threads`, those of gRPC's internal pools (/proc only, by thread name: IsGrpcPoolThread).
  // gRPC starts them lazily when queued work finds the pool busy and stops them late or never
  // (the default executor: up to 2 × cores, kept for good); their growth is reported but not
  // counted as a leak (CountedThreads).
  int64_t grpc_pool_threads = -1;
  int64_t sessions = -1;  // metrics only: kvshuttle_sessions
  int64_t regions = -1;   // metrics only: kvshuttle_regions, all kinds
};

// True for the names (/proc/<pid>/task/<tid>/comm, 15 bytes at most) of gRPC's internal pool
// threads: "default-executo" (iomgr executor), "grpc_global_tim" (timer manager),
// "event_engine" (EventEngine pool). Not the sync server's "grpcpp_sync_ser" threads: each runs
// one RPC handler, so one that stays is a hung handler.
bool IsGrpcPoolThread(absl::string_view name);

// `threads` less gRPC's pool threads when known.
int64_t CountedThreads(const DaemonSample& sample);

// /proc/<pid>/status VmRSS, the entries of /proc/<pid>/fd and of /proc/<pid>/task (and the
// names of the latter).
// NOT_FOUND when the process is gone, PERMISSION_DENIED when its fds are not ours to list.
absl::StatusOr<DaemonSample> SampleProc(int pid);

// An http:// URL split up; INVALID_ARGUMENT naming the URL otherwise.
struct HttpUrl {
  std::string host;  // "127.0.0.1", "localhost", "::1" (brackets removed)
  int port = 80;
  std::string path = "/";
};
absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url);

// GET `url` (HTTP/1.1, Connection: close) within `timeout`; the body of a 200 answer, else
// UNAVAILABLE (no connection) or FAILED_PRECONDITION (another status) naming the URL.
absl::StatusOr<std::string> HttpGet(absl::string_view url, absl::Duration timeout);

// Scrapes the daemon's /metrics: kvshuttle_process_{resident_bytes,open_fds,threads},
// kvshuttle_sessions and the sum of kvshuttle_regions.
absl::StatusOr<DaemonSample> SampleMetrics(absl::string_view url);

// Value of the series named exactly `series` (name plus labels as exposed, e.g.
// `kvshuttle_regions{kind="host_shm"}`) in Prometheus text; -1 when absent.
double MetricValue(absl::string_view exposition, absl::string_view series);
// Sum of every series of metric `name` (any labels); -1 when there is none.
double MetricSum(absl::string_view exposition, absl::string_view name);
// Value of label `label` on the first series of metric `name`; "" when absent. Example:
// MetricLabel(text, "kvshuttle_build_info", "commit") → "3e54d66a1b2c".
std::string MetricLabel(absl::string_view exposition, absl::string_view name,
                        absl::string_view label);

}  // namespace kvshuttle::load
