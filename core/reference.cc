// Naive element-wise reference converter.
#include "core/reference.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace kvshuttle {
namespace {

absl::StatusOr<int64_t> BlockCount(absl::string_view side, const LayoutDesc& desc,
                                   absl::Span<const uint64_t> addresses) {
  const int64_t per_block = IsStack(desc.kind) ? desc.shape.nl * desc.shape.no : 1;
  if (addresses.size() % per_block != 0) {
    return absl::InvalidArgumentError(absl::StrCat(side, "_addresses: size ", addresses.size(),
                                                   " is not a multiple of ", per_block));
  }
  return static_cast<int64_t>(addresses.size()) / per_block;
}

}  // namespace

ElementLocation LocateElement(const LayoutDesc& desc, int64_t l, int64_t o, int64_t t, int64_t h,
                              int64_t d) {
  const BlockShape& s = desc.shape;
  const int64_t es = DTypeSize(desc.dtype);
  switch (desc.kind) {
    case LayoutKind::kNHDStack:
      return {l * s.no + o, NhdChunkOffset(s, t, h, d) * es};
    case LayoutKind::kHNDStack:
      return {l * s.no + o, HndChunkOffset(s, t, h, d) * es};
    case LayoutKind::kOperationalNHD:
      return {0, OperationalOffset(s, /*hnd_inner=*/false, l, o, t, h, d) * es};
    case LayoutKind::kOperationalHND:
      return {0, OperationalOffset(s, /*hnd_inner=*/true, l, o, t, h, d) * es};
    case LayoutKind::kUniversal:
      return {0, UniversalOffset(s, l, o, t, h, d) * es};
  }
  return {};
}

absl::Status ReferenceConvert(const TransferSpec& spec, absl::Span<const uint64_t> src_addresses,
                              absl::Span<const uint64_t> dst_addresses,
                              absl::Span<const BlockPair> pairs, int num_threads) {
  ASSIGN_OR_RETURN(const TransferSpec r, ResolveSpec(spec));
  ASSIGN_OR_RETURN(const int64_t src_blocks, BlockCount("src", r.src, src_addresses));
  ASSIGN_OR_RETURN(const int64_t dst_blocks, BlockCount("dst", r.dst, dst_addresses));
  for (size_t i = 0; i < pairs.size(); ++i) {
    RETURN_IF_ERROR(ValidatePair(r, pairs[i], static_cast<int64_t>(i), src_blocks, dst_blocks));
  }
  const int64_t es = DTypeSize(r.src.dtype);
  const int64_t src_per_block = IsStack(r.src.kind) ? r.src.shape.nl * r.src.shape.no : 1;
  const int64_t dst_per_block = IsStack(r.dst.kind) ? r.dst.shape.nl * r.dst.shape.no : 1;

  auto convert_pair = [&](const BlockPair& p) {
    for (int64_t l = 0; l < r.layers.count; ++l) {
      for (int64_t o = 0; o < r.src.shape.no; ++o) {
        for (int64_t h = 0; h < r.heads.count; ++h) {
          for (int64_t t = 0; t < r.token_count; ++t) {
            for (int64_t d = 0; d < r.src.shape.hd; ++d) {
              const ElementLocation from =
                  LocateElement(r.src, r.layers.src_offset + l, o, p.src_token_offset + t,
                                r.heads.src_offset + h, d);
              const ElementLocation to =
                  LocateElement(r.dst, r.layers.dst_offset + l, o, p.dst_token_offset + t,
                                r.heads.dst_offset + h, d);
              const uint64_t src = src_addresses[p.src_block * src_per_block + from.slot] +
                                   static_cast<uint64_t>(from.byte_offset);
              const uint64_t dst = dst_addresses[p.dst_block * dst_per_block + to.slot] +
                                   static_cast<uint64_t>(to.byte_offset);
              std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                          static_cast<size_t>(es));
            }
          }
        }
      }
    }
  };

  const size_t n = pairs.size();
  const size_t threads =
      num_threads <= 1 ? 1 : std::min<size_t>(num_threads, std::max<size_t>(n, 1));
  std::vector<std::thread> pool;
  for (size_t th = 0; th < threads; ++th) {
    pool.emplace_back([&, th] {
      for (size_t k = n * th / threads; k < n * (th + 1) / threads; ++k) convert_pair(pairs[k]);
    });
  }
  for (std::thread& th : pool) th.join();
  return absl::OkStatus();
}

}  // namespace kvshuttle
