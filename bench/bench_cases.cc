// The benchmark matrix (DESIGN §5, issue #4).
#include "bench/bench_cases.h"

#include <algorithm>

namespace kvshuttle::bench {
namespace {

struct NamedShape {
  std::string name;
  BlockShape shape;
  DType dtype;
};

const std::vector<NamedShape>& ModelShapes() {
  static const std::vector<NamedShape> shapes = {
      {"llama70b_nt16", {80, 2, 16, 8, 128}, DType::kBF16},
      {"llama70b_nt32", {80, 2, 32, 8, 128}, DType::kBF16},
      {"llama70b_nt64", {80, 2, 64, 8, 128}, DType::kBF16},
      {"llama8b_nt16", {32, 2, 16, 8, 128}, DType::kBF16},
      {"mla_bf16", {61, 1, 64, 1, 576}, DType::kBF16},
      {"mla_fp8", {61, 1, 64, 1, 576}, DType::kF8E4M3},
      {"odd_hd46", {32, 2, 16, 8, 46}, DType::kBF16},
      {"odd_row584", {32, 2, 16, 8, 292}, DType::kBF16},
  };
  return shapes;
}

constexpr LayoutKind kKinds[] = {LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                 LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND,
                                 LayoutKind::kUniversal};

TransferSpec Full(LayoutKind from, LayoutKind to, const NamedShape& s) {
  TransferSpec spec;
  spec.src = {from, s.shape, s.dtype};
  spec.dst = {to, s.shape, s.dtype};
  return spec;
}

void AddPairs(std::vector<Case>& out, const Case& base, const NamedShape& shape,
              const std::vector<int>& nbs, bool quick) {
  for (LayoutKind from : kKinds) {
    for (LayoutKind to : kKinds) {
      if (quick && !((from == LayoutKind::kNHDStack && to == LayoutKind::kUniversal) ||
                     (from == LayoutKind::kUniversal && to == LayoutKind::kHNDStack))) {
        continue;
      }
      for (int nb : nbs) {
        Case c = base;
        c.shape = shape.name;
        c.spec = Full(from, to, shape);
        c.nb = nb;
        out.push_back(c);
      }
    }
  }
}

}  // namespace

const char* PlacementName(Placement p) {
  switch (p) {
    case Placement::kD2D: return "d2d";
    case Placement::kD2H: return "d2h";
    case Placement::kH2D: return "h2d";
  }
  return "?";
}

std::vector<Case> MakeCases(const std::vector<std::string>& suites, bool quick) {
  auto wanted = [&](const std::string& s) {
    return std::find(suites.begin(), suites.end(), s) != suites.end() ||
           std::find(suites.begin(), suites.end(), "all") != suites.end();
  };
  const std::vector<int> nbs = quick ? std::vector<int>{1, 64} : std::vector<int>{1, 8, 64, 256};
  const NamedShape& llama = ModelShapes()[0];
  std::vector<Case> out;
  if (wanted("pairs")) {
    Case base;
    base.suite = "pairs";
    base.range = "full";
    for (const NamedShape& s : ModelShapes()) {
      if (quick && s.name != "llama70b_nt16" && s.name != "mla_bf16" && s.name != "odd_hd46") {
        continue;
      }
      AddPairs(out, base, s, nbs, quick);
    }
  }
  if (wanted("ranges")) {
    const std::vector<int> range_nbs = quick ? std::vector<int>{64} : std::vector<int>{8, 64, 256};
    for (int heads : {1, 2, 4}) {  // a rank holding `heads` of 8 reads its slice of the store
      NamedShape rank = llama;
      rank.shape.nh = heads;
      for (LayoutKind from : kKinds) {
        for (LayoutKind to : kKinds) {
          if (quick && from != LayoutKind::kUniversal) continue;
          for (int nb : range_nbs) {
            Case c;
            c.suite = "ranges";
            c.shape = llama.name;
            c.range = "heads" + std::to_string(heads) + "of8";
            c.spec.src = {from, llama.shape, llama.dtype};
            c.spec.dst = {to, rank.shape, rank.dtype};
            c.spec.heads = {heads, 0, heads};  // rank 1's slice
            c.nb = nb;
            out.push_back(c);
          }
        }
      }
    }
    for (LayoutKind from : kKinds) {
      for (LayoutKind to : kKinds) {
        if (quick && from != LayoutKind::kNHDStack) continue;
        for (int nb : range_nbs) {
          Case c;
          c.suite = "ranges";
          c.shape = llama.name;
          c.range = "layer1";
          c.spec = Full(from, to, llama);
          c.spec.layers = {40, 40, 1};
          c.nb = nb;
          out.push_back(c);
          c.range = "tokens16to64";
          c.spec = Full(from, to, llama);
          c.spec.dst.shape.nt = 64;
          c.token_split = 4;
          out.push_back(c);
        }
      }
    }
  }
  if (wanted("backends")) {
    for (const NamedShape* s : {&ModelShapes()[0], &ModelShapes()[4]}) {
      for (Backend b : {Backend::kBatch, Backend::kAsync, Backend::kAuto}) {
        Case base;
        base.suite = "backends";
        base.range = "full";
        base.backend = b;
        AddPairs(out, base, *s, nbs, quick);
      }
    }
  }
  if (wanted("placement")) {
    for (Placement p : {Placement::kD2H, Placement::kH2D}) {
      for (auto [b, sms] : {std::pair{Backend::kKernel, 0}, std::pair{Backend::kKernel, 8},
                            std::pair{Backend::kBatch, 0}, std::pair{Backend::kAsync, 0},
                            std::pair{Backend::kStaged, 0}, std::pair{Backend::kAuto, 0}}) {
        Case base;
        base.suite = "placement";
        base.range = "full";
        base.placement = p;
        base.backend = b;
        base.max_sms = sms;
        AddPairs(out, base, llama, {64}, quick);  // every pair at 335 MB
        if (!quick) AddPairs(out, base, llama, {1, 8}, /*quick=*/true);
      }
    }
  }
  return out;
}

}  // namespace kvshuttle::bench
