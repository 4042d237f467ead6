// Property test (issue #7, item 3): for random valid block sets and jobs, every row a plan
// touches lies inside the piece of the block it came from and inside that piece's registered
// region; random invalid mutations of a block set or a job are refused with their documented
// code (and the field named) before any plan exists. CPU only, no daemon; the cases are in
// plan_property_cases.cc, this file runs them over threads and reports.
//
//   plan_property_test [--seed=S] [--cases=N] [--first_case=K] [--threads=T] [gtest flags]
//
// Case k draws from its own generator seeded by (S, k), so a failure prints "seed S case k"
// and `--seed=S --first_case=k --cases=1` replays exactly that case. Default: 1,000,000 cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/unit/plan_property_cases.h"

namespace kvshuttle {
namespace {

using property::kBlockSetMutations;
using property::kJobMutations;
using property::RunCase;
using property::Tally;

struct Options {
  uint64_t seed = 0x6b7673687574746cULL;  // "kvshuttl"
  int64_t cases = 1000000;
  int64_t first_case = 0;
  int threads = 0;  // 0: one per hardware thread
};

Options& GlobalOptions() {
  static Options options;
  return options;
}

TEST(PlanPropertyTest, PlannedRowsStayInTheirRegionsAndInvalidInputIsRefusedBeforePlanning) {
  const Options& o = GlobalOptions();
  const int threads = o.threads > 0
                          ? o.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::mutex mu;
  std::vector<std::pair<int64_t, std::string>> failures;  // (case, what), at most a few
  std::vector<Tally> tallies(threads);
  std::vector<std::thread> pool;
  const absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int64_t i = o.first_case + t; i < o.first_case + o.cases; i += threads) {
        std::string bad = RunCase(o.seed, i, tallies[t]);
        if (bad.empty()) continue;
        std::lock_guard<std::mutex> lock(mu);
        failures.emplace_back(i, std::move(bad));
        if (failures.size() >= 5) return;
      }
    });
  }
  for (std::thread& th : pool) th.join();
  Tally total;
  for (const Tally& t : tallies) total.Add(t);
  std::sort(failures.begin(), failures.end());
  for (const auto& [index, what] : failures) {
    ADD_FAILURE() << "seed " << o.seed << " case " << index << " (replay: --seed=" << o.seed
                  << " --first_case=" << index << " --cases=1): " << what;
  }
  std::printf(
      "plan property: seed %llu, cases [%lld, %lld), %d threads, %.1f s: %lld valid plans "
      "(%lld also strided), %lld chunks, %lld rows checked inside their piece and region\n",
      static_cast<unsigned long long>(o.seed), static_cast<long long>(o.first_case),
      static_cast<long long>(o.first_case + o.cases), threads,
      absl::ToDoubleSeconds(absl::Now() - start), static_cast<long long>(total.plans),
      static_cast<long long>(total.strided_plans), static_cast<long long>(total.chunks), static_cast<long long>(total.rows));
  std::printf("  block set mutations refused (by kind):");
  for (int64_t n : total.block_set_mutations) std::printf(" %lld", static_cast<long long>(n));
  std::printf("\n  job mutations refused (by kind):");
  for (int64_t n : total.job_mutations) std::printf(" %lld", static_cast<long long>(n));
  std::printf("\n");
  if (o.cases >= kBlockSetMutations * 100) {
    EXPECT_GT(total.strided_plans, 0) << "no job between two strided block sets drawn";
    for (int i = 0; i < kBlockSetMutations; ++i) {
      EXPECT_GT(total.block_set_mutations[i], 0) << "block set mutation " << i << " never drawn";
    }
    for (int i = 0; i < kJobMutations; ++i) {
      EXPECT_GT(total.job_mutations[i], 0) << "job mutation " << i << " never drawn";
    }
  }
}

// --name=value → value, for this test's own flags.
bool ParseFlag(absl::string_view arg, absl::string_view name, absl::string_view* value) {
  const std::string prefix = absl::StrCat("--", name, "=");
  if (!absl::StartsWith(arg, prefix)) return false;
  *value = arg.substr(prefix.size());
  return true;
}

}  // namespace
}  // namespace kvshuttle

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  kvshuttle::Options& o = kvshuttle::GlobalOptions();
  for (int i = 1; i < argc; ++i) {
    absl::string_view value;
    bool ok = false;
    if (kvshuttle::ParseFlag(argv[i], "seed", &value)) {
      ok = absl::SimpleAtoi(value, &o.seed);
    } else if (kvshuttle::ParseFlag(argv[i], "cases", &value)) {
      ok = absl::SimpleAtoi(value, &o.cases) && o.cases >= 0;
    } else if (kvshuttle::ParseFlag(argv[i], "first_case", &value)) {
      ok = absl::SimpleAtoi(value, &o.first_case) && o.first_case >= 0;
    } else if (kvshuttle::ParseFlag(argv[i], "threads", &value)) {
      ok = absl::SimpleAtoi(value, &o.threads) && o.threads >= 0;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "plan_property_test: bad argument \"%s\"; flags: --seed=N --cases=N "
                   "--first_case=N --threads=N (and gtest's)\n",
                   argv[i]);
      return 2;
    }
  }
  return RUN_ALL_TESTS();
}
