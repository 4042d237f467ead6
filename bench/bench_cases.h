// The benchmark matrix: named shapes, ranges and the suites that combine them with layout
// pairs, batch sizes, placements and backends.
#pragma once

#include <string>
#include <vector>

#include "core/backend.h"
#include "core/transfer.h"

namespace kvshuttle::bench {

enum class Placement { kD2D, kD2H, kH2D };
const char* PlacementName(Placement p);

// One benchmark case: a conversion of `nb` block pairs.
struct Case {
  std::string suite;   // "pairs", "ranges", "backends", "placement"
  std::string shape;   // e.g. "llama70b_nt16"
  std::string range;   // "full", "heads1of8", "layer1", "tokens16to64", ...
  TransferSpec spec;   // src/dst layouts and ranges (token offsets come from `token_split`)
  int token_split = 1; // >1: `token_split` source blocks fill one destination block
  int nb = 1;          // block pairs
  Placement placement = Placement::kD2D;
  Backend backend = Backend::kKernel;
  int max_sms = 0;
};

// All cases of the named suites ("all" = every suite). `quick` keeps a small subset.
std::vector<Case> MakeCases(const std::vector<std::string>& suites, bool quick);

}  // namespace kvshuttle::bench
