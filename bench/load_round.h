// One round of kvs_load: N clients as threads of this process or as worker processes (this
// binary again, one client each), all started together once every client is set up, with a
// progress line on stderr every second.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/load_client.h"
#include "bench/load_options.h"

namespace kvshuttle::load {

struct RoundSpec {
  std::string label;  // "warm-up", "measure": names the round in progress lines
  int clients = 1;
  int64_t jobs = 0;  // per client
  bool processes = false;
  std::vector<int> gpu_ordinals;  // device memory: client i uses gpu_ordinals[i % size]
  // Processes: the flags every worker gets (the tool's own command line); RunRound appends
  // --worker_index, --worker_jobs and --worker_gpu.
  std::vector<std::string> worker_args;
  bool progress = true;
  absl::Duration setup_timeout = absl::Seconds(180);  // processes: longest wait for "ready"
};

struct RoundResult {
  ClientResult total;                          // every client's result merged
  double wall_seconds = 0;                     // start signal → the last client's last job
  std::map<std::string, int> clients_per_gpu;  // device memory: uuid → clients
};

RoundResult RunRound(const Workload& workload, const RoundSpec& spec);

// The body of a worker process: one client, "ready" on stdout after setup, then waits for a
// byte on stdin before running; "progress N" lines while running, "finished" after its last
// job, then the SerializeResult text. Returns the process exit status (0 unless stdout broke).
int RunWorker(const Workload& workload, int index, int64_t jobs, int gpu_ordinal);

}  // namespace kvshuttle::load
