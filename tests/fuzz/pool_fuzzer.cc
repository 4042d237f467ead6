// Fuzz target: the pool RPCs. The input is a binary fuzz.PoolInput, a sequence of CreatePool,
// AllocateBlocks, FreeBlocks and DestroyPool requests, run against one PoolTable (the daemon's)
// over a fake two-GPU runtime whose memory is never touched, next to a model of what each call
// must do. Checked after every call: the outcome and its code match the model, a refused call
// changes nothing, allocated ids are distinct free blocks, blocks_in_use matches, and a created
// pool's address table is one address per block inside its memory.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/layout.h"
#include "fuzz_input.pb.h"
#include "proto/proto_convert.h"
#include "server/pool.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvshuttle::fuzz {
namespace {

constexpr int kMaxPools = 4;
constexpr int kMaxCalls = 256;
// Pools above this many blocks are validated by the model but not created: their tables would
// make an execution take tens of milliseconds.
constexpr uint32_t kMaxCreatedBlocks = 1u << 16;

struct ModelPool {
  std::shared_ptr<Pool> pool;
  std::set<uint32_t> allocated;
};

void CheckNewPool(const v1::CreatePoolRequest& request, const Pool& pool) {
  absl::StatusOr<LayoutDesc> layout = LayoutFromProto(request.layout(), "layout");
  KVS_FUZZ_CHECK(layout.ok(), "created a pool with an invalid layout: ", layout.status());
  KVS_FUZZ_CHECK(pool.layout() == *layout && pool.name() == request.name() &&
                     pool.num_blocks() == static_cast<int64_t>(request.num_blocks()),
                 "pool differs from its request");
  // A pool holds one buffer per block (universal or operational; kvshuttle.proto).
  KVS_FUZZ_CHECK(!IsStack(layout->kind), "created a pool of block stacks (",
                 LayoutKindName(layout->kind), ")");
  const int64_t es = DTypeSize(layout->dtype);
  const uint64_t block_bytes = static_cast<uint64_t>(BytesPerAddress(layout->kind, layout->shape, es));
  KVS_FUZZ_CHECK(pool.addresses().size() == request.num_blocks() &&
                     pool.segments().size() == pool.addresses().size(),
                 "pool table of ", pool.addresses().size(), " entries for ",
                 request.num_blocks(), " blocks");
  const Memory& m = *pool.memory();
  KVS_FUZZ_CHECK(m.size() == block_bytes * request.num_blocks(), "pool memory of ", m.size(),
                 " bytes for ", request.num_blocks(), " blocks of ", block_bytes);
  for (size_t b = 0; b < pool.addresses().size(); ++b) {
    KVS_FUZZ_CHECK(pool.addresses()[b] == m.base() + b * block_bytes && pool.segments()[b] == 0,
                   "pool address[", b, "]");
  }
  const bool device = request.memory() == v1::MEMORY_DEVICE;
  KVS_FUZZ_CHECK(pool.placement().place == (device ? MemoryPlace::kDevice : MemoryPlace::kHost),
                 "pool placement");
  KVS_FUZZ_CHECK(pool.ToProto().blocks_in_use() == 0, "a new pool with blocks in use");
}

class Harness {
 public:
  void Call(const PoolCall& call) {
    switch (call.call_case()) {
      case PoolCall::kCreate:
        return Create(call.create());
      case PoolCall::kAllocate:
        return Allocate(call.allocate());
      case PoolCall::kFree:
        return Free(call.free());
      case PoolCall::kDestroy:
        return Destroy(call.destroy());
      default:
        return;
    }
  }

  void CheckState() {
    KVS_FUZZ_CHECK(table_.List().size() == model_.size(), "table holds ", table_.List().size(),
                   " pools, model ", model_.size());
    for (const auto& [name, m] : model_) {
      KVS_FUZZ_CHECK(m.pool->ToProto().blocks_in_use() == m.allocated.size(), "pool ", name,
                     ": blocks_in_use ", m.pool->ToProto().blocks_in_use(), ", model ",
                     m.allocated.size());
    }
  }

 private:
  void Create(const v1::CreatePoolRequest& request) {
    if (request.num_blocks() > kMaxCreatedBlocks && request.num_blocks() <= (1u << 24)) return;
    absl::StatusOr<std::shared_ptr<Pool>> pool = table_.Create(request);
    if (!pool.ok()) {
      CheckRequestError(pool.status(), "CreatePool");
      if (pool.status().code() == absl::StatusCode::kAlreadyExists) {
        KVS_FUZZ_CHECK(model_.count(request.name()) != 0, "ALREADY_EXISTS for a new name");
      }
      return;
    }
    KVS_FUZZ_CHECK(model_.count(request.name()) == 0, "created a second pool \"",
                   request.name().substr(0, 64), "\"");
    KVS_FUZZ_CHECK(model_.size() < static_cast<size_t>(kMaxPools), "more than ", kMaxPools,
                   " pools");
    CheckNewPool(request, **pool);
    model_[request.name()] = ModelPool{*pool, {}};
  }

  void Allocate(const v1::AllocateBlocksRequest& request) {
    absl::StatusOr<std::shared_ptr<Pool>> pool = table_.Find(request.pool());
    auto it = model_.find(request.pool());
    if (!pool.ok()) {
      CheckRequestError(pool.status(), "Find");
      KVS_FUZZ_CHECK(it == model_.end() && pool.status().code() == absl::StatusCode::kNotFound,
                     "Find: ", pool.status());
      return;
    }
    KVS_FUZZ_CHECK(it != model_.end() && it->second.pool == *pool, "found a pool not created");
    ModelPool& m = it->second;
    const int64_t free_blocks = m.pool->num_blocks() - static_cast<int64_t>(m.allocated.size());
    absl::StatusOr<std::vector<uint32_t>> ids = m.pool->Allocate(request.count());
    const bool fits = request.count() >= 1 && request.count() <= free_blocks;
    KVS_FUZZ_CHECK(ids.ok() == fits, "Allocate(", request.count(), ") with ", free_blocks,
                   " free: ", ids.status());
    if (!ids.ok()) {
      CheckRequestError(ids.status(), "Allocate");
      // Asking for no blocks is a bad argument; asking for more than are free is exhaustion.
      const absl::StatusCode expected = request.count() == 0
                                            ? absl::StatusCode::kInvalidArgument
                                            : absl::StatusCode::kResourceExhausted;
      KVS_FUZZ_CHECK(ids.status().code() == expected, "Allocate: ", ids.status());
      return;
    }
    KVS_FUZZ_CHECK(ids->size() == request.count(), "Allocate returned ", ids->size(), " ids");
    for (uint32_t id : *ids) {
      KVS_FUZZ_CHECK(id < m.pool->num_blocks() && m.allocated.insert(id).second,
                     "Allocate returned block ", id, " (out of range or already allocated)");
    }
  }

  void Free(const v1::FreeBlocksRequest& request) {
    absl::StatusOr<std::shared_ptr<Pool>> pool = table_.Find(request.pool());
    if (!pool.ok()) return CheckRequestError(pool.status(), "Find");
    ModelPool& m = model_.at(request.pool());
    // The model: the first bad id decides the code; nothing is freed then.
    absl::StatusCode expected = absl::StatusCode::kOk;
    std::set<uint32_t> seen;
    for (uint32_t id : request.block_ids()) {
      if (id >= m.pool->num_blocks()) {
        expected = absl::StatusCode::kOutOfRange;
        break;
      }
      if (m.allocated.count(id) == 0 || !seen.insert(id).second) {
        expected = absl::StatusCode::kFailedPrecondition;
        break;
      }
    }
    const absl::Status status = m.pool->Free({request.block_ids().begin(), request.block_ids().end()});
    KVS_FUZZ_CHECK(status.code() == expected, "Free: ", status, ", expected code ",
                   absl::StatusCodeToString(expected));
    if (!status.ok()) return CheckRequestError(status, "Free");
    for (uint32_t id : request.block_ids()) m.allocated.erase(id);
  }

  void Destroy(const v1::DestroyPoolRequest& request) {
    const absl::Status status = table_.Destroy(request.name());
    const bool known = model_.erase(request.name()) != 0;
    KVS_FUZZ_CHECK(status.ok() == known, "Destroy: ", status);
    if (!status.ok()) CheckRequestError(status, "Destroy");
  }

  FakeGpuRuntime gpu_;
  std::unique_ptr<BudgetSet> budgets_ = MakeBudgetSet(Budgets{}, gpu_);
  PoolTable table_{gpu_, kMaxPools, *budgets_};
  std::map<std::string, ModelPool> model_;
};

}  // namespace
}  // namespace kvshuttle::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvshuttle::fuzz::PoolInput input;
  if (!input.ParseFromArray(data, static_cast<int>(size))) return 0;
  kvshuttle::fuzz::Harness harness;
  for (int i = 0; i < input.calls_size() && i < kvshuttle::fuzz::kMaxCalls; ++i) {
    harness.Call(input.calls(i));
    harness.CheckState();
  }
  return 0;
}
