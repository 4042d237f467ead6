// Layout index math (core/layout.h): the stride form against LocateElement (reference.h) and
// against an independent walk of each layout's storage order, plus names and block sizes.
#include "core/layout.h"

#include <string>
#include <vector>

#include "core/reference.h"
#include "gtest/gtest.h"
#include "tests/unit/host_blocks.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

constexpr LayoutKind kKinds[] = {LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                 LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND,
                                 LayoutKind::kUniversal};

using ::kvshuttle::testing::DTypeOfSize;

// Where the walk put each element: slot and element offset, indexed by the logical index
// (((l*no + o)*nt + t)*nh + h)*hd + d.
struct Walk {
  std::vector<int64_t> slot;
  std::vector<int64_t> offset;
};

int64_t LogicalIndex(const BlockShape& s, int64_t l, int64_t o, int64_t t, int64_t h, int64_t d) {
  return (((l * s.no + o) * s.nt + t) * s.nh + h) * s.hd + d;
}

// Visits the elements of one block in storage order (nested loops over the layout's logical
// shape, DESIGN §1), numbering them with a counter that restarts at every separate address.
Walk WalkStorageOrder(LayoutKind kind, const BlockShape& s) {
  const int64_t n = s.nl * s.no * s.nt * s.nh * s.hd;
  Walk w{std::vector<int64_t>(n, -1), std::vector<int64_t>(n, -1)};
  int64_t counter = 0;
  auto visit = [&](int64_t slot, int64_t l, int64_t o, int64_t t, int64_t h, int64_t d) {
    const int64_t i = LogicalIndex(s, l, o, t, h, d);
    w.slot[i] = slot;
    w.offset[i] = counter++;
  };
  switch (kind) {
    case LayoutKind::kNHDStack:  // [nl][no][nt, nh, hd]
      for (int64_t l = 0; l < s.nl; ++l)
        for (int64_t o = 0; o < s.no; ++o) {
          counter = 0;
          for (int64_t t = 0; t < s.nt; ++t)
            for (int64_t h = 0; h < s.nh; ++h)
              for (int64_t d = 0; d < s.hd; ++d) visit(l * s.no + o, l, o, t, h, d);
        }
      break;
    case LayoutKind::kHNDStack:  // [nl][no][nh, nt, hd]
      for (int64_t l = 0; l < s.nl; ++l)
        for (int64_t o = 0; o < s.no; ++o) {
          counter = 0;
          for (int64_t h = 0; h < s.nh; ++h)
            for (int64_t t = 0; t < s.nt; ++t)
              for (int64_t d = 0; d < s.hd; ++d) visit(l * s.no + o, l, o, t, h, d);
        }
      break;
    case LayoutKind::kOperationalNHD:  // [nl, no, nt, nh, hd]
      for (int64_t l = 0; l < s.nl; ++l)
        for (int64_t o = 0; o < s.no; ++o)
          for (int64_t t = 0; t < s.nt; ++t)
            for (int64_t h = 0; h < s.nh; ++h)
              for (int64_t d = 0; d < s.hd; ++d) visit(0, l, o, t, h, d);
      break;
    case LayoutKind::kOperationalHND:  // [nl, no, nh, nt, hd]
      for (int64_t l = 0; l < s.nl; ++l)
        for (int64_t o = 0; o < s.no; ++o)
          for (int64_t h = 0; h < s.nh; ++h)
            for (int64_t t = 0; t < s.nt; ++t)
              for (int64_t d = 0; d < s.hd; ++d) visit(0, l, o, t, h, d);
      break;
    case LayoutKind::kUniversal:  // [nh, nl, no, nt, hd]
      for (int64_t h = 0; h < s.nh; ++h)
        for (int64_t l = 0; l < s.nl; ++l)
          for (int64_t o = 0; o < s.no; ++o)
            for (int64_t t = 0; t < s.nt; ++t)
              for (int64_t d = 0; d < s.hd; ++d) visit(0, l, o, t, h, d);
      break;
  }
  return w;
}

// (nh, nl, no, nt, hd) written in that order to match the seed's notation.
BlockShape Shape(int64_t nh, int64_t nl, int64_t no, int64_t nt, int64_t hd) {
  return BlockShape{.nl = nl, .no = no, .nt = nt, .nh = nh, .hd = hd};
}

const std::vector<BlockShape>& SmallShapes() {
  static const std::vector<BlockShape> shapes = {
      Shape(3, 2, 2, 4, 5),                        // the seed's shape
      Shape(1, 1, 1, 1, 1), Shape(2, 1, 2, 3, 4),  // nl 1
      Shape(2, 3, 1, 2, 3),                        // no 1
      Shape(3, 2, 2, 1, 5),                        // nt 1
      Shape(1, 2, 2, 4, 3),                        // nh 1
      Shape(4, 2, 2, 3, 1),                        // hd 1
      Shape(1, 2, 1, 2, 7),                        // MLA-like, odd hd
      Shape(5, 3, 2, 2, 6),
  };
  return shapes;
}

TEST(LayoutIndexTest, StrideFormMatchesLocateElementAndStorageWalk) {
  int64_t checked = 0;
  for (LayoutKind kind : kKinds) {
    for (const BlockShape& s : SmallShapes()) {
      const Walk walk = WalkStorageOrder(kind, s);
      for (int es : {1, 2, 4, 8}) {
        SCOPED_TRACE(::testing::Message()
                     << LayoutKindName(kind) << " nh " << s.nh << " nl " << s.nl << " no " << s.no
                     << " nt " << s.nt << " hd " << s.hd << " es " << es);
        const LayoutDesc desc{kind, s, DTypeOfSize(es)};
        const RowStrides r = StridesOf(kind, s, es);
        ASSERT_EQ(r.row_bytes, s.hd * es);
        if (IsStack(kind)) {
          ASSERT_EQ(r.layer_stride, 0);
          ASSERT_EQ(r.outer_stride, 0);
        }
        const int64_t slots = AddressesPerBlock(kind, s);
        const int64_t slot_bytes = BytesPerAddress(kind, s, es);
        std::vector<std::vector<int>> cover(slots, std::vector<int>(slot_bytes, 0));
        for (int64_t l = 0; l < s.nl; ++l)
          for (int64_t o = 0; o < s.no; ++o)
            for (int64_t t = 0; t < s.nt; ++t)
              for (int64_t h = 0; h < s.nh; ++h)
                for (int64_t d = 0; d < s.hd; ++d) {
                  const int64_t slot = IsStack(kind) ? l * s.no + o : 0;
                  const int64_t base = IsStack(kind) ? 0 : l * r.layer_stride + o * r.outer_stride;
                  const int64_t off = base + h * r.head_stride + t * r.token_stride + d * es;
                  const ElementLocation loc = LocateElement(desc, l, o, t, h, d);
                  const int64_t i = LogicalIndex(s, l, o, t, h, d);
                  ASSERT_EQ(loc.slot, slot) << "l " << l << " o " << o << " t " << t;
                  ASSERT_EQ(loc.byte_offset, off)
                      << "l " << l << " o " << o << " t " << t << " h " << h << " d " << d;
                  ASSERT_EQ(walk.slot[i], slot);
                  ASSERT_EQ(walk.offset[i] * es, off)
                      << "l " << l << " o " << o << " t " << t << " h " << h << " d " << d;
                  ASSERT_GE(off, 0);
                  ASSERT_LE(off + es, slot_bytes);
                  for (int b = 0; b < es; ++b) ++cover[slot][off + b];
                  ++checked;
                }
        for (int64_t slot = 0; slot < slots; ++slot) {
          for (int64_t b = 0; b < slot_bytes; ++b) {
            ASSERT_EQ(cover[slot][b], 1) << "slot " << slot << " byte " << b;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 10000);
}

TEST(LayoutIndexTest, SeedShapeStridesByHand) {
  const BlockShape s = Shape(3, 2, 2, 4, 5);  // bf16: row 10 bytes, chunk 120, block 480
  struct Want {
    LayoutKind kind;
    int64_t head, token, layer, outer;
  };
  const Want wants[] = {
      {LayoutKind::kNHDStack, 10, 30, 0, 0},
      {LayoutKind::kHNDStack, 40, 10, 0, 0},
      {LayoutKind::kOperationalNHD, 10, 30, 240, 120},
      {LayoutKind::kOperationalHND, 40, 10, 240, 120},
      {LayoutKind::kUniversal, 160, 10, 80, 40},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(LayoutKindName(w.kind));
    const RowStrides r = StridesOf(w.kind, s, 2);
    EXPECT_EQ(r.row_bytes, 10);
    EXPECT_EQ(r.head_stride, w.head);
    EXPECT_EQ(r.token_stride, w.token);
    EXPECT_EQ(r.layer_stride, w.layer);
    EXPECT_EQ(r.outer_stride, w.outer);
    EXPECT_EQ(AddressesPerBlock(w.kind, s), IsStack(w.kind) ? 4 : 1);
    EXPECT_EQ(BytesPerAddress(w.kind, s, 2), IsStack(w.kind) ? 120 : 480);
  }
}

TEST(LayoutIndexTest, DocumentedUniversalExampleIsConstexpr) {
  constexpr RowStrides r = StridesOf(LayoutKind::kUniversal,
                                     BlockShape{.nl = 2, .no = 2, .nt = 16, .nh = 8, .hd = 128}, 2);
  static_assert(r.row_bytes == 256 && r.head_stride == 16384 && r.token_stride == 256 &&
                r.layer_stride == 8192 && r.outer_stride == 4096);
  EXPECT_EQ(r.head_stride, 16384);
}

TEST(LayoutKindTest, Predicates) {
  EXPECT_TRUE(IsStack(LayoutKind::kNHDStack));
  EXPECT_TRUE(IsStack(LayoutKind::kHNDStack));
  EXPECT_FALSE(IsStack(LayoutKind::kOperationalNHD));
  EXPECT_FALSE(IsStack(LayoutKind::kOperationalHND));
  EXPECT_FALSE(IsStack(LayoutKind::kUniversal));
  EXPECT_TRUE(IsTokenMajorChunk(LayoutKind::kNHDStack));
  EXPECT_FALSE(IsTokenMajorChunk(LayoutKind::kHNDStack));
  EXPECT_TRUE(IsTokenMajorChunk(LayoutKind::kOperationalNHD));
  EXPECT_FALSE(IsTokenMajorChunk(LayoutKind::kOperationalHND));
  EXPECT_FALSE(IsTokenMajorChunk(LayoutKind::kUniversal));
}

TEST(LayoutKindTest, AddressesAndBytesPerBlock) {
  const BlockShape s = Shape(8, 80, 2, 16, 128);  // Llama-70B-like, bf16
  EXPECT_EQ(AddressesPerBlock(LayoutKind::kNHDStack, s), 160);
  EXPECT_EQ(AddressesPerBlock(LayoutKind::kHNDStack, s), 160);
  EXPECT_EQ(AddressesPerBlock(LayoutKind::kOperationalNHD, s), 1);
  EXPECT_EQ(AddressesPerBlock(LayoutKind::kOperationalHND, s), 1);
  EXPECT_EQ(AddressesPerBlock(LayoutKind::kUniversal, s), 1);
  EXPECT_EQ(BytesPerAddress(LayoutKind::kNHDStack, s, 2), 32768);
  EXPECT_EQ(BytesPerAddress(LayoutKind::kHNDStack, s, 2), 32768);
  EXPECT_EQ(BytesPerAddress(LayoutKind::kOperationalNHD, s, 2), 5242880);
  EXPECT_EQ(BytesPerAddress(LayoutKind::kOperationalHND, s, 2), 5242880);
  EXPECT_EQ(BytesPerAddress(LayoutKind::kUniversal, s, 2), 5242880);
  const BlockShape mla = Shape(1, 3, 1, 64, 576);
  EXPECT_EQ(AddressesPerBlock(LayoutKind::kNHDStack, mla), 3);
  EXPECT_EQ(BytesPerAddress(LayoutKind::kHNDStack, mla, 1), 36864);
  EXPECT_EQ(BytesPerAddress(LayoutKind::kUniversal, mla, 1), 110592);
}

TEST(LayoutKindTest, NamesRoundTrip) {
  const char* names[] = {"nhd", "hnd", "operational_nhd", "operational_hnd", "universal"};
  for (int i = 0; i < kNumLayoutKinds; ++i) {
    const LayoutKind kind = kKinds[i];
    EXPECT_EQ(static_cast<int>(kind), i);
    EXPECT_EQ(LayoutKindName(kind), names[i]);
    absl::StatusOr<LayoutKind> parsed = ParseLayoutKind(LayoutKindName(kind));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, kind);
  }
}

TEST(LayoutKindTest, AliasAndCase) {
  EXPECT_EQ(ParseLayoutKind("operational").value(), LayoutKind::kOperationalNHD);
  EXPECT_EQ(ParseLayoutKind("Universal").value(), LayoutKind::kUniversal);
  EXPECT_EQ(ParseLayoutKind("HND").value(), LayoutKind::kHNDStack);
}

TEST(LayoutKindTest, UnknownNameIsInvalidArgument) {
  for (const char* bad : {"", "nhd_stack", "operational_x", "univ", "tnhd"}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(HasStatus(
        ParseLayoutKind(bad), absl::StatusCode::kInvalidArgument,
        {"layout", std::string("\"") + bad + "\"", "allowed", "universal", "operational_hnd"}));
  }
}

}  // namespace
}  // namespace kvshuttle
