// Names and sizes of the element types.
#include "core/dtype.h"

#include <array>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kvshuttle {
namespace {

struct DTypeInfo {
  DType dtype;
  int size;
  absl::string_view name;
};

constexpr std::array<DTypeInfo, kNumDTypes> kInfo = {{
    {DType::kF16, 2, "f16"},
    {DType::kBF16, 2, "bf16"},
    {DType::kF32, 4, "f32"},
    {DType::kF64, 8, "f64"},
    {DType::kF8E4M3, 1, "fp8_e4m3"},
    {DType::kF8E5M2, 1, "fp8_e5m2"},
    {DType::kInt8, 1, "int8"},
    {DType::kUInt8, 1, "uint8"},
}};

struct Alias {
  absl::string_view alias;
  DType dtype;
};

constexpr std::array<Alias, 11> kAliases = {{
    {"float16", DType::kF16},
    {"half", DType::kF16},
    {"bfloat16", DType::kBF16},
    {"float32", DType::kF32},
    {"float", DType::kF32},
    {"float64", DType::kF64},
    {"double", DType::kF64},
    {"e4m3", DType::kF8E4M3},
    {"e5m2", DType::kF8E5M2},
    {"i8", DType::kInt8},
    {"u8", DType::kUInt8},
}};

}  // namespace

int DTypeSize(DType dtype) { return kInfo[static_cast<int>(dtype)].size; }

absl::string_view DTypeName(DType dtype) { return kInfo[static_cast<int>(dtype)].name; }

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (const DTypeInfo& info : kInfo) {
    if (lower == info.name) return info.dtype;
  }
  for (const Alias& alias : kAliases) {
    if (lower == alias.alias) return alias.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype: unknown value \"", name,
      "\"; allowed: f16, bf16, f32, f64, fp8_e4m3, fp8_e5m2, int8, uint8"));
}

}  // namespace kvshuttle
