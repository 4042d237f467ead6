// The job planner (job_planner.h).
#include "server/job_planner.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/proto_convert.h"

namespace kvshuttle {
namespace {

constexpr size_t kIpcEventHandleBytes = 64;  // sizeof(cudaIpcEventHandle_t)

absl::Status Prefixed(const absl::Status& status, absl::string_view field) {
  return absl::Status(status.code(), absl::StrCat(field, ".", status.message()));
}

// Where a job with these sides runs (job_planner.h: PlannedJob::device).
absl::StatusOr<int> JobDevice(const Placement& src, const Placement& dst,
                              const std::string& field) {
  const int src_dev = src.place == MemoryPlace::kDevice ? src.device : kCpuJob;
  const int dst_dev = dst.place == MemoryPlace::kDevice ? dst.device : kCpuJob;
  if (src_dev == kCpuJob && dst_dev == kCpuJob) return kCpuJob;
  if (src_dev != kCpuJob && dst_dev != kCpuJob && src_dev != dst_dev) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": source on GPU ", src_dev,
                                                      " and destination on GPU ", dst_dev,
                                                      "; a job runs on one GPU"));
  }
  const Placement& host = src_dev != kCpuJob ? dst : src;
  if (host.place == MemoryPlace::kHost && !host.gpu_visible) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": host memory on one side is not registered with the GPU"));
  }
  return std::max(src_dev, dst_dev);
}

// A 64-byte event handle of a GPU job, or empty when the job has none.
absl::StatusOr<std::string> EventHandle(bool present, const v1::CudaIpcEvent& event,
                                        const std::string& field, int device) {
  if (!present) return std::string();
  if (event.handle().size() != kIpcEventHandleBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".handle: ", event.handle().size(),
                                                   " bytes; a cudaIpcEventHandle_t is 64 bytes"));
  }
  if (device == kCpuJob) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ": this job runs on the CPU executor (no device memory on either side); a CUDA "
               "event needs a GPU job"));
  }
  return event.handle();
}

}  // namespace

JobSide BlockSetSide(std::shared_ptr<BlockSetRecord> block_set) {
  JobSide side;
  side.layout = block_set->layout;
  side.addresses = &block_set->addresses;
  side.segments = &block_set->segments;
  if (!block_set->strided_bases.empty()) {
    side.strided = StridedSide{block_set->strided_bases, block_set->block_stride,
                               block_set->num_blocks, block_set->strided_segments};
  }
  side.placement = block_set->placement;
  side.hold = std::move(block_set);
  return side;
}

JobSide PoolSide(std::shared_ptr<Pool> pool) {
  JobSide side;
  side.layout = pool->layout();
  side.addresses = &pool->addresses();
  side.segments = &pool->segments();
  side.strided = pool->strided();
  side.placement = pool->placement();
  side.hold = std::move(pool);
  return side;
}

absl::StatusOr<JobSide> ResolveEndpoint(const EndpointLookup& lookup,
                                        const v1::Endpoint& endpoint) {
  switch (endpoint.target_case()) {
    case v1::Endpoint::kBlockSetId: {
      ASSIGN_OR_RETURN(std::shared_ptr<BlockSetRecord> bs,
                       lookup.block_set(endpoint.block_set_id()));
      return BlockSetSide(std::move(bs));
    }
    case v1::Endpoint::kPool: {
      ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, lookup.pool(endpoint.pool()));
      return PoolSide(std::move(pool));
    }
    default:
      return absl::InvalidArgumentError("target: neither block_set_id nor pool is set");
  }
}

TransferSpec JobSpec(const v1::Job& job, const LayoutDesc& src, const LayoutDesc& dst) {
  TransferSpec spec;
  spec.src = src;
  spec.dst = dst;
  spec.heads = AxisRangeFromProto(job.heads());
  spec.layers = AxisRangeFromProto(job.layers());
  spec.token_count = job.token_count();
  return spec;
}

absl::StatusOr<PlannedJob> PlanJob(const v1::Job& job, const std::string& field,
                                   const EndpointLookup& lookup, const Limits& limits,
                                   const PlanCharger& charge) {
  if (job.pairs_size() > limits.max_pairs_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat(field, ".pairs: ", job.pairs_size(),
                                                     " pairs; at most ", limits.max_pairs_per_job));
  }
  absl::StatusOr<JobSide> src = ResolveEndpoint(lookup, job.src());
  if (!src.ok()) return Prefixed(src.status(), field + ".src");
  absl::StatusOr<JobSide> dst = ResolveEndpoint(lookup, job.dst());
  if (!dst.ok()) return Prefixed(dst.status(), field + ".dst");
  ASSIGN_OR_RETURN(const Backend backend, BackendFromProto(job.backend(), field + ".backend"));
  ASSIGN_OR_RETURN(const int device, JobDevice(src->placement, dst->placement, field));
  ASSIGN_OR_RETURN(std::string completion_event,
                   EventHandle(job.has_completion_event(), job.completion_event(),
                               field + ".completion_event", device));
  ASSIGN_OR_RETURN(std::string start_event, EventHandle(job.has_start_event(), job.start_event(),
                                                        field + ".start_event", device));
  const TransferSpec spec = JobSpec(job, src->layout, dst->layout);
  // The plan's memory is charged before it is built, and held until the job ends. Two strided
  // sides plan in O(pairs + steps); anything else takes the explicit tables.
  const bool strided = src->strided.has_value() && dst->strided.has_value();
  ASSIGN_OR_RETURN(Budget::Charge plan_charge,
                   charge(PlanMemoryBytes(spec, job.pairs_size(), strided), field));
  std::vector<BlockPair> pairs;
  pairs.reserve(job.pairs_size());
  for (const v1::BlockPair& p : job.pairs()) pairs.push_back(BlockPairFromProto(p));
  absl::StatusOr<TransferPlan> plan =
      strided ? TransferPlan::BuildStrided(spec, *src->strided, *dst->strided, pairs)
              : TransferPlan::Build(spec, *src->addresses, *dst->addresses, pairs,
                                    AddressSegments{*src->segments, *dst->segments},
                                    TableCheck::kUsed);  // checked at registration
  if (!plan.ok()) return Prefixed(plan.status(), field);
  PlannedJob out(*std::move(plan));
  out.src = *std::move(src);
  out.dst = *std::move(dst);
  out.backend = backend;
  out.max_sms = static_cast<int>(job.max_sms());
  out.device = device;
  out.plan_charge = std::move(plan_charge);
  out.completion_event = std::move(completion_event);
  out.start_event = std::move(start_event);
  return out;
}

}  // namespace kvshuttle
