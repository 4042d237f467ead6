// What one conversion job moves: the two sides, the head/layer ranges, the tokens per block
// pair, and the pure validation that turns a user's spec into a resolved one.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/layout.h"

namespace kvshuttle {

// Largest accepted value of any one dimension.
inline constexpr int64_t kMaxDim = int64_t{1} << 24;
// Largest accepted chunk (nt*nh*hd*es) in bytes: kernels index a chunk with 32-bit numbers.
inline constexpr int64_t kMaxChunkBytes = (int64_t{1} << 31) - 1;
// Largest accepted block in bytes (keeps every in-block offset far from 64-bit overflow).
inline constexpr int64_t kMaxBlockBytes = int64_t{1} << 48;

// A sub-range of one axis: `count` items starting at `src_offset` on the source and at
// `dst_offset` on the destination. count 0 means "all source items from src_offset on".
struct AxisRange {
  int64_t src_offset = 0;
  int64_t dst_offset = 0;
  int64_t count = 0;

  friend constexpr bool operator==(const AxisRange&, const AxisRange&) = default;
};

// A conversion between two layouts. hd, no and dtype must match; nl, nt and nh may differ and
// are bridged by the ranges. Token offsets are per block pair (BlockPair).
struct TransferSpec {
  LayoutDesc src;
  LayoutDesc dst;
  AxisRange heads;          // heads moved, offsets into each side's nh
  AxisRange layers;         // layers moved, offsets into each side's nl
  int64_t token_count = 0;  // tokens moved per pair; 0 = all of src.shape.nt

  friend constexpr bool operator==(const TransferSpec&, const TransferSpec&) = default;
};

// One source block → one destination block, with the first token used on each side.
struct BlockPair {
  int64_t src_block = 0;
  int64_t dst_block = 0;
  int64_t src_token_offset = 0;
  int64_t dst_token_offset = 0;
};

// Checks one side on its own. `side` ("src" or "dst") prefixes field names in messages, e.g.
// "src.shape.nh: 0 is outside [1, 16777216]". INVALID_ARGUMENT on any failure.
absl::Status ValidateLayout(const LayoutDesc& desc, absl::string_view side);

// Validates `spec` and returns it with every count resolved (no zeros left). INVALID_ARGUMENT
// for malformed sides or mismatched dtype/hd/no, OUT_OF_RANGE for ranges that leave either side.
absl::StatusOr<TransferSpec> ResolveSpec(const TransferSpec& spec);

// Checks one pair of a resolved spec against the block counts of both sides. OUT_OF_RANGE
// naming `pairs[index]` and the field when a block id or token range is outside its side.
absl::Status ValidatePair(const TransferSpec& resolved, const BlockPair& pair, int64_t index,
                          int64_t src_num_blocks, int64_t dst_num_blocks);

}  // namespace kvshuttle
