// Pure validation of conversion specs and block pairs.
#include "core/transfer.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace kvshuttle {
namespace {

absl::Status CheckDim(absl::string_view side, absl::string_view name, int64_t value) {
  if (value < 1 || value > kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat(side, ".shape.", name, ": ", value,
                                                   " is outside [1, ", kMaxDim, "]"));
  }
  return absl::OkStatus();
}

// Resolves one axis range against the source and destination extents of that axis.
absl::StatusOr<AxisRange> ResolveRange(absl::string_view axis, absl::string_view dim,
                                       const AxisRange& range, int64_t src_extent,
                                       int64_t dst_extent) {
  if (range.src_offset < 0 || range.src_offset >= src_extent) {
    return absl::OutOfRangeError(absl::StrCat(axis, ".src_offset: ", range.src_offset,
                                              " is outside [0, ", src_extent - 1,
                                              "] (src.shape.", dim, " = ", src_extent, ")"));
  }
  if (range.dst_offset < 0 || range.dst_offset >= dst_extent) {
    return absl::OutOfRangeError(absl::StrCat(axis, ".dst_offset: ", range.dst_offset,
                                              " is outside [0, ", dst_extent - 1,
                                              "] (dst.shape.", dim, " = ", dst_extent, ")"));
  }
  if (range.count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(axis, ".count: ", range.count, " is negative; use 0 for all"));
  }
  AxisRange out = range;
  if (out.count == 0) out.count = src_extent - range.src_offset;
  if (out.count > src_extent - range.src_offset) {
    return absl::OutOfRangeError(absl::StrCat(axis, ".count: ", out.count, " with src_offset ",
                                              range.src_offset, " exceeds src.shape.", dim, " = ",
                                              src_extent));
  }
  if (out.count > dst_extent - range.dst_offset) {
    return absl::OutOfRangeError(absl::StrCat(axis, ".count: ", out.count, " with dst_offset ",
                                              range.dst_offset, " exceeds dst.shape.", dim, " = ",
                                              dst_extent));
  }
  return out;
}

}  // namespace

absl::Status ValidateLayout(const LayoutDesc& desc, absl::string_view side) {
  if (static_cast<int>(desc.kind) >= kNumLayoutKinds) {
    return absl::InvalidArgumentError(absl::StrCat(side, ".kind: ", static_cast<int>(desc.kind),
                                                   " is outside [0, ", kNumLayoutKinds - 1, "]"));
  }
  if (static_cast<int>(desc.dtype) >= kNumDTypes) {
    return absl::InvalidArgumentError(absl::StrCat(side, ".dtype: ", static_cast<int>(desc.dtype),
                                                   " is outside [0, ", kNumDTypes - 1, "]"));
  }
  const BlockShape& s = desc.shape;
  RETURN_IF_ERROR(CheckDim(side, "nl", s.nl));
  RETURN_IF_ERROR(CheckDim(side, "no", s.no));
  RETURN_IF_ERROR(CheckDim(side, "nt", s.nt));
  RETURN_IF_ERROR(CheckDim(side, "nh", s.nh));
  RETURN_IF_ERROR(CheckDim(side, "hd", s.hd));
  // Each dimension is < 2^25, so each product of two fits; check the longer chains step by step.
  int64_t chunk = 0;
  int64_t block = 0;
  const int64_t es = DTypeSize(desc.dtype);
  if (__builtin_mul_overflow(s.nt * s.nh, s.hd * es, &chunk) || chunk > kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        side, ".shape: chunk bytes nt*nh*hd*es = ", s.nt, "*", s.nh, "*", s.hd, "*", es,
        " exceeds ", kMaxChunkBytes));
  }
  if (__builtin_mul_overflow(chunk, s.nl * s.no, &block) || block > kMaxBlockBytes) {
    return absl::InvalidArgumentError(absl::StrCat(side, ".shape: block bytes nl*no*", chunk,
                                                   " (nl ", s.nl, ", no ", s.no, ") exceeds ",
                                                   kMaxBlockBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<TransferSpec> ResolveSpec(const TransferSpec& spec) {
  RETURN_IF_ERROR(ValidateLayout(spec.src, "src"));
  RETURN_IF_ERROR(ValidateLayout(spec.dst, "dst"));
  if (spec.src.dtype != spec.dst.dtype) {
    return absl::InvalidArgumentError(absl::StrCat("dst.dtype: ", DTypeName(spec.dst.dtype),
                                                   " does not match src.dtype ",
                                                   DTypeName(spec.src.dtype)));
  }
  if (spec.src.shape.hd != spec.dst.shape.hd) {
    return absl::InvalidArgumentError(absl::StrCat("dst.shape.hd: ", spec.dst.shape.hd,
                                                   " does not match src.shape.hd ",
                                                   spec.src.shape.hd));
  }
  if (spec.src.shape.no != spec.dst.shape.no) {
    return absl::InvalidArgumentError(absl::StrCat("dst.shape.no: ", spec.dst.shape.no,
                                                   " does not match src.shape.no ",
                                                   spec.src.shape.no));
  }
  TransferSpec out = spec;
  ASSIGN_OR_RETURN(out.heads,
                   ResolveRange("heads", "nh", spec.heads, spec.src.shape.nh, spec.dst.shape.nh));
  ASSIGN_OR_RETURN(out.layers, ResolveRange("layers", "nl", spec.layers, spec.src.shape.nl,
                                            spec.dst.shape.nl));
  if (spec.token_count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_count: ", spec.token_count, " is negative; use 0 for all"));
  }
  out.token_count = spec.token_count == 0 ? spec.src.shape.nt : spec.token_count;
  const int64_t max_tokens = std::min(spec.src.shape.nt, spec.dst.shape.nt);
  if (out.token_count > max_tokens) {
    return absl::OutOfRangeError(absl::StrCat("token_count: ", out.token_count,
                                              " is outside [1, ", max_tokens,
                                              "] (min of src.shape.nt ", spec.src.shape.nt,
                                              " and dst.shape.nt ", spec.dst.shape.nt, ")"));
  }
  return out;
}

absl::Status ValidatePair(const TransferSpec& resolved, const BlockPair& pair, int64_t index,
                          int64_t src_num_blocks, int64_t dst_num_blocks) {
  const std::string where = absl::StrCat("pairs[", index, "]");
  if (pair.src_block < 0 || pair.src_block >= src_num_blocks) {
    return absl::OutOfRangeError(absl::StrCat(where, ".src_block: ", pair.src_block,
                                              " is outside [0, ", src_num_blocks - 1, "]"));
  }
  if (pair.dst_block < 0 || pair.dst_block >= dst_num_blocks) {
    return absl::OutOfRangeError(absl::StrCat(where, ".dst_block: ", pair.dst_block,
                                              " is outside [0, ", dst_num_blocks - 1, "]"));
  }
  const int64_t src_max = resolved.src.shape.nt - resolved.token_count;
  if (pair.src_token_offset < 0 || pair.src_token_offset > src_max) {
    return absl::OutOfRangeError(absl::StrCat(where, ".src_token_offset: ", pair.src_token_offset,
                                              " is outside [0, ", src_max, "] (src.shape.nt ",
                                              resolved.src.shape.nt, ", token_count ",
                                              resolved.token_count, ")"));
  }
  const int64_t dst_max = resolved.dst.shape.nt - resolved.token_count;
  if (pair.dst_token_offset < 0 || pair.dst_token_offset > dst_max) {
    return absl::OutOfRangeError(absl::StrCat(where, ".dst_token_offset: ", pair.dst_token_offset,
                                              " is outside [0, ", dst_max, "] (dst.shape.nt ",
                                              resolved.dst.shape.nt, ", token_count ",
                                              resolved.token_count, ")"));
  }
  return absl::OkStatus();
}

}  // namespace kvshuttle
