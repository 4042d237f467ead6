// Integration-tier helpers: host block sets, jobs, reference checks, slow jobs.
#include "tests/integration/it_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/reference.h"
#include "core/status_macros.h"
#include "proto/proto_convert.h"

namespace kvshuttle::it {
namespace {

// Bytes after the last piece of every HostBlockSet object: an overrun shows up there.
constexpr uint64_t kTailBytes = 4096;
constexpr uint8_t kPoison = 0xA5;

}  // namespace

LayoutDesc MakeLayout(LayoutKind kind, BlockShape shape, DType dtype) {
  LayoutDesc desc;
  desc.kind = kind;
  desc.shape = shape;
  desc.dtype = dtype;
  return desc;
}

void FillRandom(void* data, size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto* out = static_cast<uint8_t*>(data);
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t word = rng();
    std::memcpy(out + i, &word, std::min<size_t>(8, bytes - i));
  }
}

std::vector<uint64_t> HostBlockSet::Table(const uint8_t* base) const {
  std::vector<uint64_t> table;
  table.reserve(offsets.size());
  for (uint64_t offset : offsets) table.push_back(reinterpret_cast<uint64_t>(base) + offset);
  return table;
}

v1::Endpoint HostBlockSet::endpoint() const {
  v1::Endpoint e;
  e.set_block_set_id(block_set_id);
  return e;
}

absl::StatusOr<HostBlockSet> MakeHostBlockSet(Session& session, const LayoutDesc& layout,
                                              int64_t num_blocks, Placement placement,
                                              uint64_t seed, uint64_t lead,
                                              absl::string_view name) {
  HostBlockSet set;
  set.layout = layout;
  set.num_blocks = num_blocks;
  const int64_t slots = AddressesPerBlock(layout.kind, layout.shape);
  const uint64_t piece =
      static_cast<uint64_t>(BytesPerAddress(layout.kind, layout.shape, DTypeSize(layout.dtype)));
  const uint64_t pieces = static_cast<uint64_t>(slots * num_blocks);
  ASSIGN_OR_RETURN(set.shm, SharedMemory::Create(lead + pieces * piece + kTailBytes));
  FillRandom(set.data(), set.bytes(), seed);

  std::vector<uint64_t> position(pieces);  // piece index of (block, slot), block-major
  if (placement == Placement::kStrided) {
    for (int64_t b = 0; b < num_blocks; ++b) {
      for (int64_t s = 0; s < slots; ++s) position[b * slots + s] = s * num_blocks + b;
    }
  } else {
    std::iota(position.begin(), position.end(), 0);
    std::shuffle(position.begin(), position.end(), std::mt19937_64(seed ^ 0x5eed));
  }
  for (uint64_t p : position) set.offsets.push_back(lead + p * piece);

  ASSIGN_OR_RETURN(v1::RegisterRegionResponse region,
                   session.RegisterHostShmRegion(set.shm->name(), 0, set.bytes(), name));
  set.region_id = region.region().region_id();
  const v1::Layout proto_layout = LayoutToProto(layout);
  v1::RegisterBlockSetResponse registered;
  if (placement == Placement::kStrided) {
    v1::StridedPlacement strided;
    for (int64_t s = 0; s < slots; ++s) {
      v1::SlotBase* slot = strided.add_slots();
      slot->set_region_id(set.region_id);
      slot->set_offset(set.offsets[s]);
    }
    strided.set_block_stride(piece);
    ASSIGN_OR_RETURN(registered, session.RegisterBlockSet(
                                     proto_layout, static_cast<uint32_t>(num_blocks), strided));
  } else {
    v1::ExplicitPlacement table;
    for (uint64_t offset : set.offsets) {
      v1::SlotBase* address = table.add_addresses();
      address->set_region_id(set.region_id);
      address->set_offset(offset);
    }
    ASSIGN_OR_RETURN(registered, session.RegisterBlockSet(
                                     proto_layout, static_cast<uint32_t>(num_blocks), table));
  }
  set.block_set_id = registered.block_set().block_set_id();
  return set;
}

v1::Endpoint PoolEndpoint(absl::string_view pool) {
  v1::Endpoint e;
  e.set_pool(std::string(pool));
  return e;
}

v1::Job MakeJob(const v1::Endpoint& src, const v1::Endpoint& dst, const TransferSpec& spec,
                const std::vector<BlockPair>& pairs) {
  v1::Job job;
  *job.mutable_src() = src;
  *job.mutable_dst() = dst;
  for (const BlockPair& p : pairs) *job.add_pairs() = BlockPairToProto(p);
  *job.mutable_heads() = AxisRangeToProto(spec.heads);
  *job.mutable_layers() = AxisRangeToProto(spec.layers);
  job.set_token_count(static_cast<uint32_t>(spec.token_count));
  return job;
}

TransferSpec WholeBlocks(const LayoutDesc& src, const LayoutDesc& dst) {
  TransferSpec spec;
  spec.src = src;
  spec.dst = dst;
  return spec;
}

std::vector<BlockPair> IdentityPairs(int64_t n) {
  std::vector<BlockPair> pairs;
  for (int64_t i = 0; i < n; ++i) pairs.push_back(BlockPair{i, i, 0, 0});
  return pairs;
}

absl::StatusOr<std::vector<uint8_t>> ExpectedAfter(const HostBlockSet& src, const HostBlockSet& dst,
                                                   const TransferSpec& spec,
                                                   const std::vector<BlockPair>& pairs) {
  TransferSpec resolved = spec;
  resolved.src = src.layout;
  resolved.dst = dst.layout;
  std::vector<uint8_t> expected = dst.Snapshot();
  RETURN_IF_ERROR(
      ReferenceConvert(resolved, src.Table(src.data()), dst.Table(expected.data()), pairs, 1));
  return expected;
}

::testing::AssertionResult BytesEqual(const uint8_t* actual, const std::vector<uint8_t>& expected) {
  size_t first = expected.size();
  size_t count = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (actual[i] != expected[i]) {
      if (count++ == 0) first = i;
    }
  }
  if (count == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << count << " of " << expected.size() << " bytes differ; first at offset " << first
         << " (got " << int{actual[first]} << ", want " << int{expected[first]} << ")";
}

absl::StatusOr<v1::WaitResponse> RunBatch(Session& session, const std::vector<v1::Job>& jobs,
                                          absl::Duration timeout) {
  v1::SubmitBatchRequest request;
  for (const v1::Job& job : jobs) *request.add_jobs() = job;
  ASSIGN_OR_RETURN(v1::SubmitBatchResponse submitted, session.SubmitBatch(request));
  const std::vector<uint64_t> ids(submitted.job_ids().begin(), submitted.job_ids().end());
  return session.Wait(ids, timeout);
}

// ---------------------------------------------------------------------------------------------
// SlowJobs

namespace {

const BlockShape kSlowShape{1, 1, 256, 256, 1};

}  // namespace

absl::StatusOr<std::unique_ptr<SlowJobs>> SlowJobs::Create(Session& session, int64_t max_pairs) {
  std::unique_ptr<SlowJobs> jobs(new SlowJobs());
  jobs->max_pairs_ = max_pairs;
  ASSIGN_OR_RETURN(
      jobs->src_,
      MakeHostBlockSet(session, MakeLayout(LayoutKind::kNHDStack, kSlowShape, DType::kUInt8), 1,
                       Placement::kStrided, /*seed=*/77));
  ASSIGN_OR_RETURN(
      jobs->dst_,
      MakeHostBlockSet(session, MakeLayout(LayoutKind::kHNDStack, kSlowShape, DType::kUInt8), 1,
                       Placement::kStrided, /*seed=*/78));
  // Calibrate: grow the pair count until a run takes long enough to time (the first, short
  // runs also warm the daemon up; they run slower than the steady state).
  for (int64_t pairs = 32; pairs <= max_pairs; pairs *= 4) {
    v1::Job job = MakeJob(jobs->src_.endpoint(), jobs->dst_.endpoint(),
                          WholeBlocks(jobs->src_.layout, jobs->dst_.layout),
                          std::vector<BlockPair>(pairs, BlockPair{0, 0, 0, 0}));
    ASSIGN_OR_RETURN(v1::WaitResponse done, RunBatch(session, {job}));
    if (done.results_size() == 1) jobs->calibration_job_ids_.push_back(done.results(0).job_id());
    if (!done.all_done() || done.results(0).state() != v1::JOB_DONE) {
      return absl::InternalError(
          absl::StrCat("SlowJobs calibration job did not finish: ", done.DebugString()));
    }
    const double seconds = done.results(0).run_seconds();
    if (seconds >= 0.1 || pairs * 4 > max_pairs) {
      jobs->pairs_per_second_ = static_cast<double>(pairs) / std::max(seconds, 1e-6);
      return jobs;
    }
  }
  return absl::InternalError("SlowJobs: max_pairs too small to calibrate");
}

int64_t SlowJobs::PairsFor(absl::Duration duration) const {
  const double pairs = std::round(absl::ToDoubleSeconds(duration) * pairs_per_second_);
  return std::clamp<int64_t>(static_cast<int64_t>(pairs), 1, max_pairs_);
}

v1::Job SlowJobs::Job(absl::Duration duration) const {
  return MakeJob(src_.endpoint(), dst_.endpoint(), WholeBlocks(src_.layout, dst_.layout),
                 std::vector<BlockPair>(PairsFor(duration), BlockPair{0, 0, 0, 0}));
}

::testing::AssertionResult SlowJobs::DstIsConverted() const {
  absl::StatusOr<std::vector<uint8_t>> expected =
      ExpectedAfter(src_, dst_, WholeBlocks(src_.layout, dst_.layout), {BlockPair{0, 0, 0, 0}});
  if (!expected.ok()) {
    return ::testing::AssertionFailure() << "reference: " << expected.status();
  }
  return BytesEqual(dst_.data(), *expected);
}

void SlowJobs::PoisonDst() { std::memset(dst_.data(), kPoison, dst_.bytes()); }

absl::StatusOr<v1::JobResult> WaitForJobEvent(Session& session, uint64_t job_id,
                                              absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    for (v1::JobResult& event : session.TakeEvents()) {
      if (event.job_id() == job_id) return std::move(event);
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("no job_done event for job ", job_id,
                                                      " within ", absl::FormatDuration(timeout)));
    }
    if (!session.WaitForEvents(1, left) && !session.StreamStatus().ok()) {
      for (v1::JobResult& event : session.TakeEvents()) {
        if (event.job_id() == job_id) return std::move(event);
      }
      return session.StreamStatus();
    }
  }
}

bool WaitUntil(const std::function<bool()>& predicate, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() >= deadline) return predicate();
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

int CpuQueueDepth(const Client& client) {
  absl::StatusOr<v1::GetStatsResponse> stats = client.GetStats();
  if (!stats.ok()) return -1;
  for (const v1::ExecutorStats& e : stats->executors()) {
    if (e.name() == "cpu") return static_cast<int>(e.queue_depth());
  }
  return -1;
}

absl::Status WarmUpRegistration(Client& client) {
  absl::StatusOr<std::unique_ptr<Session>> warmup =
      Session::Open(client, "it-warmup", /*attach=*/false);
  if (!warmup.ok()) return warmup.status();
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm = SharedMemory::Create(4096);
  if (!shm.ok()) return shm.status();
  return ToStatus((*warmup)->RegisterHostShmRegion((*shm)->name(), 0, 4096));
}

}  // namespace kvshuttle::it
