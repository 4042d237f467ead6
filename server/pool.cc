// Pools and the pool table.
#include "server/pool.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/proto_convert.h"

namespace kvshuttle {
namespace {

constexpr uint32_t kMaxPoolBlocks = 1u << 24;
// Client-supplied names are quoted at most this long in messages: a status message travels in
// gRPC metadata, and one over the client's limit (8 KiB) turns the error into RESOURCE_EXHAUSTED.
constexpr size_t kMaxQuotedBytes = 64;

std::string Quoted(absl::string_view name) {
  const absl::string_view shown = name.substr(0, kMaxQuotedBytes);
  return absl::StrCat("\"", absl::CHexEscape(shown), "\"",
                      name.size() > shown.size() ? absl::StrCat(" (", name.size(), " bytes)") : "");
}

absl::Status CheckPoolName(const std::string& name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: ", Quoted(name), " must be 1 to 64 characters of [A-Za-z0-9_.-]"));
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("name: ", Quoted(name), " must be 1 to 64 characters of [A-Za-z0-9_.-]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Pool::Pool(std::string name, LayoutDesc layout, int64_t num_blocks, std::string gpu_uuid,
           std::shared_ptr<Memory> memory, std::vector<Budget::Charge> charges)
    : name_(std::move(name)),
      layout_(layout),
      num_blocks_(num_blocks),
      gpu_uuid_(std::move(gpu_uuid)),
      memory_(std::move(memory)),
      charges_(std::move(charges)),
      in_use_(static_cast<size_t>(num_blocks), false) {
  const int64_t slots = AddressesPerBlock(layout_.kind, layout_.shape);
  const int64_t slot_bytes = BytesPerAddress(layout_.kind, layout_.shape, DTypeSize(layout_.dtype));
  addresses_.resize(static_cast<size_t>(num_blocks_ * slots));
  segments_.assign(addresses_.size(), 0);
  for (int64_t i = 0; i < num_blocks_ * slots; ++i) {
    addresses_[i] = memory_->base() + static_cast<uint64_t>(i * slot_bytes);
  }
  block_bytes_ = static_cast<uint64_t>(slots * slot_bytes);
  for (int64_t e = 0; e < slots; ++e) {
    strided_bases_.push_back(memory_->base() + static_cast<uint64_t>(e * slot_bytes));
  }
  strided_segments_.assign(strided_bases_.size(), 0);
}

Placement Pool::placement() const {
  return Placement{memory_->place(), memory_->device(), memory_->gpu_visible()};
}

int64_t Pool::MetadataBytes(int64_t num_blocks) {
  // One 8-byte address and one 4-byte segment per block, one bit of allocation state.
  return num_blocks * 12 + (num_blocks + 7) / 8;
}

absl::StatusOr<std::vector<uint32_t>> Pool::Allocate(int64_t count) {
  if (count < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("count: ", count, " is outside [1, ", num_blocks_, "]"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (count > num_blocks_ - used_) {
    return absl::ResourceExhaustedError(absl::StrCat("pool ", name_, ": count ", count,
                                                     " blocks requested, ", num_blocks_ - used_,
                                                     " of ", num_blocks_, " free"));
  }
  std::vector<uint32_t> ids;
  ids.reserve(static_cast<size_t>(count));
  for (int64_t b = 0; b < num_blocks_ && static_cast<int64_t>(ids.size()) < count; ++b) {
    if (!in_use_[b]) {
      in_use_[b] = true;
      ids.push_back(static_cast<uint32_t>(b));
    }
  }
  used_ += count;
  return ids;
}

absl::Status Pool::Free(const std::vector<uint32_t>& ids) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<bool> seen(in_use_.size(), false);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= num_blocks_) {
      return absl::OutOfRangeError(absl::StrCat("block_ids[", i, "]: ", ids[i],
                                                " is outside [0, ", num_blocks_ - 1, "]"));
    }
    if (!in_use_[ids[i]] || seen[ids[i]]) {
      return absl::FailedPreconditionError(
          absl::StrCat("block_ids[", i, "]: block ", ids[i], " of pool ", name_,
                       " is not allocated"));
    }
    seen[ids[i]] = true;
  }
  for (uint32_t id : ids) in_use_[id] = false;
  used_ -= static_cast<int64_t>(ids.size());
  return absl::OkStatus();
}

v1::Pool Pool::ToProto() const {
  v1::Pool p;
  p.set_name(name_);
  *p.mutable_layout() = LayoutToProto(layout_);
  p.set_memory(memory_->place() == MemoryPlace::kDevice ? v1::MEMORY_DEVICE : v1::MEMORY_HOST);
  p.set_gpu_uuid(gpu_uuid_);
  p.set_num_blocks(static_cast<uint32_t>(num_blocks_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    p.set_blocks_in_use(static_cast<uint32_t>(used_));
  }
  p.set_bytes(memory_->size());
  return p;
}

std::unique_ptr<BudgetSet> MakeBudgetSet(const Budgets& b, const GpuRuntime& gpu) {
  std::vector<BudgetSet::Device> devices;
  for (const GpuDeviceInfo& d : gpu.devices()) {
    devices.push_back({d.ordinal, d.uuid,
                       static_cast<int64_t>(b.pool_device_fraction *
                                            static_cast<double>(d.total_memory))});
  }
  const int64_t host =
      static_cast<int64_t>(b.pool_host_fraction * static_cast<double>(b.host_ram_bytes));
  return std::make_unique<BudgetSet>(b.metadata_bytes, b.session_metadata_bytes, b.maps,
                                     b.session_maps, host, devices, b.session_pool_fraction);
}

absl::StatusOr<std::shared_ptr<Pool>> PoolTable::Create(const v1::CreatePoolRequest& request,
                                                        const PoolAccounts& accounts) {
  RETURN_IF_ERROR(CheckPoolName(request.name()));
  ASSIGN_OR_RETURN(const LayoutDesc layout, LayoutFromProto(request.layout(), "layout"));
  // One address per block: a stack's nl*no chunk addresses per block would make the table up
  // to 12 bytes of daemon memory per byte of pool (1-byte chunks).
  if (IsStack(layout.kind)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout.kind: ", v1::LayoutKind_Name(request.layout().kind()),
        " is a block stack; a pool holds one buffer per block: LAYOUT_UNIVERSAL, "
        "LAYOUT_OPERATIONAL_NHD or LAYOUT_OPERATIONAL_HND"));
  }
  if (request.num_blocks() == 0 || request.num_blocks() > kMaxPoolBlocks) {
    return absl::InvalidArgumentError(absl::StrCat("num_blocks: ", request.num_blocks(),
                                                   " is outside [1, ", kMaxPoolBlocks, "]"));
  }
  const uint64_t block_bytes = static_cast<uint64_t>(
      layout.shape.nl * layout.shape.no * layout.shape.nt * layout.shape.nh * layout.shape.hd *
      DTypeSize(layout.dtype));
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(block_bytes, uint64_t{request.num_blocks()}, &bytes) ||
      bytes > (uint64_t{1} << 46)) {
    return absl::InvalidArgumentError(absl::StrCat("num_blocks: ", request.num_blocks(),
                                                   " blocks of ", block_bytes,
                                                   " bytes exceeds 64 TiB"));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pools_.count(request.name()) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("name: pool \"", request.name(),
                                                   "\" already exists"));
    }
    if (static_cast<int>(pools_.size()) >= max_pools_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("pools: ", pools_.size(), " of at most ", max_pools_, " exist"));
    }
  }
  std::shared_ptr<Memory> memory;
  std::string uuid;
  std::vector<Budget::Charge> charges;
  const std::string what = absl::StrCat("pool ", Quoted(request.name()));
  ASSIGN_OR_RETURN(Budget::Charge metadata,
                   budgets_.metadata.Take(Pool::MetadataBytes(request.num_blocks()),
                                          absl::StrCat(what, " metadata"), accounts.metadata));
  charges.push_back(std::move(metadata));
  switch (request.memory()) {
    case v1::MEMORY_DEVICE: {
      if (gpu_.devices().empty()) {
        return absl::FailedPreconditionError("memory: MEMORY_DEVICE but this daemon has no GPU");
      }
      int ordinal = gpu_.devices().front().ordinal;
      uuid = gpu_.devices().front().uuid;
      if (!request.gpu_uuid().empty()) {
        ASSIGN_OR_RETURN(ordinal, gpu_.OrdinalOf(request.gpu_uuid()));
        uuid = request.gpu_uuid();
      }
      Budget* budget = budgets_.PoolDevice(ordinal);
      if (budget == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat("gpu_uuid: ", uuid, " has no pool budget"));
      }
      ASSIGN_OR_RETURN(Budget::Charge charge,
                       budget->Take(static_cast<int64_t>(bytes), absl::StrCat(what, " memory"),
                                    accounts.device ? accounts.device(ordinal) : nullptr));
      charges.push_back(std::move(charge));
      ASSIGN_OR_RETURN(memory, gpu_.AllocateDevice(ordinal, bytes));
      break;
    }
    case v1::MEMORY_HOST: {
      ASSIGN_OR_RETURN(Budget::Charge charge,
                       budgets_.pool_host.Take(static_cast<int64_t>(bytes),
                                               absl::StrCat(what, " memory"), accounts.host));
      charges.push_back(std::move(charge));
      ASSIGN_OR_RETURN(memory, gpu_.AllocateHost(bytes));
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "memory: ", static_cast<int>(request.memory()),
          " is not a memory kind; allowed: MEMORY_DEVICE (1), MEMORY_HOST (2)"));
  }
  auto pool = std::make_shared<Pool>(request.name(), layout, request.num_blocks(), uuid,
                                     std::move(memory), std::move(charges));
  std::lock_guard<std::mutex> lock(mu_);
  if (!pools_.emplace(request.name(), pool).second) {
    return absl::AlreadyExistsError(absl::StrCat("name: pool \"", request.name(),
                                                 "\" already exists"));
  }
  return pool;
}

absl::Status PoolTable::Destroy(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pools_.erase(name) == 0) {
    return absl::NotFoundError(absl::StrCat("name: pool ", Quoted(name), " does not exist"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Pool>> PoolTable::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) {
    return absl::NotFoundError(absl::StrCat("pool: ", Quoted(name), " does not exist"));
  }
  return it->second;
}

std::vector<std::shared_ptr<Pool>> PoolTable::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Pool>> out;
  for (const auto& [name, pool] : pools_) out.push_back(pool);
  return out;
}

}  // namespace kvshuttle
