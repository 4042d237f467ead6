// Conversions between kvshuttle.v1 messages and core value types, shared by the daemon and the
// clients. Errors name the request field (e.g. "jobs[2].src_layout.dtype").
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/backend.h"
#include "core/transfer.h"
#include "kvshuttle/v1/kvshuttle.pb.h"

namespace kvshuttle {

// DTYPE_UNSPECIFIED or unknown values → INVALID_ARGUMENT naming `field`.
absl::StatusOr<DType> DTypeFromProto(v1::DType dtype, absl::string_view field);
v1::DType DTypeToProto(DType dtype);

absl::StatusOr<LayoutKind> LayoutKindFromProto(v1::LayoutKind kind, absl::string_view field);
v1::LayoutKind LayoutKindToProto(LayoutKind kind);

// Converts and validates a layout (ValidateLayout with `field` as the side name), so a missing
// shape or a zero dimension is reported as e.g. "layout.shape.nh: 0 is outside [1, 16777216]".
absl::StatusOr<LayoutDesc> LayoutFromProto(const v1::Layout& layout, absl::string_view field);
v1::Layout LayoutToProto(const LayoutDesc& layout);

absl::StatusOr<Backend> BackendFromProto(v1::Backend backend, absl::string_view field);
v1::Backend BackendToProto(Backend backend);

AxisRange AxisRangeFromProto(const v1::AxisRange& range);
v1::AxisRange AxisRangeToProto(const AxisRange& range);

BlockPair BlockPairFromProto(const v1::BlockPair& pair);
v1::BlockPair BlockPairToProto(const BlockPair& pair);

}  // namespace kvshuttle
