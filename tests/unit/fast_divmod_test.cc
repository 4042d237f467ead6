// FastDivmod (core/fast_divmod.h) against hardware division, over small and large divisors and
// numerators, including the uint32 extremes.
#include "core/fast_divmod.h"

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvshuttle {
namespace {

constexpr uint32_t kMax = std::numeric_limits<uint32_t>::max();

// Checks Div and Mod of every numerator; reports only the first mismatch per divisor so that a
// broken implementation fails quickly and readably.
void CheckDivisor(uint32_t d, const std::vector<uint32_t>& numerators) {
  const FastDivmod f(d);
  ASSERT_EQ(f.divisor, d);
  for (uint32_t n : numerators) {
    if (f.Div(n) != n / d || f.Mod(n) != n % d) {
      ADD_FAILURE() << n << " / " << d << ": got " << f.Div(n) << " rem " << f.Mod(n) << ", want "
                    << n / d << " rem " << n % d << " (multiplier " << f.multiplier << ", shift "
                    << f.shift << ")";
      return;
    }
  }
}

// Numerators that stress a divisor: the uint32 extremes, values around multiples of d near
// the top of the range, and `random_count` fixed-seed random values.
std::vector<uint32_t> LargeNumerators(uint32_t d, std::mt19937& rng, int random_count) {
  std::vector<uint32_t> v = {
      kMax,  kMax - 1, uint32_t{1} << 31, (uint32_t{1} << 31) - 1, (uint32_t{1} << 31) + 1, 0, 1,
      d - 1, d};
  if (d < kMax) v.push_back(d + 1);
  const uint32_t top = kMax / d * d;  // largest multiple of d
  for (uint32_t delta : {0u, 1u, 2u}) {
    if (top >= delta) v.push_back(top - delta);
    if (top <= kMax - delta) v.push_back(top + delta);
  }
  std::uniform_int_distribution<uint32_t> any(0, kMax);
  for (int i = 0; i < random_count; ++i) v.push_back(any(rng));
  return v;
}

TEST(FastDivmodTest, DocumentedExample) {
  const FastDivmod f(7);
  EXPECT_EQ(f.Div(50), 7u);
  EXPECT_EQ(f.Mod(50), 1u);
}

TEST(FastDivmodTest, DefaultConstructedDividesByOne) {
  const FastDivmod f;
  EXPECT_EQ(f.divisor, 1u);
  EXPECT_EQ(f.Div(kMax), kMax);
  EXPECT_EQ(f.Mod(kMax), 0u);
  EXPECT_EQ(f.Div(12345), 12345u);
}

TEST(FastDivmodTest, SmallDivisorsSmallNumerators) {
  std::vector<uint32_t> numerators(5001);
  for (uint32_t n = 0; n <= 5000; ++n) numerators[n] = n;
  for (uint32_t d = 1; d <= 2000; ++d) {
    CheckDivisor(d, numerators);
    if (HasFailure()) return;
  }
}

TEST(FastDivmodTest, SmallDivisorsLargeNumerators) {
  std::mt19937 rng(20240611);
  for (uint32_t d = 1; d <= 2000; ++d) {
    CheckDivisor(d, LargeNumerators(d, rng, 500));
    if (HasFailure()) return;
  }
}

TEST(FastDivmodTest, LargeDivisors) {
  std::mt19937 rng(7);
  std::vector<uint32_t> divisors = {uint32_t{1} << 31,
                                    (uint32_t{1} << 31) + 1,
                                    (uint32_t{1} << 31) - 1,
                                    kMax,
                                    kMax - 1,
                                    65537,
                                    65535,
                                    3221225473u /* 3*2^30 + 1 */};
  for (int k = 0; k < 32; ++k) {
    const uint32_t p = uint32_t{1} << k;
    divisors.push_back(p);
    divisors.push_back(p + 1);
    if (p > 1) divisors.push_back(p - 1);
  }
  std::uniform_int_distribution<uint32_t> any(1, kMax);
  std::uniform_int_distribution<uint32_t> high(uint32_t{1} << 31, kMax);
  for (int i = 0; i < 300; ++i) divisors.push_back(any(rng));
  for (int i = 0; i < 300; ++i) divisors.push_back(high(rng));
  for (uint32_t d : divisors) {
    CheckDivisor(d, LargeNumerators(d, rng, 2000));
    if (HasFailure()) return;
  }
}

TEST(FastDivmodTest, ShiftIsCeilLog2) {
  EXPECT_EQ(FastDivmod(1).shift, 0u);
  EXPECT_EQ(FastDivmod(2).shift, 1u);
  EXPECT_EQ(FastDivmod(3).shift, 2u);
  EXPECT_EQ(FastDivmod(1024).shift, 10u);
  EXPECT_EQ(FastDivmod(1025).shift, 11u);
  EXPECT_EQ(FastDivmod(uint32_t{1} << 31).shift, 31u);
  EXPECT_EQ(FastDivmod(kMax).shift, 32u);
}

}  // namespace
}  // namespace kvshuttle
