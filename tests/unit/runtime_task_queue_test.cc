// TaskQueue and the shared task helpers: FIFO order within a session, sessions served in
// turn, all-or-nothing pushes against the total and per-session capacity, a sliced task's
// rest put back first, blocking pops, close semantics, and the exact codes and messages of
// Submit.
#include "server/runtime/task_queue.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "core/plan.h"
#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

// A task with an empty plan (no pairs): enough for the queue, which never looks inside.
std::unique_ptr<JobTask> EmptyTask(uint64_t id) {
  TransferSpec spec;
  spec.src = LayoutDesc{LayoutKind::kUniversal, BlockShape{}, DType::kUInt8};
  spec.dst = spec.src;
  const uint64_t address = 4096;
  absl::StatusOr<TransferPlan> plan = TransferPlan::Build(spec, {&address, 1}, {&address, 1}, {});
  EXPECT_TRUE(plan.ok()) << plan.status();
  auto task = std::make_unique<JobTask>(std::move(plan).value());
  task->job_id = id;
  return task;
}

std::vector<std::unique_ptr<JobTask>> Tasks(uint64_t first, int count, uint64_t session = 0) {
  std::vector<std::unique_ptr<JobTask>> tasks;
  for (int i = 0; i < count; ++i) {
    tasks.push_back(EmptyTask(first + i));
    tasks.back()->session = session;
  }
  return tasks;
}

std::vector<uint64_t> Ids(const std::vector<std::unique_ptr<JobTask>>& tasks) {
  std::vector<uint64_t> ids;
  for (const auto& t : tasks) ids.push_back(t->job_id);
  return ids;
}

TEST(TaskQueueTest, PopsInFifoOrderUpToMax) {
  TaskQueue queue(8);
  auto a = Tasks(1, 3);
  auto b = Tasks(4, 2);
  ASSERT_TRUE(queue.PushAll(a));
  ASSERT_TRUE(queue.PushAll(b));
  EXPECT_TRUE(a.empty());
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(queue.size(), 5);
  EXPECT_EQ(Ids(queue.PopBatch(2)), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(Ids(queue.PopBatch(10)), (std::vector<uint64_t>{3, 4, 5}));
  EXPECT_EQ(queue.size(), 0);
}

TEST(TaskQueueTest, PushIsAllOrNothingAgainstCapacity) {
  TaskQueue queue(4);
  auto first = Tasks(1, 3);
  ASSERT_TRUE(queue.PushAll(first));
  auto more = Tasks(10, 2);
  const std::vector<JobTask*> before = {more[0].get(), more[1].get()};
  std::string why;
  EXPECT_FALSE(queue.PushAll(more, &why));
  EXPECT_EQ(why, "queue holds 3 of 4 tasks; 2 more do not fit");
  ASSERT_EQ(more.size(), 2u) << "a rejected push must leave the tasks with the caller";
  EXPECT_EQ(more[0].get(), before[0]);
  EXPECT_EQ(more[1].get(), before[1]);
  EXPECT_EQ(queue.size(), 3);

  auto one = Tasks(20, 1);
  EXPECT_TRUE(queue.PushAll(one)) << "exactly filling the queue is allowed";
  EXPECT_EQ(queue.size(), 4);
  std::vector<std::unique_ptr<JobTask>> none;
  EXPECT_TRUE(queue.PushAll(none)) << "an empty push always fits";
}

TEST(TaskQueueTest, SessionsAreServedInTurnAndEachInFifoOrder) {
  TaskQueue queue(64);
  auto a = Tasks(1, 4, /*session=*/1);    // a flood of session 1
  auto b = Tasks(100, 2, /*session=*/2);  // then two of session 2
  auto c = Tasks(200, 1, /*session=*/3);
  ASSERT_TRUE(queue.PushAll(a));
  ASSERT_TRUE(queue.PushAll(b));
  ASSERT_TRUE(queue.PushAll(c));
  EXPECT_EQ(Ids(queue.PopBatch(64)), (std::vector<uint64_t>{1, 100, 200, 2, 101, 3, 4}));
}

TEST(TaskQueueTest, ASessionMayQueueOnlyItsShare) {
  TaskQueue queue(QueueLimits(16, 3));
  auto mine = Tasks(1, 3, 1);
  ASSERT_TRUE(queue.PushAll(mine));
  auto more = Tasks(10, 1, 1);
  std::string why;
  EXPECT_FALSE(queue.PushAll(more, &why));
  EXPECT_EQ(why, "the session has 3 of at most 3 tasks queued here; 1 more do not fit");
  auto theirs = Tasks(20, 3, 2);
  EXPECT_TRUE(queue.PushAll(theirs)) << "another session still has its share";
  EXPECT_TRUE(queue.OthersWaiting(1));
  EXPECT_EQ(queue.size(), 6);
}

TEST(TaskQueueTest, PushFrontPutsASlicedTaskFirstInItsSessionAndItsSessionLast) {
  TaskQueue queue(16);
  auto a = Tasks(1, 2, 1);
  auto b = Tasks(10, 1, 2);
  ASSERT_TRUE(queue.PushAll(a));
  ASSERT_TRUE(queue.PushAll(b));
  std::vector<std::unique_ptr<JobTask>> first = queue.PopBatch(1);
  ASSERT_EQ(Ids(first), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(queue.OthersWaiting(1));
  queue.PushFront(std::move(first[0]));  // job 1 ran one slice; session 2's turn comes first
  EXPECT_EQ(Ids(queue.PopBatch(16)), (std::vector<uint64_t>{10, 1, 2}));
  EXPECT_FALSE(queue.OthersWaiting(1));
}

TEST(TaskQueueTest, TakeAllEmptiesTheQueue) {
  TaskQueue queue(16);
  auto a = Tasks(1, 3, 1);
  auto b = Tasks(10, 2, 2);
  ASSERT_TRUE(queue.PushAll(a));
  ASSERT_TRUE(queue.PushAll(b));
  EXPECT_EQ(queue.TakeAll().size(), 5u);
  EXPECT_EQ(queue.size(), 0);
  EXPECT_TRUE(queue.TryPopBatch(4).empty());
}

TEST(TaskQueueTest, PopBlocksUntilAPush) {
  TaskQueue queue(4);
  std::atomic<bool> popped{false};
  std::vector<uint64_t> got;
  std::thread consumer([&] {
    got = Ids(queue.PopBatch(4));
    popped = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(popped.load()) << "PopBatch returned from an empty open queue";
  auto tasks = Tasks(7, 1);
  ASSERT_TRUE(queue.PushAll(tasks));
  consumer.join();
  EXPECT_EQ(got, (std::vector<uint64_t>{7}));
}

TEST(TaskQueueTest, CloseWakesPoppersAndLeavesQueuedTasksPoppable) {
  TaskQueue queue(4);
  std::thread consumer([&] { EXPECT_TRUE(queue.PopBatch(4).empty()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  queue.Close();
  consumer.join();

  TaskQueue draining(4);
  auto tasks = Tasks(1, 2);
  ASSERT_TRUE(draining.PushAll(tasks));
  draining.Close();
  draining.Close();  // idempotent
  EXPECT_TRUE(draining.closed());
  auto late = Tasks(5, 1);
  EXPECT_FALSE(draining.PushAll(late));
  EXPECT_EQ(late.size(), 1u);
  EXPECT_EQ(Ids(draining.PopBatch(4)), (std::vector<uint64_t>{1, 2}));
  EXPECT_TRUE(draining.PopBatch(4).empty()) << "closed and empty must not block";
}

TEST(SubmitToQueueTest, FullQueueIsResourceExhaustedWithDepthAndCapacity) {
  TaskQueue queue(5);
  auto first = Tasks(1, 4);
  ASSERT_TRUE(SubmitToQueue(queue, "cpu", first).ok());
  auto more = Tasks(10, 3);
  EXPECT_TRUE(HasStatus(SubmitToQueue(queue, "cpu", more), absl::StatusCode::kResourceExhausted,
                        {"executor cpu: queue holds 4 of 5 tasks; 3 more do not fit"}));
  EXPECT_EQ(more.size(), 3u);
  queue.Close();
  EXPECT_TRUE(HasStatus(SubmitToQueue(queue, "gpu:x", more), absl::StatusCode::kUnavailable,
                        {"executor gpu:x", "draining"}));
  EXPECT_EQ(more.size(), 3u);
}

TEST(DropOutcomeTest, CancelledWinsThenDeadlineThenLaunch) {
  const absl::Time now = absl::Now();
  auto task = EmptyTask(42);
  task->submitted = now - absl::Milliseconds(3);
  EXPECT_FALSE(DropOutcome(*task, now).has_value()) << "no cancel flag, infinite deadline";

  task->cancelled = std::make_shared<CancelToken>();
  task->deadline = now;
  EXPECT_FALSE(DropOutcome(*task, now).has_value()) << "a deadline equal to now has not passed";

  task->deadline = now - absl::Seconds(1);
  std::optional<JobOutcome> late = DropOutcome(*task, now);
  EXPECT_FALSE(task->cancelled->Cancel()) << "the executor took it: too late to cancel";
  ASSERT_TRUE(late.has_value());
  EXPECT_TRUE(HasStatus(late->status, absl::StatusCode::kDeadlineExceeded, {"job 42"}));
  EXPECT_EQ(late->queued, absl::Milliseconds(3));
  EXPECT_EQ(late->backend, Backend::kAuto);

  // DropOutcome starts the token (a started job can no longer be cancelled): a fresh one.
  task->cancelled = std::make_shared<CancelToken>();
  EXPECT_TRUE(task->cancelled->Cancel());
  EXPECT_FALSE(task->cancelled->Start());
  task->cancelled = std::make_shared<CancelToken>();
  task->cancelled->Cancel();
  std::optional<JobOutcome> cancelled = DropOutcome(*task, now);
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_TRUE(HasStatus(cancelled->status, absl::StatusCode::kCancelled, {"job 42"}));
}

// The job's memory is let go before its completion is announced: a client that sees the
// job done and then lists its regions must find them free, not still releasing (the Python
// tier saw "releasing: true" right after a result when done ran first).
TEST(CompleteTaskTest, ReleasesHoldsThenCallsDoneOnce) {
  auto task = EmptyTask(1);
  auto held = std::make_shared<int>(5);
  std::weak_ptr<int> watch = held;
  task->holds.push_back(std::move(held));
  int calls = 0;
  bool released_before_done = false;
  task->done = [&](const JobOutcome& outcome) {
    ++calls;
    released_before_done = watch.expired();
    EXPECT_TRUE(outcome.status.ok());
  };
  CompleteTask(std::move(task), JobOutcome{});
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(released_before_done) << "holds must be released before done runs";
  EXPECT_TRUE(watch.expired());
}

}  // namespace
}  // namespace kvshuttle
