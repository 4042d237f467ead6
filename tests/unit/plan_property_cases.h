// Random cases of the plan property test (plan_property_test.cc, issue #7 item 3): two random
// valid block sets over fake regions (Memory objects that are never dereferenced) built with
// BuildBlockSet, a random valid job planned with TransferPlan::Build and every row of the plan
// checked against an oracle of where each block's pieces lie; then one random invalid
// mutation of a block set or of the job, which must be refused with its documented code and
// field before any plan exists.
#pragma once

#include <cstdint>
#include <string>

namespace kvshuttle::property {

// Kinds of invalid mutation (plan_property_cases.cc lists them).
inline constexpr int kBlockSetMutations = 15;
inline constexpr int kJobMutations = 14;

// Counts of one run (one per thread, summed at the end).
struct Tally {
  int64_t cases = 0;
  int64_t plans = 0;
  int64_t strided_plans = 0;  // of them also planned (and checked) with BuildStrided
  int64_t chunks = 0;
  int64_t rows = 0;
  int64_t block_set_mutations[kBlockSetMutations] = {};
  int64_t job_mutations[kJobMutations] = {};

  void Add(const Tally& o) {
    cases += o.cases;
    plans += o.plans;
    strided_plans += o.strided_plans;
    chunks += o.chunks;
    rows += o.rows;
    for (int i = 0; i < kBlockSetMutations; ++i) block_set_mutations[i] += o.block_set_mutations[i];
    for (int i = 0; i < kJobMutations; ++i) job_mutations[i] += o.job_mutations[i];
  }
};

// Runs case `index` of `seed` (its own generator, seeded from both, so any case replays alone)
// and adds to `tally`. Returns "" or what failed, with the case described.
std::string RunCase(uint64_t seed, int64_t index, Tally& tally);

}  // namespace kvshuttle::property
