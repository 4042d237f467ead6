// Fuzz target: SubmitBatch → the job planner. The input is a binary fuzz.PlanInput: block sets
// (RegisterBlockSetRequest, built over the fake regions) and pools (CreatePoolRequest, with the
// fake GPU runtime) to convert between, then a SubmitBatchRequest. Each job goes through
// PlanJob (server/job_planner.h), the daemon's own validation and planning, and beside it
// through TransferPlan::Build on the endpoints' address tables (and BuildStrided between
// strided sides), which must agree with it. Plans are pure address arithmetic: nothing is ever
// read or written.
//
// Checked for every plan built: every row of every chunk copy lies inside the table piece
// [entry, entry + extent) it belongs to on both sides; payload bytes and geometry agree with the
// spec; the alignment divides every address and stride. For plans of at most kMaxCheckedRows
// rows, also: the rows are exactly those of the layouts' logical definitions (layout.h), Runs()
// moves exactly those rows, and no run leaves the allocation it starts in (even where two
// allocations are adjacent).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <optional>
#include <vector>

#include "core/layout.h"
#include "core/plan.h"
#include "core/status_macros.h"
#include "core/transfer.h"
#include "fuzz_input.pb.h"
#include "proto/proto_convert.h"
#include "server/block_set.h"
#include "server/job_planner.h"
#include "server/pool.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvshuttle::fuzz {
namespace {

using u128 = unsigned __int128;

// Keeps one execution fast: larger plans are validated (ResolveSpec, pairs) but not built.
constexpr u128 kMaxBuiltChunks = u128{1} << 16;
// Plans of at most this many hd-rows are also compared with the logical definition row by row.
constexpr u128 kMaxCheckedRows = u128{1} << 14;
constexpr int kMaxJobs = 64;
constexpr int kMaxPools = 4;

// One allocation of a side: [base, base + size).
struct Allocation {
  uint64_t base = 0;
  uint64_t size = 0;
};

// A resolved job endpoint (the planner's) and the allocations behind its table.
struct Side : JobSide {
  std::vector<Allocation> allocations;
};

struct Fixture {
  std::vector<std::shared_ptr<BlockSetRecord>> block_sets;  // block_set_id n is block_sets[n-1]
  FakeGpuRuntime gpu;
  std::unique_ptr<BudgetSet> budgets = MakeBudgetSet(Budgets{}, gpu);
  PoolTable pools{gpu, kMaxPools, *budgets};
  // What the daemon looks endpoints up in: this session's block sets and the pools.
  EndpointLookup lookup{
      [this](uint64_t id) -> absl::StatusOr<std::shared_ptr<BlockSetRecord>> {
        if (id == 0 || id > block_sets.size()) {
          return absl::NotFoundError(
              absl::StrCat("block_set_id: ", id, " is not a block set of this session"));
        }
        return block_sets[id - 1];
      },
      [this](const std::string& name) { return pools.Find(name); }};
};

absl::StatusOr<Side> ResolveEndpoint(const Fixture& fx, const v1::Endpoint& endpoint) {
  ASSIGN_OR_RETURN(JobSide resolved, kvshuttle::ResolveEndpoint(fx.lookup, endpoint));
  Side side;
  static_cast<JobSide&>(side) = std::move(resolved);
  if (endpoint.target_case() == v1::Endpoint::kBlockSetId) {
    for (const auto& m : fx.block_sets[endpoint.block_set_id() - 1]->memories) {
      side.allocations.push_back({m->base(), m->size()});
    }
  } else {
    const Memory& m = *fx.pools.Find(endpoint.pool()).value()->memory();
    side.allocations.push_back({m.base(), m.size()});
  }
  return side;
}

// Table entry and element offset of row (layer, outer, token, head) of `block`: the logical
// definitions of layout.h, not the strides the plan uses.
uint64_t RowAddress(const LayoutDesc& d, const std::vector<uint64_t>& table, int64_t block,
                    int64_t l, int64_t o, int64_t t, int64_t h) {
  const BlockShape& s = d.shape;
  const int64_t es = DTypeSize(d.dtype);
  int64_t entry = block;
  int64_t offset = 0;
  switch (d.kind) {
    case LayoutKind::kNHDStack:
      entry = block * s.nl * s.no + l * s.no + o;
      offset = NhdChunkOffset(s, t, h, 0);
      break;
    case LayoutKind::kHNDStack:
      entry = block * s.nl * s.no + l * s.no + o;
      offset = HndChunkOffset(s, t, h, 0);
      break;
    case LayoutKind::kOperationalNHD:
      offset = OperationalOffset(s, false, l, o, t, h, 0);
      break;
    case LayoutKind::kOperationalHND:
      offset = OperationalOffset(s, true, l, o, t, h, 0);
      break;
    case LayoutKind::kUniversal:
      offset = UniversalOffset(s, l, o, t, h, 0);
      break;
  }
  return table[entry] + static_cast<uint64_t>(offset * es);
}

int64_t EntryOf(const LayoutDesc& d, int64_t block, int64_t l, int64_t o) {
  return IsStack(d.kind) ? block * d.shape.nl * d.shape.no + l * d.shape.no + o : block;
}

// [first, first + span) ⊆ [base, base + extent) with no overflow anywhere.
bool Inside(uint64_t first, u128 span, uint64_t base, uint64_t extent) {
  return first >= base && u128{first} + span <= u128{base} + extent;
}

const Allocation* AllocationOf(const Side& side, uint64_t address) {
  for (const Allocation& a : side.allocations) {
    if (address >= a.base && address - a.base < a.size) return &a;
  }
  return nullptr;
}

using Row = std::pair<uint64_t, uint64_t>;  // (src, dst) of one hd-row

void CheckPlan(const TransferPlan& plan, const TransferSpec& r, const Side& src, const Side& dst,
               const std::vector<BlockPair>& pairs) {
  KVS_FUZZ_CHECK(plan.spec() == r, "plan spec differs from ResolveSpec's");
  const int64_t es = DTypeSize(r.src.dtype);
  const int64_t no = r.src.shape.no;
  const u128 unit = static_cast<u128>(r.src.shape.hd * es);  // bytes of one hd-row
  const ChunkGeometry& g = plan.geometry();
  KVS_FUZZ_CHECK(plan.num_pairs() == static_cast<int64_t>(pairs.size()), "num_pairs");
  const std::vector<ChunkAddress> chunks = plan.Chunks();
  KVS_FUZZ_CHECK(chunks.size() == pairs.size() * r.layers.count * no, "chunks: ",
                 chunks.size(), " for ", pairs.size(), " pairs x ", r.layers.count,
                 " layers x ", no);
  KVS_FUZZ_CHECK(g.row_bytes > 0 && g.inner_count >= 1 && g.outer_count >= 1 &&
                     g.src_inner_stride >= 0 && g.dst_inner_stride >= 0 &&
                     g.src_outer_stride >= 0 && g.dst_outer_stride >= 0,
                 "geometry with a non-positive count or a negative stride");
  KVS_FUZZ_CHECK(static_cast<u128>(g.row_bytes) % unit == 0, "row_bytes ", g.row_bytes,
                 " is not a multiple of hd*es");
  const u128 chunk_bytes = u128{static_cast<uint64_t>(g.row_bytes)} *
                           static_cast<uint64_t>(g.inner_count) *
                           static_cast<uint64_t>(g.outer_count);
  KVS_FUZZ_CHECK(chunk_bytes == unit * static_cast<uint64_t>(r.heads.count) *
                                    static_cast<uint64_t>(r.token_count),
                 "chunk bytes differ from heads x tokens x hd x es");
  const int alignment = plan.alignment();
  KVS_FUZZ_CHECK(alignment >= 1 && alignment <= 16 && (alignment & (alignment - 1)) == 0 &&
                     g.row_bytes % alignment == 0,
                 "alignment ", alignment, " with row_bytes ", g.row_bytes);
  if (g.inner_count > 1) {
    KVS_FUZZ_CHECK(g.src_inner_stride % alignment == 0 && g.dst_inner_stride % alignment == 0,
                   "alignment vs inner strides");
  }
  if (g.outer_count > 1) {
    KVS_FUZZ_CHECK(g.src_outer_stride % alignment == 0 && g.dst_outer_stride % alignment == 0,
                   "alignment vs outer strides");
  }

  // Every chunk's rows inside its pieces. Strides are non-negative, so the rows of a chunk span
  // [first row, last row + row_bytes).
  const u128 src_span = u128{static_cast<uint64_t>(g.outer_count - 1)} *
                            static_cast<uint64_t>(g.src_outer_stride) +
                        u128{static_cast<uint64_t>(g.inner_count - 1)} *
                            static_cast<uint64_t>(g.src_inner_stride) +
                        static_cast<uint64_t>(g.row_bytes);
  const u128 dst_span = u128{static_cast<uint64_t>(g.outer_count - 1)} *
                            static_cast<uint64_t>(g.dst_outer_stride) +
                        u128{static_cast<uint64_t>(g.inner_count - 1)} *
                            static_cast<uint64_t>(g.dst_inner_stride) +
                        static_cast<uint64_t>(g.row_bytes);
  const uint64_t src_extent = static_cast<uint64_t>(BytesPerAddress(r.src.kind, r.src.shape, es));
  const uint64_t dst_extent = static_cast<uint64_t>(BytesPerAddress(r.dst.kind, r.dst.shape, es));
  size_t k = 0;
  for (size_t p = 0; p < pairs.size(); ++p) {
    for (int64_t l = 0; l < r.layers.count; ++l) {
      for (int64_t o = 0; o < no; ++o, ++k) {
        const ChunkAddress& c = chunks[k];
        KVS_FUZZ_CHECK(c.src % alignment == 0 && c.dst % alignment == 0, "chunk ", k,
                       " not aligned to ", alignment);
        const uint64_t se = (*src.addresses)[EntryOf(r.src, pairs[p].src_block,
                                                     r.layers.src_offset + l, o)];
        const uint64_t de = (*dst.addresses)[EntryOf(r.dst, pairs[p].dst_block,
                                                     r.layers.dst_offset + l, o)];
        KVS_FUZZ_CHECK(Inside(c.src, src_span, se, src_extent), "chunk ", k, " (pair ", p,
                       ", layer ", l, ", outer ", o, "): src rows [", c.src, ", +",
                       static_cast<uint64_t>(src_span), ") leave the piece [", se, ", +",
                       src_extent, ")");
        KVS_FUZZ_CHECK(Inside(c.dst, dst_span, de, dst_extent), "chunk ", k, " (pair ", p,
                       ", layer ", l, ", outer ", o, "): dst rows [", c.dst, ", +",
                       static_cast<uint64_t>(dst_span), ") leave the piece [", de, ", +",
                       dst_extent, ")");
      }
    }
  }

  // Small plans: row by row against the logical definition, and Runs().
  const u128 rows = u128{pairs.size()} * static_cast<uint64_t>(r.layers.count) *
                    static_cast<uint64_t>(no) * static_cast<uint64_t>(r.heads.count) *
                    static_cast<uint64_t>(r.token_count);
  if (rows > kMaxCheckedRows) return;
  std::vector<Row> expected;
  expected.reserve(static_cast<size_t>(rows));
  for (const BlockPair& p : pairs) {
    for (int64_t l = 0; l < r.layers.count; ++l) {
      for (int64_t o = 0; o < no; ++o) {
        for (int64_t h = 0; h < r.heads.count; ++h) {
          for (int64_t t = 0; t < r.token_count; ++t) {
            expected.emplace_back(
                RowAddress(r.src, *src.addresses, p.src_block, r.layers.src_offset + l, o,
                           p.src_token_offset + t, r.heads.src_offset + h),
                RowAddress(r.dst, *dst.addresses, p.dst_block, r.layers.dst_offset + l, o,
                           p.dst_token_offset + t, r.heads.dst_offset + h));
          }
        }
      }
    }
  }
  std::sort(expected.begin(), expected.end());

  const uint64_t u = static_cast<uint64_t>(unit);
  std::vector<Row> from_chunks;
  from_chunks.reserve(expected.size());
  for (const ChunkAddress& c : chunks) {
    for (int64_t o = 0; o < g.outer_count; ++o) {
      for (int64_t i = 0; i < g.inner_count; ++i) {
        const uint64_t s = c.src + o * g.src_outer_stride + i * g.src_inner_stride;
        const uint64_t d = c.dst + o * g.dst_outer_stride + i * g.dst_inner_stride;
        for (uint64_t j = 0; j < static_cast<uint64_t>(g.row_bytes) / u; ++j) {
          from_chunks.emplace_back(s + j * u, d + j * u);
        }
      }
    }
  }
  std::sort(from_chunks.begin(), from_chunks.end());
  KVS_FUZZ_CHECK(from_chunks == expected, "the plan's ", from_chunks.size(),
                 " rows differ from the ", expected.size(), " rows the layouts define");

  std::vector<Row> from_runs;
  from_runs.reserve(expected.size());
  u128 run_bytes = 0;
  for (const CopyRun& run : plan.Runs()) {
    KVS_FUZZ_CHECK(run.bytes > 0 && run.bytes % u == 0, "run of ", run.bytes, " bytes");
    run_bytes += run.bytes;
    const Allocation* sa = AllocationOf(src, run.src);
    const Allocation* da = AllocationOf(dst, run.dst);
    KVS_FUZZ_CHECK(sa != nullptr && Inside(run.src, run.bytes, sa->base, sa->size), "run [",
                   run.src, ", +", run.bytes, ") leaves the source allocation it starts in");
    KVS_FUZZ_CHECK(da != nullptr && Inside(run.dst, run.bytes, da->base, da->size), "run [",
                   run.dst, ", +", run.bytes, ") leaves the destination allocation it starts in");
    for (uint64_t j = 0; j < run.bytes / u; ++j) {
      from_runs.emplace_back(run.src + j * u, run.dst + j * u);
    }
  }
  KVS_FUZZ_CHECK(run_bytes == static_cast<u128>(plan.bytes()), "runs move ",
                 static_cast<uint64_t>(run_bytes), " bytes, the plan ", plan.bytes());
  std::sort(from_runs.begin(), from_runs.end());
  KVS_FUZZ_CHECK(from_runs == expected, "Runs() differ from the rows the layouts define");
}

// Whether two plans move the same chunks and runs.
void CheckSamePlan(const TransferPlan& a, const TransferPlan& b, absl::string_view what) {
  const std::vector<ChunkAddress> ca = a.Chunks(), cb = b.Chunks();
  KVS_FUZZ_CHECK(ca.size() == cb.size(), what, ": chunk counts differ");
  for (size_t k = 0; k < ca.size(); ++k) {
    KVS_FUZZ_CHECK(ca[k].src == cb[k].src && ca[k].dst == cb[k].dst, what, ": chunk ", k,
                   " differs");
  }
  const std::vector<CopyRun> ra = a.Runs(), rb = b.Runs();
  KVS_FUZZ_CHECK(ra.size() == rb.size(), what, ": run counts differ: ", ra.size(), " vs ",
                 rb.size());
  for (size_t k = 0; k < ra.size(); ++k) {
    KVS_FUZZ_CHECK(ra[k].src == rb[k].src && ra[k].dst == rb[k].dst && ra[k].bytes == rb[k].bytes,
                   what, ": run ", k, " differs");
  }
}

// One job through the daemon's planner, and beside it through the plan builders directly.
void RunJob(Fixture& fx, const v1::Job& job) {
  absl::StatusOr<Side> src = ResolveEndpoint(fx, job.src());
  if (!src.ok()) return CheckRequestError(src.status(), "src endpoint");
  absl::StatusOr<Side> dst = ResolveEndpoint(fx, job.dst());
  if (!dst.ok()) return CheckRequestError(dst.status(), "dst endpoint");
  absl::StatusOr<Backend> backend = BackendFromProto(job.backend(), "jobs[0].backend");
  if (!backend.ok()) return CheckRequestError(backend.status(), "backend");
  const TransferSpec spec = JobSpec(job, src->layout, dst->layout);
  std::vector<BlockPair> pairs;
  pairs.reserve(job.pairs_size());
  for (const v1::BlockPair& p : job.pairs()) pairs.push_back(BlockPairFromProto(p));

  const absl::StatusOr<TransferSpec> resolved = ResolveSpec(spec);
  if (resolved.ok()) {
    const u128 chunks = u128{pairs.size()} * static_cast<uint64_t>(resolved->layers.count) *
                        static_cast<uint64_t>(resolved->src.shape.no);
    if (chunks > kMaxBuiltChunks && chunks <= static_cast<u128>(kMaxPlanChunks)) return;
  }
  absl::StatusOr<TransferPlan> plan =
      TransferPlan::Build(spec, *src->addresses, *dst->addresses, pairs,
                          AddressSegments{*src->segments, *dst->segments});
  // Between two strided sides the daemon plans with BuildStrided: it must agree with Build on
  // every input — the same refusal, or the same chunks and runs — and pass the same checks.
  if (src->strided && dst->strided) {
    absl::StatusOr<TransferPlan> strided =
        TransferPlan::BuildStrided(spec, *src->strided, *dst->strided, pairs);
    KVS_FUZZ_CHECK(strided.ok() == plan.ok(), "Build says ", plan.status(), ", BuildStrided ",
                   strided.status());
    if (!plan.ok()) {
      KVS_FUZZ_CHECK(strided.status() == plan.status(), "Build refuses with ", plan.status(),
                     ", BuildStrided with ", strided.status());
    } else {
      KVS_FUZZ_CHECK(strided->outer().size() == pairs.size(), "strided plan: ",
                     strided->outer().size(), " outer entries for ", pairs.size(), " pairs");
      KVS_FUZZ_CHECK(strided->alignment() <= plan->alignment(), "strided alignment ",
                     strided->alignment(), " above the explicit plan's ", plan->alignment());
      CheckSamePlan(*strided, *plan, "BuildStrided against Build");
      CheckPlan(*strided, *ResolveSpec(spec), *src, *dst, pairs);
    }
  }
  // The daemon's planner: refuses what Build refuses (or the job for another reason, e.g.
  // host memory no GPU can reach), else plans exactly Build's chunks and runs.
  absl::StatusOr<PlannedJob> planned =
      PlanJob(job, "jobs[0]", fx.lookup, Limits{},
              [&fx](int64_t bytes, const std::string& what) {
                return fx.budgets->metadata.Take(bytes, what);
              });
  if (!planned.ok()) {
    CheckRequestError(planned.status(), "PlanJob");
  } else {
    KVS_FUZZ_CHECK(plan.ok(), "PlanJob accepted a job Build refuses: ", plan.status());
    CheckSamePlan(planned->plan, *plan, "PlanJob against Build");
    KVS_FUZZ_CHECK(planned->plan_charge.amount() ==
                       PlanMemoryBytes(spec, job.pairs_size(),
                                       src->strided.has_value() && dst->strided.has_value()),
                   "PlanJob charged ", planned->plan_charge.amount(), " bytes");
  }
  if (!plan.ok()) {
    CheckRequestError(plan.status(), "TransferPlan::Build");
    if (!resolved.ok()) {
      KVS_FUZZ_CHECK(plan.status() == resolved.status(), "Build and ResolveSpec disagree: ",
                     plan.status(), " vs ", resolved.status());
    }
    return;
  }
  KVS_FUZZ_CHECK(resolved.ok(), "Build accepted a spec ResolveSpec rejects: ", resolved.status());
  CheckPlan(*plan, *resolved, *src, *dst, pairs);
}

void Run(const PlanInput& input) {
  Fixture fx;
  const FakeRegions& regions = FakeRegions::Get();
  for (const v1::RegisterBlockSetRequest& request : input.block_sets()) {
    absl::StatusOr<std::shared_ptr<BlockSetRecord>> record =
        BuildBlockSet(request, regions.Lookup(), kMaxBlockSetAddresses);
    if (!record.ok()) {
      CheckRequestError(record.status(), "BuildBlockSet");
      continue;
    }
    CheckBlockSet(request, **record, regions);
    (*record)->id = fx.block_sets.size() + 1;
    fx.block_sets.push_back(*std::move(record));
  }
  for (const v1::CreatePoolRequest& request : input.pools()) {
    // Pools of more than kMaxBlockSetAddresses table entries are pool_fuzzer's business.
    const v1::BlockShape& s = request.layout().shape();
    if (u128{request.num_blocks()} * s.nl() * s.no() > kMaxBlockSetAddresses) continue;
    absl::StatusOr<std::shared_ptr<Pool>> pool = fx.pools.Create(request);
    if (!pool.ok()) CheckRequestError(pool.status(), "CreatePool");
  }
  const v1::SubmitBatchRequest& batch = input.batch();
  for (int i = 0; i < batch.jobs_size() && i < kMaxJobs; ++i) RunJob(fx, batch.jobs(i));
}

}  // namespace
}  // namespace kvshuttle::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvshuttle::fuzz::PlanInput input;
  if (!input.ParseFromArray(data, static_cast<int>(size))) return 0;
  kvshuttle::fuzz::Run(input);
  return 0;
}
