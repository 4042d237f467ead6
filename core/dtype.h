// Element types of a KV cache. Conversions are byte-exact copies, so kernels only care about
// the element size; the dtype itself is recorded on both sides and must match.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace kvshuttle {

enum class DType : uint8_t {
  kF16 = 0,
  kBF16,
  kF32,
  kF64,
  kF8E4M3,
  kF8E5M2,
  kInt8,
  kUInt8,
};

inline constexpr int kNumDTypes = 8;

// Size of one element in bytes (1, 2, 4 or 8).
int DTypeSize(DType dtype);

// Canonical lower-case name: "f16", "bf16", "f32", "f64", "fp8_e4m3", "fp8_e5m2", "int8", "uint8".
absl::string_view DTypeName(DType dtype);

// Parses a canonical name (and the common aliases "float16", "half", "bfloat16", "float32",
// "float", "float64", "double", "e4m3", "e5m2", "u8", "i8"). Unknown names → INVALID_ARGUMENT
// listing the accepted ones.
absl::StatusOr<DType> ParseDType(absl::string_view name);

}  // namespace kvshuttle
