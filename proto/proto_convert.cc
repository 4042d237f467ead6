// proto ⇄ core conversions.
#include "proto/proto_convert.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace kvshuttle {

absl::StatusOr<DType> DTypeFromProto(v1::DType dtype, absl::string_view field) {
  if (dtype <= v1::DTYPE_UNSPECIFIED || dtype > v1::DTYPE_UINT8) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", static_cast<int>(dtype), " (", v1::DType_Name(dtype),
        ") is not a dtype; allowed: DTYPE_F16 .. DTYPE_UINT8 (1..8)"));
  }
  return static_cast<DType>(static_cast<int>(dtype) - 1);
}

v1::DType DTypeToProto(DType dtype) { return static_cast<v1::DType>(static_cast<int>(dtype) + 1); }

absl::StatusOr<LayoutKind> LayoutKindFromProto(v1::LayoutKind kind, absl::string_view field) {
  if (kind <= v1::LAYOUT_UNSPECIFIED || kind > v1::LAYOUT_UNIVERSAL) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", static_cast<int>(kind), " (", v1::LayoutKind_Name(kind),
        ") is not a layout; allowed: LAYOUT_NHD .. LAYOUT_UNIVERSAL (1..5)"));
  }
  return static_cast<LayoutKind>(static_cast<int>(kind) - 1);
}

v1::LayoutKind LayoutKindToProto(LayoutKind kind) {
  return static_cast<v1::LayoutKind>(static_cast<int>(kind) + 1);
}

absl::StatusOr<LayoutDesc> LayoutFromProto(const v1::Layout& layout, absl::string_view field) {
  LayoutDesc out;
  ASSIGN_OR_RETURN(out.kind, LayoutKindFromProto(layout.kind(), absl::StrCat(field, ".kind")));
  ASSIGN_OR_RETURN(out.dtype, DTypeFromProto(layout.dtype(), absl::StrCat(field, ".dtype")));
  const v1::BlockShape& s = layout.shape();
  out.shape = BlockShape{s.nl(), s.no(), s.nt(), s.nh(), s.hd()};
  RETURN_IF_ERROR(ValidateLayout(out, field));
  return out;
}

v1::Layout LayoutToProto(const LayoutDesc& layout) {
  v1::Layout out;
  out.set_kind(LayoutKindToProto(layout.kind));
  out.set_dtype(DTypeToProto(layout.dtype));
  v1::BlockShape* s = out.mutable_shape();
  s->set_nl(static_cast<uint32_t>(layout.shape.nl));
  s->set_no(static_cast<uint32_t>(layout.shape.no));
  s->set_nt(static_cast<uint32_t>(layout.shape.nt));
  s->set_nh(static_cast<uint32_t>(layout.shape.nh));
  s->set_hd(static_cast<uint32_t>(layout.shape.hd));
  return out;
}

absl::StatusOr<Backend> BackendFromProto(v1::Backend backend, absl::string_view field) {
  if (backend < v1::BACKEND_AUTO || backend > v1::BACKEND_STAGED) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", static_cast<int>(backend),
        " is not a backend; allowed: BACKEND_AUTO, BACKEND_KERNEL, BACKEND_BATCH, BACKEND_ASYNC, "
        "BACKEND_STAGED"));
  }
  return static_cast<Backend>(static_cast<int>(backend));
}

v1::Backend BackendToProto(Backend backend) {
  return static_cast<v1::Backend>(static_cast<int>(backend));
}

AxisRange AxisRangeFromProto(const v1::AxisRange& range) {
  return AxisRange{range.src_offset(), range.dst_offset(), range.count()};
}

v1::AxisRange AxisRangeToProto(const AxisRange& range) {
  v1::AxisRange out;
  out.set_src_offset(static_cast<uint32_t>(range.src_offset));
  out.set_dst_offset(static_cast<uint32_t>(range.dst_offset));
  out.set_count(static_cast<uint32_t>(range.count));
  return out;
}

BlockPair BlockPairFromProto(const v1::BlockPair& pair) {
  return BlockPair{pair.src_block(), pair.dst_block(), pair.src_token_offset(),
                   pair.dst_token_offset()};
}

v1::BlockPair BlockPairToProto(const BlockPair& pair) {
  v1::BlockPair out;
  out.set_src_block(static_cast<uint32_t>(pair.src_block));
  out.set_dst_block(static_cast<uint32_t>(pair.dst_block));
  out.set_src_token_offset(static_cast<uint32_t>(pair.src_token_offset));
  out.set_dst_token_offset(static_cast<uint32_t>(pair.dst_token_offset));
  return out;
}

}  // namespace kvshuttle
