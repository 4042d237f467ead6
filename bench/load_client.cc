// RunClient: setup (channel, memory, session, region, block sets), the closed job loop with
// latency stamps, and the byte-for-byte check of sampled jobs against ReferenceConvert.
#include "bench/load_client.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/load_memory.h"
#include "client/client.h"
#include "core/reference.h"
#include "core/status_macros.h"
#include "core/transfer.h"
#include "proto/proto_convert.h"

namespace kvshuttle::load {

int64_t ClientResult::error_count() const {
  int64_t total = 0;
  for (const auto& [key, count] : errors) total += count;
  return total;
}

void ClientResult::Merge(const ClientResult& other) {
  jobs_planned += other.jobs_planned;
  jobs_submitted += other.jobs_submitted;
  jobs_done += other.jobs_done;
  jobs_verified += other.jobs_verified;
  payload_bytes += other.payload_bytes;
  latency_ns.insert(latency_ns.end(), other.latency_ns.begin(), other.latency_ns.end());
  daemon_ns.insert(daemon_ns.end(), other.daemon_ns.begin(), other.daemon_ns.end());
  for (const auto& [key, count] : other.errors) errors[key] += count;
}

int64_t BlockSetBytes(const LayoutDesc& layout, int64_t blocks) {
  return AddressesPerBlock(layout.kind, layout.shape) *
         BytesPerAddress(layout.kind, layout.shape, DTypeSize(layout.dtype)) * blocks;
}

absl::Status ValidateWorkload(const Workload& w) {
  TransferSpec spec;
  spec.src = w.src;
  spec.dst = w.dst;
  if (absl::Status s = ResolveSpec(spec).status(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--layouts/--shape/--dtype: ", s.message()));
  }
  if (w.blocks < 1 || w.blocks > (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--blocks: ", w.blocks, " is outside [1, 1048576]"));
  }
  if (w.batch < 1 || w.pairs < 1 || w.batch * w.pairs > w.blocks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch * --pairs: ", w.batch, " * ", w.pairs, " must be in [1, --blocks = ", w.blocks,
        "] (the jobs of one batch write distinct destination blocks)"));
  }
  if (w.verify_every < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--verify_every: ", w.verify_every, " is negative"));
  }
  return absl::OkStatus();
}

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint8_t kPoison = 0xA5;

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

// Where one side's pieces lie in the client's memory: vLLM style, slot s of block b at
// base + (s * blocks + b) * piece (a per-layer tensor per slot, block stride = piece).
struct Side {
  LayoutDesc layout;
  int64_t blocks = 0;
  int64_t slots = 0;
  int64_t piece = 0;
  uint64_t base = 0;

  Side(const LayoutDesc& desc, int64_t num_blocks, uint64_t base_offset)
      : layout(desc),
        blocks(num_blocks),
        slots(AddressesPerBlock(desc.kind, desc.shape)),
        piece(BytesPerAddress(desc.kind, desc.shape, DTypeSize(desc.dtype))),
        base(base_offset) {}
  uint64_t bytes() const { return static_cast<uint64_t>(slots * piece * blocks); }
  uint64_t Offset(int64_t block, int64_t slot) const {
    return base + static_cast<uint64_t>((slot * blocks + block) * piece);
  }
  v1::StridedPlacement Placement(uint64_t region_id) const {
    v1::StridedPlacement out;
    for (int64_t s = 0; s < slots; ++s) {
      v1::SlotBase* slot = out.add_slots();
      slot->set_region_id(region_id);
      slot->set_offset(Offset(0, s));
    }
    out.set_block_stride(static_cast<uint64_t>(piece));
    return out;
  }
};

class LoadClient {
 public:
  LoadClient(const Workload& workload, const ClientContext& context, ClientResult& result)
      : w_(workload),
        ctx_(context),
        result_(result),
        src_(workload.src, workload.blocks, 0),
        dst_(workload.dst, workload.blocks, src_.bytes()),
        rng_(workload.seed + static_cast<uint64_t>(context.index)) {}

  absl::Status SetUp();
  void Run();

 private:
  // One batch of jobs [first, first + count) of this client. Errors are counted; true when the
  // whole batch went through without one.
  bool RunBatch(int64_t first, int64_t count);
  void Poison(const v1::Job& job);
  // Checks the destination blocks of a done job; counts verify errors.
  void Verify(const v1::Job& job);
  void Error(absl::string_view key, int64_t jobs_lost = 0);
  // Counts a finished job at `position` of the batch; done ones to check go to to_verify_.
  void Record(const v1::JobResult& r, size_t position, Clock::time_point submitted,
              Clock::time_point seen);
  void Finished(int64_t jobs) {
    if (ctx_.jobs_finished != nullptr) ctx_.jobs_finished->fetch_add(jobs);
  }
  // Collect the completions of the batch's jobs (`pending`: job id → position), counting
  // errors; jobs left in `pending` did not complete in time or could not be heard of.
  void WaitMode(const std::vector<uint64_t>& ids, Clock::time_point t0,
                std::unordered_map<uint64_t, size_t>& pending);
  void EventMode(Clock::time_point t0, std::unordered_map<uint64_t, size_t>& pending);

  const Workload& w_;
  const ClientContext& ctx_;
  ClientResult& result_;
  const Side src_;
  const Side dst_;
  std::mt19937_64 rng_;

  // Destroyed in reverse: the session (and with it the daemon's mapping) before the memory.
  std::unique_ptr<Client> client_;
  std::unique_ptr<LoadMemory> memory_;
  std::unique_ptr<Session> session_;
  uint64_t src_set_ = 0;
  uint64_t dst_set_ = 0;
  std::vector<uint8_t> src_bytes_;   // what the source holds (the reference's input)
  std::vector<uint64_t> src_table_;  // ReferenceConvert's source table over src_bytes_
  std::vector<uint32_t> dst_order_;  // destination blocks, shuffled per batch
  std::vector<v1::Job> batch_jobs_;  // the current batch, by position
  std::vector<bool> batch_verify_;
  std::vector<size_t> to_verify_;  // positions of done jobs to check after the batch
  bool reported_mismatch_ = false;
};

absl::Status LoadClient::SetUp() {
  ASSIGN_OR_RETURN(client_, Client::Connect(w_.target, absl::Seconds(10)));
  const size_t bytes = src_.bytes() + dst_.bytes();
  if (w_.device_memory) {
    ASSIGN_OR_RETURN(memory_, LoadMemory::CreateDevice(ctx_.gpu_ordinal, bytes));
  } else {
    ASSIGN_OR_RETURN(memory_, LoadMemory::CreateHost(bytes));
  }
  result_.gpu_uuid = memory_->gpu_uuid();

  src_bytes_.resize(src_.bytes());
  for (size_t i = 0; i < src_bytes_.size(); i += 8) {
    const uint64_t word = rng_();
    std::memcpy(src_bytes_.data() + i, &word, std::min<size_t>(8, src_bytes_.size() - i));
  }
  RETURN_IF_ERROR(memory_->Write(0, src_bytes_));
  RETURN_IF_ERROR(memory_->Write(src_.bytes(), std::vector<uint8_t>(dst_.bytes(), kPoison)));
  const uint64_t host = reinterpret_cast<uint64_t>(src_bytes_.data());
  for (int64_t b = 0; b < src_.blocks; ++b) {
    for (int64_t s = 0; s < src_.slots; ++s) src_table_.push_back(host + src_.Offset(b, s));
  }
  dst_order_.resize(static_cast<size_t>(dst_.blocks));
  std::iota(dst_order_.begin(), dst_order_.end(), 0);

  ASSIGN_OR_RETURN(session_, Session::Open(*client_, absl::StrCat("kvs_load-", ctx_.index),
                                           /*attach=*/true));
  ASSIGN_OR_RETURN(const uint64_t region, memory_->Register(*session_));
  const uint32_t nb = static_cast<uint32_t>(w_.blocks);
  ASSIGN_OR_RETURN(const v1::RegisterBlockSetResponse src_set,
                   session_->RegisterBlockSet(LayoutToProto(src_.layout), nb,
                                              src_.Placement(region), "kvs_load-src"));
  ASSIGN_OR_RETURN(const v1::RegisterBlockSetResponse dst_set,
                   session_->RegisterBlockSet(LayoutToProto(dst_.layout), nb,
                                              dst_.Placement(region), "kvs_load-dst"));
  src_set_ = src_set.block_set().block_set_id();
  dst_set_ = dst_set.block_set().block_set_id();
  return absl::OkStatus();
}

void LoadClient::Error(absl::string_view key, int64_t jobs_lost) {
  result_.AddError(key);
  if (ctx_.errors != nullptr) ctx_.errors->fetch_add(1);
  Finished(jobs_lost);
}

void LoadClient::Run() {
  int consecutive = 0;
  for (int64_t first = 0; first < ctx_.jobs; first += w_.batch) {
    const int64_t count = std::min(w_.batch, ctx_.jobs - first);
    consecutive = RunBatch(first, count) ? 0 : consecutive + 1;
    if (consecutive >= w_.max_consecutive_errors) {
      Error("client:GAVE_UP", ctx_.jobs - first - count);
      return;
    }
  }
}

bool LoadClient::RunBatch(int64_t first, int64_t count) {
  // Distinct destination blocks for the whole batch (jobs may run in parallel); any sources.
  const int64_t picks = count * w_.pairs;
  for (int64_t i = 0; i < picks; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, dst_.blocks - 1);
    std::swap(dst_order_[i], dst_order_[pick(rng_)]);
  }
  std::uniform_int_distribution<uint32_t> any_src(0, static_cast<uint32_t>(src_.blocks - 1));
  v1::SubmitBatchRequest request;
  batch_jobs_.clear();
  batch_verify_.clear();
  to_verify_.clear();
  for (int64_t j = 0; j < count; ++j) {
    v1::Job* job = request.add_jobs();
    job->mutable_src()->set_block_set_id(src_set_);
    job->mutable_dst()->set_block_set_id(dst_set_);
    for (int64_t p = 0; p < w_.pairs; ++p) {
      v1::BlockPair* pair = job->add_pairs();
      pair->set_src_block(any_src(rng_));
      pair->set_dst_block(dst_order_[j * w_.pairs + p]);
    }
    const bool verify = w_.verify_every > 0 && (first + j) % w_.verify_every == 0;
    if (verify) Poison(*job);
    batch_jobs_.push_back(*job);
    batch_verify_.push_back(verify);
  }

  const size_t errors_before = static_cast<size_t>(result_.error_count());
  const Clock::time_point t0 = Clock::now();
  absl::StatusOr<v1::SubmitBatchResponse> submitted = session_->SubmitBatch(request);
  if (!submitted.ok()) {
    Error(absl::StrCat("SubmitBatch:", CodeName(submitted.status().code())), count);
    return false;
  }
  if (submitted->job_ids_size() != count) {
    Error("SubmitBatch:WRONG_ID_COUNT", count);
    return false;
  }
  result_.jobs_submitted += count;
  std::vector<uint64_t> ids(submitted->job_ids().begin(), submitted->job_ids().end());
  std::unordered_map<uint64_t, size_t> pending;  // job id → position in the batch
  for (size_t i = 0; i < ids.size(); ++i) pending[ids[i]] = i;

  if (w_.completion == Completion::kWait) {
    WaitMode(ids, t0, pending);
  } else {
    EventMode(t0, pending);
  }
  if (!pending.empty()) {  // not done in time, or the completion channel failed
    std::vector<uint64_t> left;
    for (const auto& [id, position] : pending) left.push_back(id);
    (void)session_->CancelJobs(left);
  }
  for (size_t position : to_verify_) Verify(batch_jobs_[position]);
  return static_cast<size_t>(result_.error_count()) == errors_before;
}

// One Wait for the whole batch; every job gets the batch's latency.
void LoadClient::WaitMode(const std::vector<uint64_t>& ids, Clock::time_point t0,
                          std::unordered_map<uint64_t, size_t>& pending) {
  absl::StatusOr<v1::WaitResponse> waited = session_->Wait(ids, w_.job_timeout);
  const Clock::time_point t1 = Clock::now();
  (void)session_->TakeEvents();  // the Attach stream's copies of the same completions
  if (!waited.ok()) {
    Error(absl::StrCat("Wait:", CodeName(waited.status().code())),
          static_cast<int64_t>(ids.size()));
    return;
  }
  for (const v1::JobResult& r : waited->results()) {
    const auto it = pending.find(r.job_id());
    if (it == pending.end()) continue;
    if (r.state() == v1::JOB_QUEUED || r.state() == v1::JOB_RUNNING) {
      Error("Wait:NOT_DONE_IN_TIME", 1);
      continue;
    }
    Record(r, it->second, t0, t1);
    pending.erase(it);
  }
}

// job_done events as they come; each job gets its own latency.
void LoadClient::EventMode(Clock::time_point t0, std::unordered_map<uint64_t, size_t>& pending) {
  const Clock::time_point deadline = t0 + absl::ToChronoNanoseconds(w_.job_timeout);
  while (!pending.empty()) {
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      for (size_t i = 0; i < pending.size(); ++i) Error("Attach:NOT_DONE_IN_TIME", 1);
      return;
    }
    if (!session_->WaitForEvents(1, absl::FromChrono(deadline - now))) {
      if (Clock::now() >= deadline) continue;
      // Woken before the deadline without an event: the stream ended.
      const absl::Status stream = session_->StreamStatus();
      Error(absl::StrCat("Attach:", stream.ok() ? "ENDED" : CodeName(stream.code())),
            static_cast<int64_t>(pending.size()));
      return;
    }
    const Clock::time_point seen = Clock::now();
    for (const v1::JobResult& r : session_->TakeEvents()) {
      const auto it = pending.find(r.job_id());
      if (it == pending.end()) continue;  // a late event of an abandoned batch
      Record(r, it->second, t0, seen);
      pending.erase(it);
    }
  }
}

void LoadClient::Record(const v1::JobResult& r, size_t position, Clock::time_point submitted,
                        Clock::time_point seen) {
  if (r.state() != v1::JOB_DONE) {
    const std::string code = CodeName(static_cast<absl::StatusCode>(r.code()));
    Error(r.state() == v1::JOB_CANCELLED ? absl::StrCat("job:CANCELLED_", code)
                                         : absl::StrCat("job:", code),
          1);
    return;
  }
  ++result_.jobs_done;
  result_.payload_bytes += static_cast<int64_t>(r.bytes());
  result_.latency_ns.push_back(
      std::chrono::duration_cast<std::chrono::nanoseconds>(seen - submitted).count());
  result_.daemon_ns.push_back(static_cast<int64_t>((r.queue_seconds() + r.run_seconds()) * 1e9));
  if (batch_verify_[position]) to_verify_.push_back(position);
  Finished(1);
}

void LoadClient::Poison(const v1::Job& job) {
  const std::vector<uint8_t> poison(static_cast<size_t>(dst_.piece), kPoison);
  for (const v1::BlockPair& pair : job.pairs()) {
    for (int64_t s = 0; s < dst_.slots; ++s) {
      if (absl::Status st = memory_->Write(dst_.Offset(pair.dst_block(), s), poison); !st.ok()) {
        Error(absl::StrCat("verify:", CodeName(st.code())));
      }
    }
  }
}

void LoadClient::Verify(const v1::Job& job) {
  // The reference converts the job's source blocks into a scratch copy of its destination
  // blocks, scratch block j = pair j's destination.
  const int64_t n = job.pairs_size();
  std::vector<uint8_t> expected(static_cast<size_t>(n * dst_.slots * dst_.piece), kPoison);
  std::vector<uint64_t> dst_table;
  std::vector<BlockPair> pairs;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t s = 0; s < dst_.slots; ++s) {
      dst_table.push_back(reinterpret_cast<uint64_t>(expected.data()) +
                          static_cast<uint64_t>((j * dst_.slots + s) * dst_.piece));
    }
    pairs.push_back(BlockPair{job.pairs(static_cast<int>(j)).src_block(), j, 0, 0});
  }
  TransferSpec spec;
  spec.src = src_.layout;
  spec.dst = dst_.layout;
  if (absl::Status st = ReferenceConvert(spec, src_table_, dst_table, pairs, 1); !st.ok()) {
    Error(absl::StrCat("verify:REFERENCE_", CodeName(st.code())));
    return;
  }
  std::vector<uint8_t> got(static_cast<size_t>(dst_.piece));
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t block = job.pairs(static_cast<int>(j)).dst_block();
    for (int64_t s = 0; s < dst_.slots; ++s) {
      if (absl::Status st = memory_->Read(dst_.Offset(block, s), absl::MakeSpan(got)); !st.ok()) {
        Error(absl::StrCat("verify:", CodeName(st.code())));
        return;
      }
      const uint8_t* want = expected.data() + (j * dst_.slots + s) * dst_.piece;
      if (std::memcmp(got.data(), want, got.size()) != 0) {
        if (!reported_mismatch_) {
          const size_t at =
              static_cast<size_t>(std::mismatch(got.begin(), got.end(), want).first - got.begin());
          std::fprintf(stderr,
                       "kvs_load: client %d: MISMATCH in destination block %u slot %lld, "
                       "first differing byte %zu of %lld (source block %u)\n",
                       ctx_.index, block, static_cast<long long>(s), at,
                       static_cast<long long>(dst_.piece),
                       job.pairs(static_cast<int>(j)).src_block());
          reported_mismatch_ = true;
        }
        Error("verify:MISMATCH");
        return;
      }
    }
  }
  ++result_.jobs_verified;
}

}  // namespace

ClientResult RunClient(const Workload& workload, const ClientContext& context) {
  ClientResult result;
  result.jobs_planned = context.jobs;
  {
    LoadClient client(workload, context, result);
    const absl::Status setup = client.SetUp();
    if (!setup.ok()) {
      std::fprintf(stderr, "kvs_load: client %d: setup: %s\n", context.index,
                   setup.ToString().c_str());
      result.AddError(absl::StrCat("setup:", CodeName(setup.code())));
      if (context.errors != nullptr) context.errors->fetch_add(1);
    }
    const bool go = context.start_gate ? context.start_gate() : true;
    if (setup.ok() && go) {
      client.Run();
      if (context.on_jobs_finished) context.on_jobs_finished();
    } else if (context.jobs_finished != nullptr) {
      context.jobs_finished->fetch_add(context.jobs);  // lost, and counted as such
    }
  }  // closes the session, then frees the memory
  return result;
}

}  // namespace kvshuttle::load
