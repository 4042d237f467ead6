// The CPU executor: real plans from core run byte-exact against the reference converter;
// cancelled and late tasks complete with CANCELLED / DEADLINE_EXCEEDED and copy nothing; a full
// queue is RESOURCE_EXHAUSTED and leaves the tasks with the caller; Drain runs what is queued.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/plan.h"
#include "core/reference.h"
#include "gtest/gtest.h"
#include "server/runtime/executor.h"
#include "tests/unit/host_blocks.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;
using ::kvshuttle::testing::HostBlocks;

// NHD stack → universal bf16 over 3 blocks, pairs in a scrambled order.
TransferSpec Spec() {
  const BlockShape shape{.nl = 2, .no = 2, .nt = 4, .nh = 3, .hd = 5};
  TransferSpec spec;
  spec.src = LayoutDesc{LayoutKind::kNHDStack, shape, DType::kBF16};
  spec.dst = LayoutDesc{LayoutKind::kUniversal, shape, DType::kBF16};
  return spec;
}
const std::vector<BlockPair> kPairs = {{0, 2, 0, 0}, {2, 0, 0, 0}, {1, 1, 0, 0}};
constexpr int64_t kBlocks = 3;

// One conversion job: its own destination, the reference result, and the outcome.
struct Job {
  explicit Job(const HostBlocks& src) : dst(Spec().dst, kBlocks), reference(Spec().dst, kBlocks) {
    const absl::Status ref =
        ReferenceConvert(Spec(), src.addresses(), reference.addresses(), kPairs, 1);
    EXPECT_TRUE(ref.ok()) << ref;
  }

  std::unique_ptr<JobTask> MakeTask(const HostBlocks& src, uint64_t id) {
    absl::StatusOr<TransferPlan> plan =
        TransferPlan::Build(Spec(), src.addresses(), dst.addresses(), kPairs);
    EXPECT_TRUE(plan.ok()) << plan.status();
    auto task = std::make_unique<JobTask>(std::move(plan).value());
    task->job_id = id;
    task->done = [this](const JobOutcome& o) {
      outcome = o;
      ++done_calls;
      finished.set_value();
    };
    return task;
  }

  // Waits (bounded) for done; false on timeout.
  bool Wait() {
    return finished_future.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  }

  HostBlocks dst;
  HostBlocks reference;
  JobOutcome outcome;
  int done_calls = 0;
  std::promise<void> finished;
  std::future<void> finished_future = finished.get_future();
};

// A task with an empty plan whose done blocks its executor thread until Release() (or until
// the Blocker is destroyed, so a failing test never hangs in the executor's Drain). Declare
// it after the executor; declare Jobs before it.
class Blocker {
 public:
  ~Blocker() { Release(); }

  std::unique_ptr<JobTask> MakeTask(const HostBlocks& src, HostBlocks& dst) {
    absl::StatusOr<TransferPlan> plan =
        TransferPlan::Build(Spec(), src.addresses(), dst.addresses(), {});
    EXPECT_TRUE(plan.ok()) << plan.status();
    auto task = std::make_unique<JobTask>(std::move(plan).value());
    task->done = [state = state_](const JobOutcome&) {
      state->started.set_value();
      state->release_future.wait();
    };
    return task;
  }
  void WaitUntilRunning() { state_->started_future.wait(); }
  void Release() {
    std::call_once(state_->once, [this] { state_->release.set_value(); });
  }

 private:
  struct State {
    std::promise<void> started;
    std::future<void> started_future = started.get_future();
    std::promise<void> release;
    std::shared_future<void> release_future = release.get_future().share();
    std::once_flag once;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

class CpuExecutorTest : public ::testing::Test {
 protected:
  CpuExecutorTest() : src_(Spec().src, kBlocks), scratch_(Spec().dst, kBlocks) {
    src_.FillRandom(77);
  }

  absl::Status SubmitOne(Executor& executor, std::unique_ptr<JobTask> task) {
    std::vector<std::unique_ptr<JobTask>> tasks;
    tasks.push_back(std::move(task));
    return executor.Submit(tasks);
  }

  HostBlocks src_;
  HostBlocks scratch_;  // destination of blocker tasks (never written: their plans are empty)
};

TEST_F(CpuExecutorTest, RunsRealPlansByteExactOnEveryThread) {
  std::vector<std::unique_ptr<Job>> jobs;
  std::unique_ptr<Executor> executor = CreateCpuExecutor(3, 64);
  EXPECT_EQ(executor->name(), "cpu");
  EXPECT_EQ(executor->capacity(), 64);
  std::vector<std::unique_ptr<JobTask>> tasks;
  auto held = std::make_shared<int>(1);
  std::weak_ptr<int> watch = held;
  for (int i = 0; i < 12; ++i) {
    jobs.push_back(std::make_unique<Job>(src_));
    tasks.push_back(jobs.back()->MakeTask(src_, 100 + i));
  }
  tasks[0]->holds.push_back(std::move(held));
  ASSERT_TRUE(executor->Submit(tasks).ok());
  EXPECT_TRUE(tasks.empty());
  for (size_t i = 0; i < jobs.size(); ++i) {
    Job& job = *jobs[i];
    ASSERT_TRUE(job.Wait()) << "job " << i << " never completed";
    EXPECT_TRUE(job.outcome.status.ok()) << job.outcome.status;
    EXPECT_EQ(job.outcome.backend, Backend::kKernel);
    EXPECT_GE(job.outcome.queued, absl::ZeroDuration());
    EXPECT_GE(job.outcome.run, absl::ZeroDuration());
    EXPECT_EQ(job.dst.buffers(), job.reference.buffers()) << "job " << i << " differs";
  }
  executor->Drain();
  EXPECT_EQ(executor->jobs_done(), 12u);
  EXPECT_TRUE(watch.expired()) << "holds must be released once the task is done";
  for (const auto& job : jobs) EXPECT_EQ(job->done_calls, 1);
}

TEST_F(CpuExecutorTest, CancelledTaskIsCancelledAndCopiesNothing) {
  Job job(src_);
  std::unique_ptr<Executor> executor = CreateCpuExecutor(1, 8);
  std::unique_ptr<JobTask> task = job.MakeTask(src_, 5);
  task->cancelled = std::make_shared<CancelToken>(true);
  ASSERT_TRUE(SubmitOne(*executor, std::move(task)).ok());
  ASSERT_TRUE(job.Wait());
  EXPECT_TRUE(HasStatus(job.outcome.status, absl::StatusCode::kCancelled, {"job 5"}));
  EXPECT_EQ(job.outcome.backend, Backend::kAuto);
  EXPECT_EQ(job.dst.CountWritten(), 0) << "a cancelled task must not copy";
}

TEST_F(CpuExecutorTest, TaskPastItsDeadlineIsDeadlineExceededAndCopiesNothing) {
  Job job(src_);
  std::unique_ptr<Executor> executor = CreateCpuExecutor(1, 8);
  std::unique_ptr<JobTask> task = job.MakeTask(src_, 6);
  task->cancelled = std::make_shared<CancelToken>();
  task->deadline = absl::Now() - absl::Milliseconds(1);
  ASSERT_TRUE(SubmitOne(*executor, std::move(task)).ok());
  ASSERT_TRUE(job.Wait());
  EXPECT_TRUE(HasStatus(job.outcome.status, absl::StatusCode::kDeadlineExceeded, {"job 6"}));
  EXPECT_EQ(job.outcome.backend, Backend::kAuto);
  EXPECT_EQ(job.dst.CountWritten(), 0) << "a late task must not copy";
}

TEST_F(CpuExecutorTest, CancelAfterSubmitButBeforeLaunchIsHonoured) {
  Job job(src_);
  std::unique_ptr<Executor> executor = CreateCpuExecutor(1, 8);
  Blocker blocker;
  ASSERT_TRUE(SubmitOne(*executor, blocker.MakeTask(src_, scratch_)).ok());
  blocker.WaitUntilRunning();
  std::unique_ptr<JobTask> task = job.MakeTask(src_, 7);
  auto cancel = std::make_shared<CancelToken>();
  task->cancelled = cancel;
  ASSERT_TRUE(SubmitOne(*executor, std::move(task)).ok());
  cancel->Cancel();  // e.g. CancelJobs while the task waits in the queue
  blocker.Release();
  ASSERT_TRUE(job.Wait());
  EXPECT_TRUE(HasStatus(job.outcome.status, absl::StatusCode::kCancelled, {}));
  EXPECT_EQ(job.dst.CountWritten(), 0);
}

TEST_F(CpuExecutorTest, FullQueueIsResourceExhaustedAndLeavesTasksUntouched) {
  std::vector<std::unique_ptr<Job>> queued;
  Job extra_a(src_);
  Job extra_b(src_);
  std::unique_ptr<Executor> executor = CreateCpuExecutor(1, 4);
  Blocker blocker;
  ASSERT_TRUE(SubmitOne(*executor, blocker.MakeTask(src_, scratch_)).ok());
  blocker.WaitUntilRunning();  // the only thread is busy: nothing leaves the queue

  std::vector<std::unique_ptr<JobTask>> tasks;
  for (int i = 0; i < 3; ++i) {
    queued.push_back(std::make_unique<Job>(src_));
    tasks.push_back(queued.back()->MakeTask(src_, 10 + i));
  }
  ASSERT_TRUE(executor->Submit(tasks).ok());
  EXPECT_EQ(executor->queue_depth(), 3);

  std::vector<std::unique_ptr<JobTask>> rejected;
  rejected.push_back(extra_a.MakeTask(src_, 20));
  rejected.push_back(extra_b.MakeTask(src_, 21));
  const std::vector<JobTask*> before = {rejected[0].get(), rejected[1].get()};
  EXPECT_TRUE(HasStatus(executor->Submit(rejected), absl::StatusCode::kResourceExhausted,
                        {"executor cpu: queue holds 3 of 4 tasks; 2 more do not fit"}));
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0].get(), before[0]);
  EXPECT_EQ(rejected[1].get(), before[1]);
  EXPECT_EQ(executor->queue_depth(), 3) << "a rejected batch must not be partly queued";

  blocker.Release();
  for (auto& job : queued) {
    ASSERT_TRUE(job->Wait());
    EXPECT_TRUE(job->outcome.status.ok()) << job->outcome.status;
    EXPECT_EQ(job->dst.buffers(), job->reference.buffers());
  }
  executor->Drain();
  EXPECT_EQ(extra_a.done_calls + extra_b.done_calls, 0) << "rejected tasks must never run";
  EXPECT_EQ(extra_a.dst.CountWritten() + extra_b.dst.CountWritten(), 0);
}

TEST_F(CpuExecutorTest, DrainRunsEverythingQueuedThenRejects) {
  std::vector<std::unique_ptr<Job>> jobs;
  Job late(src_);
  std::unique_ptr<Executor> executor = CreateCpuExecutor(2, 16);
  Blocker blocker_a;
  Blocker blocker_b;
  ASSERT_TRUE(SubmitOne(*executor, blocker_a.MakeTask(src_, scratch_)).ok());
  ASSERT_TRUE(SubmitOne(*executor, blocker_b.MakeTask(src_, scratch_)).ok());
  blocker_a.WaitUntilRunning();
  blocker_b.WaitUntilRunning();

  std::vector<std::unique_ptr<JobTask>> tasks;
  for (int i = 0; i < 6; ++i) {
    jobs.push_back(std::make_unique<Job>(src_));
    tasks.push_back(jobs.back()->MakeTask(src_, 30 + i));
  }
  ASSERT_TRUE(executor->Submit(tasks).ok());
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    blocker_a.Release();
    blocker_b.Release();
  });
  executor->Drain();  // returns only once every queued task is done
  releaser.join();
  for (auto& job : jobs) {
    EXPECT_EQ(job->done_calls, 1);
    EXPECT_TRUE(job->outcome.status.ok()) << job->outcome.status;
    EXPECT_EQ(job->dst.buffers(), job->reference.buffers());
  }
  EXPECT_EQ(executor->jobs_done(), 8u);

  std::vector<std::unique_ptr<JobTask>> after;
  after.push_back(late.MakeTask(src_, 99));
  EXPECT_TRUE(HasStatus(executor->Submit(after), absl::StatusCode::kUnavailable, {"cpu"}));
  EXPECT_EQ(after.size(), 1u);
  executor->Drain();  // idempotent
  EXPECT_EQ(late.done_calls, 0);
}

}  // namespace
}  // namespace kvshuttle
