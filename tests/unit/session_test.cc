// Session bookkeeping that needs no daemon: released regions are remembered for idempotent
// repeats only within a bound (issue #13 defect 10: 50k register/unregister cycles grew the
// daemon by 8 MiB, the released ids were never pruned), never while jobs still hold them; and
// a session is usable only by the uid that opened it.
#include "server/session.h"

#include <memory>

#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

PeerIdentity Uid(uid_t uid) {
  PeerIdentity p;
  p.local = true;
  p.uid = uid;
  return p;
}

std::shared_ptr<Memory> FakeMemory() {
  return std::make_shared<Memory>(4096, 4096, MemoryPlace::kHost, -1, false, nullptr);
}

TEST(SessionTest, ReleasedRegionsAreRememberedOnlyWithinABound) {
  Session session("id", 1, "test", Uid(1000), absl::InfiniteFuture(), Limits{});
  const uint64_t cycles = 3 * kReleasedRegionMemory;
  std::shared_ptr<Memory> held;  // one early region stays in use, like a running job's
  for (uint64_t id = 1; id <= cycles; ++id) {
    std::shared_ptr<Memory> memory = FakeMemory();
    if (id == 2) held = memory;
    ASSERT_TRUE(session.AddRegion(id, "", v1::Region(), memory).ok());
    memory.reset();
    absl::StatusOr<bool> deferred = session.RemoveRegion(id);
    ASSERT_TRUE(deferred.ok()) << deferred.status();
    EXPECT_EQ(*deferred, id == 2) << id;
  }
  EXPECT_TRUE(HasStatus(session.RemoveRegion(1), absl::StatusCode::kNotFound, {"region_id: 1"}))
      << "the oldest released ids are forgotten";
  absl::StatusOr<bool> recent = session.RemoveRegion(cycles);
  ASSERT_TRUE(recent.ok()) << "a recent release repeats idempotently";
  EXPECT_FALSE(*recent);
  absl::StatusOr<bool> in_use = session.RemoveRegion(2);
  ASSERT_TRUE(in_use.ok()) << "a region jobs still hold is never forgotten";
  EXPECT_TRUE(*in_use);
  EXPECT_EQ(session.ListRegions().size(), 1u) << "only the held region is still listed";
  EXPECT_TRUE(HasStatus(session.RemoveRegion(kReleasedRegionMemory), absl::StatusCode::kNotFound,
                        {}))
      << "a held early region does not stop the pruning of the ones after it";
}

TEST(SessionTest, ASessionIsUsableOnlyByTheUidThatOpenedIt) {
  Session local("id", 1, "test", Uid(1000), absl::InfiniteFuture(), Limits{});
  EXPECT_TRUE(local.UsableBy(Uid(1000)));
  EXPECT_FALSE(local.UsableBy(Uid(1001)));
  PeerIdentity tcp;
  tcp.address = "ipv4:127.0.0.1:1234";
  EXPECT_FALSE(local.UsableBy(tcp));
  Session remote("id2", 2, "test", tcp, absl::InfiniteFuture(), Limits{});
  EXPECT_TRUE(remote.UsableBy(tcp));
  EXPECT_FALSE(remote.UsableBy(Uid(1000)));
}

TEST(SessionTest, BlockedWaitsAreCountedAgainstTheirLimit) {
  Limits limits;
  limits.max_waits_per_session = 2;
  Session session("id", 1, "test", Uid(0), absl::InfiniteFuture(), limits);
  ASSERT_TRUE(session.BeginWait().ok());
  ASSERT_TRUE(session.BeginWait().ok());
  EXPECT_TRUE(HasStatus(session.BeginWait(), absl::StatusCode::kResourceExhausted,
                        {"2 of at most 2 Wait calls"}));
  session.EndWait();
  EXPECT_TRUE(session.BeginWait().ok());
}

}  // namespace
}  // namespace kvshuttle
