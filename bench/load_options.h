// What one kvs_load run does: the workload every client repeats and the limits the run is judged
// by. Filled from flags in load_tool.cc (the only place that reads them); read everywhere else.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "core/layout.h"

namespace kvshuttle::load {

// How a client learns that its jobs finished.
enum class Completion {
  kWait,    // a Wait RPC per batch: every job of the batch gets the batch's latency
  kEvents,  // job_done events on the session's Attach stream: each job its own latency
};

// The workload of one client. Every client runs the same one over its own memory.
struct Workload {
  std::string target = "unix:/run/kvshuttle/kvshuttle.sock";
  bool device_memory = false;  // CUDA IPC device memory instead of host shared memory
  LayoutDesc src{LayoutKind::kNHDStack, {4, 2, 16, 8, 128}, DType::kBF16};
  LayoutDesc dst{LayoutKind::kUniversal, {4, 2, 16, 8, 128}, DType::kBF16};
  int64_t blocks = 16;        // blocks of each side's block set (per client)
  int64_t batch = 4;          // jobs per SubmitBatch; batch * pairs <= blocks
  int64_t pairs = 1;          // block pairs per job
  int64_t verify_every = 10;  // check job k's destination when k % verify_every == 0; 0 = never
  Completion completion = Completion::kWait;
  absl::Duration job_timeout = absl::Seconds(60);  // longest wait for one batch
  int max_consecutive_errors = 10;                 // a client gives up after this many in a row
  uint64_t seed = 1;                               // client i draws from seed + i
};

// The run around the workload: how many clients, how long, and what counts as a pass.
struct RunOptions {
  int clients = 8;
  bool processes = false;    // one process per client instead of one thread
  int64_t jobs = 200;        // measured jobs per client
  int64_t warmup_jobs = 20;  // jobs per client of a warm-up round (0: no warm-up)
  // Warm-up rounds are repeated, up to this many, until one leaves the daemon's idle fd and
  // thread counts where the previous one did (gRPC grows some thread pools lazily).
  int warmup_rounds = 3;
  std::string out;                           // JSON report path; empty: stdout only
  std::string daemon_metrics_url;            // "http://127.0.0.1:9461/metrics"; empty: not sampled
  int daemon_pid = 0;                        // 0: /proc not sampled
  absl::Duration settle = absl::Seconds(1);  // idle time before a sample
  absl::Duration settle_timeout = absl::Seconds(15);  // longest wait for a stable sample
  int64_t max_fd_growth = 0;
  int64_t max_thread_growth = 0;
  int64_t max_rss_growth_mib = 64;
  std::string commit;  // of this build (or --commit)
};

}  // namespace kvshuttle::load
