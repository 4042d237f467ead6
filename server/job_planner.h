// The job planner: one job of a submit, validated and planned against the caller's block sets
// and the pools — what Daemon::SubmitBatch runs for every job of a batch and what the plan
// fuzzer runs on arbitrary requests (so the fuzzer tests the daemon's own code, not a copy).
// Pure: it reads block-set and pool tables, takes the plan's metadata charge and builds the
// plan; nothing is queued, no memory is touched.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/plan.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/block_set.h"
#include "server/budget.h"
#include "server/options.h"
#include "server/pool.h"

namespace kvshuttle {

// A resolved job endpoint: the layout and address table of a block set or pool, and a hold on
// it (the tables and the memory live while the hold does).
struct JobSide {
  LayoutDesc layout;
  const std::vector<uint64_t>* addresses = nullptr;
  const std::vector<uint32_t>* segments = nullptr;  // parallel to `addresses`
  std::optional<StridedSide> strided;  // strided block sets and pools (spans into `hold`)
  Placement placement;
  std::shared_ptr<const void> hold;  // the block set or pool that owns `addresses`
};

JobSide BlockSetSide(std::shared_ptr<BlockSetRecord> block_set);
JobSide PoolSide(std::shared_ptr<Pool> pool);

// Where endpoints are looked up: the caller's session's block sets (NOT_FOUND for ids of other
// sessions, exactly as for ids that never existed) and the daemon's pools.
struct EndpointLookup {
  std::function<absl::StatusOr<std::shared_ptr<BlockSetRecord>>(uint64_t id)> block_set;
  std::function<absl::StatusOr<std::shared_ptr<Pool>>(const std::string& name)> pool;
};

absl::StatusOr<JobSide> ResolveEndpoint(const EndpointLookup& lookup,
                                        const v1::Endpoint& endpoint);

// Takes `bytes` of the metadata budget for the plan (named `what` in a refusal).
using PlanCharger = std::function<absl::StatusOr<Budget::Charge>(int64_t bytes,
                                                                  const std::string& what)>;

// The GPU a job runs on (its ordinal), or kCpuJob when neither side is device memory.
inline constexpr int kCpuJob = -1;

struct PlannedJob {
  explicit PlannedJob(TransferPlan p) : plan(std::move(p)) {}

  JobSide src;
  JobSide dst;
  Backend backend = Backend::kAuto;
  int max_sms = 0;
  int device = kCpuJob;
  TransferPlan plan;
  Budget::Charge plan_charge;  // the plan's memory, held until the job ends
  std::string completion_event;  // 64-byte cudaIpcEventHandle_t, or empty
  std::string start_event;       // 64-byte cudaIpcEventHandle_t, or empty
};

// The transfer `job` asks for between sides of layouts `src` and `dst` (unresolved).
TransferSpec JobSpec(const v1::Job& job, const LayoutDesc& src, const LayoutDesc& dst);

// Validates and plans `job` (`field` names it in errors: "jobs[3]"). Errors, nothing taken:
// RESOURCE_EXHAUSTED over max_pairs_per_job or the metadata budget; the endpoints' lookup
// errors; INVALID_ARGUMENT for a bad backend, range, pair or event handle; FAILED_PRECONDITION
// for sides on two GPUs, host memory a GPU cannot reach, or an event on a CPU job. Between two
// strided sides the plan is built in O(pairs + steps) (BuildStrided), else from the tables.
absl::StatusOr<PlannedJob> PlanJob(const v1::Job& job, const std::string& field,
                                   const EndpointLookup& lookup, const Limits& limits,
                                   const PlanCharger& charge);

}  // namespace kvshuttle
