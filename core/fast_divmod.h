// Division and remainder by a run-time constant through a multiply and a shift, so kernels do
// no hardware division per element. Host and device callable.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace kvshuttle {

// Divides any uint32 numerator by a fixed divisor d ≥ 1 exactly (round-up method: with
// s = ceil(log2 d) and m = floor(2^32 (2^s - d) / d) + 1, n / d = (umulhi(n, m) + n) >> s).
// Example: FastDivmod(7).Div(50) == 7, .Mod(50) == 1.
struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t multiplier = 0;
  uint32_t shift = 0;

  FastDivmod() = default;
  KVS_HD explicit FastDivmod(uint32_t d) : divisor(d) {
    uint32_t s = 0;
    while (s < 32 && (uint64_t{1} << s) < d) ++s;
    shift = s;
    multiplier = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << s) - d)) / d + 1);
  }

  KVS_HD uint32_t Div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, multiplier);
#else
    const uint32_t hi = static_cast<uint32_t>((uint64_t{n} * multiplier) >> 32);
#endif
    return static_cast<uint32_t>((uint64_t{hi} + n) >> shift);
  }

  KVS_HD uint32_t Mod(uint32_t n) const { return n - Div(n) * divisor; }
};

}  // namespace kvshuttle
