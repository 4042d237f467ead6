// Budget: charges against a daemon-wide and a per-session limit, refused whole when they do
// not fit, returned exactly when the receipt goes (also after the session that took them).
#include "server/budget.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

TEST(BudgetTest, ChargesFitTheSessionAndTheDaemonOrAreRefusedWhole) {
  Budget budget("metadata", "bytes", 100, 60);
  auto a = std::make_shared<Budget::Account>();
  auto b = std::make_shared<Budget::Account>();
  absl::StatusOr<Budget::Charge> a1 = budget.Take(50, "first", a);
  ASSERT_TRUE(a1.ok());
  EXPECT_TRUE(HasStatus(budget.Take(11, "second", a), absl::StatusCode::kResourceExhausted,
                        {"second: needs 11 bytes of the session's metadata budget; it uses 50 of 60"}));
  EXPECT_EQ(a->used.load(), 50) << "a refused charge takes nothing";
  absl::StatusOr<Budget::Charge> b1 = budget.Take(45, "theirs", b);
  ASSERT_TRUE(b1.ok());
  EXPECT_TRUE(HasStatus(budget.Take(6, "third", b), absl::StatusCode::kResourceExhausted,
                        {"daemon's metadata budget; it uses 95 of 100"}));
  EXPECT_EQ(b->used.load(), 45);
  EXPECT_EQ(budget.used(), 95);
  { Budget::Charge gone = *std::move(a1); }
  EXPECT_EQ(budget.used(), 45);
  EXPECT_EQ(a->used.load(), 0);
  a.reset();  // the account outlives its session through the charge
  b.reset();
  b1->Release();
  b1->Release();  // idempotent
  EXPECT_EQ(budget.used(), 0);
}

TEST(BudgetTest, ConcurrentChargesNeverExceedTheLimit) {
  Budget budget("maps", "mappings", 1000, 0);
  std::vector<std::thread> threads;
  std::atomic<int> granted{0};
  std::vector<std::vector<Budget::Charge>> held(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        absl::StatusOr<Budget::Charge> c = budget.Take(1, "x");
        if (c.ok()) {
          ++granted;
          held[t].push_back(*std::move(c));
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(granted.load(), 1000);
  EXPECT_EQ(budget.used(), 1000);
  held.clear();
  EXPECT_EQ(budget.used(), 0);
}

}  // namespace
}  // namespace kvshuttle
