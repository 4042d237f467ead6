// KV-cache block layouts as value types, with their index math written once, `constexpr`, and
// callable from host and device code (see DESIGN §1).
//
// One block holds nl layers × no outer chunks (2 = K,V; 1 = MLA latent) × nt tokens × nh heads ×
// hd elements. In every layout the hd elements of one (layer, outer, head, token) are contiguous:
// we call that a *row*. A layout is therefore fully described by where each row starts:
//
//   row(l, o, h, t) = chunk_base(l, o) + h * head_stride + t * token_stride
//
// where chunk_base comes from a per-block pointer table for the stacks and from
// block_base + l * layer_stride + o * outer_stride for the contiguous layouts.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "core/host_device.h"

namespace kvshuttle {

enum class LayoutKind : uint8_t {
  kNHDStack = 0,       // nl*no chunk addresses per block, each chunk [nt, nh, hd] (vLLM NHD)
  kHNDStack,           // nl*no chunk addresses per block, each chunk [nh, nt, hd] (vLLM HND)
  kOperationalNHD,     // one buffer [nl, no, nt*nh*hd], chunk order NHD (TensorRT-LLM)
  kOperationalHND,     // one buffer [nl, no, nh*nt*hd], chunk order HND
  kUniversal,          // one buffer [nh, nl, no, nt, hd] (heads first)
};

inline constexpr int kNumLayoutKinds = 5;

// Canonical names: "nhd", "hnd", "operational_nhd", "operational_hnd", "universal".
absl::string_view LayoutKindName(LayoutKind kind);

// Parses a canonical name; also accepts "operational" (= operational_nhd). Unknown names →
// INVALID_ARGUMENT listing the accepted ones.
absl::StatusOr<LayoutKind> ParseLayoutKind(absl::string_view name);

// True for the two block stacks, whose blocks are nl*no separately addressed chunks.
KVS_HD constexpr bool IsStack(LayoutKind kind) {
  return kind == LayoutKind::kNHDStack || kind == LayoutKind::kHNDStack;
}

// True when a chunk stores tokens outermost ([nt, nh, hd]).
KVS_HD constexpr bool IsTokenMajorChunk(LayoutKind kind) {
  return kind == LayoutKind::kNHDStack || kind == LayoutKind::kOperationalNHD;
}

// Dimensions of one KV block, all counted in elements. Valid shapes have every dimension ≥ 1
// (ValidateShape); products are computed in 64 bits.
struct BlockShape {
  int64_t nl = 1;  // layers
  int64_t no = 1;  // outer chunks: 2 = K and V, 1 = MLA latent cache
  int64_t nt = 1;  // tokens per block
  int64_t nh = 1;  // KV heads
  int64_t hd = 1;  // head dimension

  friend constexpr bool operator==(const BlockShape&, const BlockShape&) = default;
};

// One side of a conversion: layout kind, block shape and element type.
struct LayoutDesc {
  LayoutKind kind = LayoutKind::kNHDStack;
  BlockShape shape;
  DType dtype = DType::kF16;

  friend constexpr bool operator==(const LayoutDesc&, const LayoutDesc&) = default;
};

// Byte strides of a layout (see the file comment). For stacks layer/outer strides are 0: the
// chunk base comes from the pointer table at index l * no + o.
struct RowStrides {
  int64_t row_bytes = 0;     // hd * element size
  int64_t head_stride = 0;   // bytes between heads h and h+1 of one chunk
  int64_t token_stride = 0;  // bytes between tokens t and t+1 of one chunk
  int64_t layer_stride = 0;  // bytes between layers of a contiguous block (0 for stacks)
  int64_t outer_stride = 0;  // bytes between outer chunks of a contiguous block (0 for stacks)
};

// Strides of `kind` for shape `s` and element size `es`. Precondition: the shape is valid.
// Example: universal bf16 (nl 2, no 2, nt 16, nh 8, hd 128) → row 256, head 16384, token 256,
// layer 8192, outer 4096.
KVS_HD constexpr RowStrides StridesOf(LayoutKind kind, const BlockShape& s, int64_t es) {
  RowStrides r;
  r.row_bytes = s.hd * es;
  const int64_t chunk_bytes = s.nt * s.nh * s.hd * es;
  if (IsTokenMajorChunk(kind)) {
    r.head_stride = r.row_bytes;
    r.token_stride = s.nh * r.row_bytes;
  } else if (kind == LayoutKind::kUniversal) {
    r.token_stride = r.row_bytes;
    r.head_stride = s.nl * s.no * s.nt * r.row_bytes;
  } else {  // HND chunk
    r.token_stride = r.row_bytes;
    r.head_stride = s.nt * r.row_bytes;
  }
  if (kind == LayoutKind::kOperationalNHD || kind == LayoutKind::kOperationalHND) {
    r.outer_stride = chunk_bytes;
    r.layer_stride = s.no * chunk_bytes;
  } else if (kind == LayoutKind::kUniversal) {
    r.outer_stride = s.nt * r.row_bytes;
    r.layer_stride = s.no * s.nt * r.row_bytes;
  }
  return r;
}

// Number of separately addressed pieces of one block: nl*no for stacks, 1 otherwise.
KVS_HD constexpr int64_t AddressesPerBlock(LayoutKind kind, const BlockShape& s) {
  return IsStack(kind) ? s.nl * s.no : 1;
}

// Bytes of one addressed piece: a chunk (nt*nh*hd*es) for stacks, the whole block otherwise.
KVS_HD constexpr int64_t BytesPerAddress(LayoutKind kind, const BlockShape& s, int64_t es) {
  const int64_t chunk = s.nt * s.nh * s.hd * es;
  return IsStack(kind) ? chunk : s.nl * s.no * chunk;
}

// The obvious definitions, in elements, straight from the logical shapes in DESIGN §1. They are
// the reference the stride form above is tested against.

// Offset of (t, h, d) inside an NHD chunk [nt, nh, hd].
KVS_HD constexpr int64_t NhdChunkOffset(const BlockShape& s, int64_t t, int64_t h, int64_t d) {
  return (t * s.nh + h) * s.hd + d;
}

// Offset of (t, h, d) inside an HND chunk [nh, nt, hd].
KVS_HD constexpr int64_t HndChunkOffset(const BlockShape& s, int64_t t, int64_t h, int64_t d) {
  return (h * s.nt + t) * s.hd + d;
}

// Offset of (l, o, t, h, d) inside an operational block [nl, no, inner].
KVS_HD constexpr int64_t OperationalOffset(const BlockShape& s, bool hnd_inner, int64_t l,
                                           int64_t o, int64_t t, int64_t h, int64_t d) {
  const int64_t inner = s.nt * s.nh * s.hd;
  return (l * s.no + o) * inner +
         (hnd_inner ? HndChunkOffset(s, t, h, d) : NhdChunkOffset(s, t, h, d));
}

// Offset of (l, o, t, h, d) inside a universal block [nh, nl, no, nt, hd].
KVS_HD constexpr int64_t UniversalOffset(const BlockShape& s, int64_t l, int64_t o, int64_t t,
                                         int64_t h, int64_t d) {
  return (((h * s.nl + l) * s.no + o) * s.nt + t) * s.hd + d;
}

}  // namespace kvshuttle
