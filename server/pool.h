// Pools: daemon-owned memory of N blocks in one layout, shared by name across sessions (TP
// ranks of one model write their head slices into the same pool blocks).
#pragma once

#include <cstdint>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/layout.h"
#include "core/plan.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/block_set.h"
#include "server/budget.h"
#include "server/options.h"
#include "server/runtime/gpu_runtime.h"

namespace kvshuttle {

class Pool {
 public:
  // `charges`: the pool's memory and metadata budget receipts, returned when it goes.
  Pool(std::string name, LayoutDesc layout, int64_t num_blocks, std::string gpu_uuid,
       std::shared_ptr<Memory> memory, std::vector<Budget::Charge> charges = {});

  const std::string& name() const { return name_; }
  const LayoutDesc& layout() const { return layout_; }
  int64_t num_blocks() const { return num_blocks_; }
  // Address table in the block-set form (block-major, AddressesPerBlock per block).
  const std::vector<uint64_t>& addresses() const { return addresses_; }
  // All blocks lie in the pool's one allocation: one segment (AddressSegments).
  const std::vector<uint32_t>& segments() const { return segments_; }
  Placement placement() const;
  const std::shared_ptr<Memory>& memory() const { return memory_; }
  // The same table as a strided side (block 0's addresses, one segment, the block size as
  // stride), for O(pairs) plans (TransferPlan::BuildStrided). Valid while the pool lives.
  StridedSide strided() const {
    return StridedSide{strided_bases_, block_bytes_, num_blocks_, strided_segments_};
  }

  // Daemon memory the pool's metadata takes (address table, segments, allocation bits).
  static int64_t MetadataBytes(int64_t num_blocks);

  // Allocates `count` free blocks (lowest ids first); INVALID_ARGUMENT for count < 1,
  // RESOURCE_EXHAUSTED when fewer are free.
  absl::StatusOr<std::vector<uint32_t>> Allocate(int64_t count);
  // Frees blocks; OUT_OF_RANGE for ids ≥ num_blocks, FAILED_PRECONDITION for blocks that are
  // not allocated (nothing is freed then).
  absl::Status Free(const std::vector<uint32_t>& ids);
  v1::Pool ToProto() const;

 private:
  const std::string name_;
  const LayoutDesc layout_;
  const int64_t num_blocks_;
  const std::string gpu_uuid_;
  const std::shared_ptr<Memory> memory_;
  std::vector<uint64_t> addresses_;
  std::vector<uint32_t> segments_;
  std::vector<uint64_t> strided_bases_;
  std::vector<uint32_t> strided_segments_;
  uint64_t block_bytes_ = 0;
  std::vector<Budget::Charge> charges_;
  mutable std::mutex mu_;
  std::vector<bool> in_use_;
  int64_t used_ = 0;
};

// The budgets of `options` over the GPUs of `gpu` (pool fractions of each GPU's memory and of
// the machine's RAM resolved to bytes).
std::unique_ptr<BudgetSet> MakeBudgetSet(const Budgets& options, const GpuRuntime& gpu);

// The daemon's pools by name.
class PoolTable {
 public:
  // A session's accounts of the pool budgets: host pools, and device pools of GPU `ordinal`.
  struct PoolAccounts {
    std::shared_ptr<Budget::Account> metadata;  // the pool's metadata
    std::shared_ptr<Budget::Account> host;
    std::function<std::shared_ptr<Budget::Account>(int ordinal)> device;
  };

  PoolTable(GpuRuntime& gpu, int max_pools, BudgetSet& budgets)
      : gpu_(gpu), max_pools_(max_pools), budgets_(budgets) {}

  // Validates and allocates. INVALID_ARGUMENT for a bad name/layout (a block stack included:
  // pools are universal or operational)/num_blocks/memory kind;
  // ALREADY_EXISTS for a taken name; RESOURCE_EXHAUSTED over max_pools, over the pool memory
  // budget of its place (checked before allocating), over the metadata budget, or out of
  // memory; FAILED_PRECONDITION for device memory without a GPU or an unknown gpu_uuid.
  // `accounts`: the creating session's shares of the pool budgets (charged while the pool
  // exists); empty: the daemon-wide budgets only.
  absl::StatusOr<std::shared_ptr<Pool>> Create(const v1::CreatePoolRequest& request,
                                               const PoolAccounts& accounts = {});
  // Removes the name; the memory goes when the last in-flight job using it finishes.
  absl::Status Destroy(const std::string& name);
  // NOT_FOUND naming the pool.
  absl::StatusOr<std::shared_ptr<Pool>> Find(const std::string& name) const;
  std::vector<std::shared_ptr<Pool>> List() const;

 private:
  GpuRuntime& gpu_;
  const int max_pools_;
  BudgetSet& budgets_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Pool>> pools_;
};

}  // namespace kvshuttle
