// One kvs_load client: its own channel, session, memory (one region) and two block sets, then a
// closed loop of SubmitBatch + completion over random block pairs, checking some destinations
// byte for byte against the CPU reference. Used by the tool's threads and by its worker
// processes alike.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "bench/load_options.h"

namespace kvshuttle::load {

// What one client did in one round. Errors are keyed "<where>:<what>", e.g.
// "SubmitBatch:RESOURCE_EXHAUSTED", "job:INTERNAL", "verify:MISMATCH", "setup:UNAVAILABLE".
struct ClientResult {
  int64_t jobs_planned = 0;         // jobs this client was asked to run
  int64_t jobs_submitted = 0;       // jobs the daemon accepted (SubmitBatch returned their ids)
  int64_t jobs_done = 0;            // jobs that completed JOB_DONE
  int64_t jobs_verified = 0;        // done jobs whose destination matched the reference
  int64_t payload_bytes = 0;        // JobResult.bytes of done jobs
  std::vector<int64_t> latency_ns;  // per done job: submit → completion seen by the client
  std::vector<int64_t> daemon_ns;   // per done job: the daemon's queue + run time
  std::map<std::string, int64_t> errors;
  std::string gpu_uuid;  // device memory: the GPU it lived on

  void AddError(absl::string_view key, int64_t count = 1) { errors[std::string(key)] += count; }
  int64_t error_count() const;
  // Adds `other`'s counts, samples and errors to this one.
  void Merge(const ClientResult& other);
};

// What a client needs besides the workload.
struct ClientContext {
  int index = 0;         // session name "kvs_load-<index>"; random seed workload.seed + index
  int64_t jobs = 0;      // jobs to run
  int gpu_ordinal = -1;  // device memory: the local CUDA ordinal to allocate on
  // Called exactly once, after setup (successful or not); the client runs its jobs only if
  // setup succeeded and the gate returns true. Lets a round start every client at once.
  std::function<bool()> start_gate;
  // Called once when the client's last job finished (before its session closes), if it ran.
  std::function<void()> on_jobs_finished;
  // Progress counters (may be null): jobs finished in any state, errors.
  std::atomic<int64_t>* jobs_finished = nullptr;
  std::atomic<int64_t>* errors = nullptr;
};

// Runs one client to the end; everything it registered is released (its session closed)
// before it returns. Never fails: problems are counted in ClientResult::errors.
ClientResult RunClient(const Workload& workload, const ClientContext& context);

// Checks that `workload` can run: dtype/hd/no agree, batch * pairs <= blocks, sizes > 0.
// INVALID_ARGUMENT naming the flag.
absl::Status ValidateWorkload(const Workload& workload);

// Bytes of one side's block set.
int64_t BlockSetBytes(const LayoutDesc& layout, int64_t blocks);

}  // namespace kvshuttle::load
