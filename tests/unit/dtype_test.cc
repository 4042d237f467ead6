// Sizes, names and parsing of the element types (core/dtype.h).
#include "core/dtype.h"

#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

struct Expected {
  DType dtype;
  int size;
  const char* name;
};

constexpr Expected kAll[] = {
    {DType::kF16, 2, "f16"},   {DType::kBF16, 2, "bf16"},       {DType::kF32, 4, "f32"},
    {DType::kF64, 8, "f64"},   {DType::kF8E4M3, 1, "fp8_e4m3"}, {DType::kF8E5M2, 1, "fp8_e5m2"},
    {DType::kInt8, 1, "int8"}, {DType::kUInt8, 1, "uint8"},
};

TEST(DTypeTest, CountMatchesEnum) {
  EXPECT_EQ(kNumDTypes, 8);
  EXPECT_EQ(static_cast<int>(DType::kUInt8), kNumDTypes - 1);
}

TEST(DTypeTest, SizesAndNames) {
  for (const Expected& e : kAll) {
    SCOPED_TRACE(e.name);
    EXPECT_EQ(DTypeSize(e.dtype), e.size);
    EXPECT_EQ(DTypeName(e.dtype), e.name);
  }
}

TEST(DTypeTest, ParsesCanonicalNamesRoundTrip) {
  for (const Expected& e : kAll) {
    SCOPED_TRACE(e.name);
    absl::StatusOr<DType> parsed = ParseDType(e.name);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, e.dtype);
    EXPECT_EQ(ParseDType(DTypeName(e.dtype)).value(), e.dtype);
  }
}

TEST(DTypeTest, ParsesAliases) {
  const std::pair<const char*, DType> aliases[] = {
      {"float16", DType::kF16}, {"half", DType::kF16},    {"bfloat16", DType::kBF16},
      {"float32", DType::kF32}, {"float", DType::kF32},   {"float64", DType::kF64},
      {"double", DType::kF64},  {"e4m3", DType::kF8E4M3}, {"e5m2", DType::kF8E5M2},
      {"i8", DType::kInt8},     {"u8", DType::kUInt8},
  };
  for (const auto& [alias, dtype] : aliases) {
    SCOPED_TRACE(alias);
    absl::StatusOr<DType> parsed = ParseDType(alias);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, dtype);
  }
}

TEST(DTypeTest, ParseIsCaseInsensitive) {
  EXPECT_EQ(ParseDType("BF16").value(), DType::kBF16);
  EXPECT_EQ(ParseDType("Float16").value(), DType::kF16);
  EXPECT_EQ(ParseDType("FP8_E5M2").value(), DType::kF8E5M2);
}

TEST(DTypeTest, UnknownNameIsInvalidArgumentNamingValueAndAllowed) {
  for (const char* bad : {"f8", "float128", "", "bf16 ", "int4", "uint16"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<DType> parsed = ParseDType(bad);
    EXPECT_TRUE(HasStatus(parsed, absl::StatusCode::kInvalidArgument,
                          {"dtype", std::string("\"") + bad + "\"", "allowed",
                           "f16, bf16, f32, f64, fp8_e4m3, fp8_e5m2, int8, uint8"}));
  }
}

}  // namespace
}  // namespace kvshuttle
