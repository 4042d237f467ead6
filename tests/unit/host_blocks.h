// Test helper: the blocks of one layout side in host memory, one guarded buffer per address
// (per chunk for stacks, per block otherwise), with the address table the plan builder takes.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "core/layout.h"

namespace kvshuttle::testing {

inline constexpr uint8_t kPoison = 0xCD;
// Bytes before and after every buffer; writes into them show up as differences.
inline constexpr int64_t kGuardBytes = 64;

inline DType DTypeOfSize(int64_t es) {
  switch (es) {
    case 1:
      return DType::kUInt8;
    case 2:
      return DType::kBF16;
    case 4:
      return DType::kF32;
    default:
      return DType::kF64;
  }
}

class HostBlocks {
 public:
  HostBlocks(const LayoutDesc& desc, int64_t num_blocks) {
    const int64_t per_block = AddressesPerBlock(desc.kind, desc.shape);
    const int64_t bytes = BytesPerAddress(desc.kind, desc.shape, DTypeSize(desc.dtype));
    buffers_.assign(num_blocks * per_block, std::vector<uint8_t>(bytes + 2 * kGuardBytes, kPoison));
    for (std::vector<uint8_t>& b : buffers_) {
      addresses_.push_back(reinterpret_cast<uint64_t>(b.data() + kGuardBytes));
    }
  }
  // Buffers are pinned by the address table: never copy or move.
  HostBlocks(const HostBlocks&) = delete;
  HostBlocks& operator=(const HostBlocks&) = delete;

  // Fills every byte (guards included) from a fixed-seed generator, avoiding kPoison so that a
  // destination byte equal to kPoison is known to be untouched.
  void FillRandom(uint32_t seed) {
    std::mt19937 rng(seed);
    for (std::vector<uint8_t>& b : buffers_) {
      for (uint8_t& x : b) {
        x = static_cast<uint8_t>(rng());
        if (x == kPoison) x = 0x5A;
      }
    }
  }

  const std::vector<uint64_t>& addresses() const { return addresses_; }
  const std::vector<std::vector<uint8_t>>& buffers() const { return buffers_; }

  // Number of bytes (guards included) that differ from kPoison.
  int64_t CountWritten() const {
    int64_t n = 0;
    for (const std::vector<uint8_t>& b : buffers_) {
      for (uint8_t x : b) n += x != kPoison;
    }
    return n;
  }

 private:
  std::vector<std::vector<uint8_t>> buffers_;
  std::vector<uint64_t> addresses_;
};

}  // namespace kvshuttle::testing
