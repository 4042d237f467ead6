// The daemon's CUDA runtime on a real GPU: device discovery, pool memory + the GPU worker
// (byte-exact against the CPU reference, cancel/deadline/full queue/drain), OpenIpc input
// errors, and a real cross-process CUDA IPC region. The exporting process is this binary
// re-executed (fork after CUDA initialization is unsafe) running the disabled child test.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "core/reference.h"
#include "server/runtime/gpu_runtime.h"
#include "tests/gpu/gpu_test_util.h"

extern char** environ;

namespace kvshuttle::gputest {
namespace {

// Set (to "<read fd>,<write fd>") only in the re-executed child.
constexpr char kChildEnv[] = "KVS_RUNTIME_IPC_CHILD_FDS";
constexpr uint64_t kChildBytes = uint64_t{4} << 20;  // a multiple of cudaMalloc's 2 MiB granule
constexpr size_t kUuidBytes = 40;                    // "GPU-" + 8-4-4-4-12 hex digits

uint8_t ChildPattern(uint64_t i) { return static_cast<uint8_t>(i * 13 + 5); }

// NHD stack → universal bf16: 4 blocks of 32 KiB, pairs scrambled.
TransferSpec Spec() {
  const BlockShape shape{.nl = 2, .no = 2, .nt = 16, .nh = 4, .hd = 64};
  TransferSpec spec;
  spec.src = LayoutDesc{LayoutKind::kNHDStack, shape, DType::kBF16};
  spec.dst = LayoutDesc{LayoutKind::kUniversal, shape, DType::kBF16};
  return spec;
}
constexpr int64_t kBlocks = 4;
const std::vector<BlockPair> kPairs = {{0, 2, 0, 0}, {1, 0, 0, 0}, {2, 3, 0, 0}, {3, 1, 0, 0}};

uint64_t PieceBytes(const LayoutDesc& d) {
  return static_cast<uint64_t>(BytesPerAddress(d.kind, d.shape, DTypeSize(d.dtype)));
}
uint64_t SideBytes(const LayoutDesc& d) {
  return kBlocks * AddressesPerBlock(d.kind, d.shape) * PieceBytes(d);
}
// Pieces laid out back to back from `base`.
std::vector<uint64_t> Table(const LayoutDesc& d, uint64_t base) {
  std::vector<uint64_t> table(kBlocks * AddressesPerBlock(d.kind, d.shape));
  for (size_t k = 0; k < table.size(); ++k) table[k] = base + k * PieceBytes(d);
  return table;
}

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> bytes(n);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

// Runs ReferenceConvert on host copies: `dst_mirror` (the destination's current bytes) becomes
// what the destination must hold after the conversion.
void Reference(const std::vector<uint8_t>& src_mirror, std::vector<uint8_t>& dst_mirror) {
  const TransferSpec spec = Spec();
  ASSERT_OK(ReferenceConvert(spec, Table(spec.src, reinterpret_cast<uint64_t>(src_mirror.data())),
                             Table(spec.dst, reinterpret_cast<uint64_t>(dst_mirror.data())), kPairs,
                             1));
}

std::vector<uint8_t> Download(uint64_t address, uint64_t bytes) {
  std::vector<uint8_t> out(bytes);
  EXPECT_EQ(cudaMemcpy(out.data(), reinterpret_cast<void*>(address), bytes, cudaMemcpyDeviceToHost),
            cudaSuccess);
  return out;
}

// A task converting Spec() from `src` to `dst` (both Memory of SideBytes), holding both.
struct GpuJob {
  std::unique_ptr<JobTask> MakeTask(const std::shared_ptr<Memory>& src,
                                    const std::shared_ptr<Memory>& dst, Backend backend,
                                    int max_sms) {
    const TransferSpec spec = Spec();
    absl::StatusOr<TransferPlan> plan = TransferPlan::Build(spec, Table(spec.src, src->base()),
                                                            Table(spec.dst, dst->base()), kPairs);
    EXPECT_TRUE(plan.ok()) << plan.status();
    auto task = std::make_unique<JobTask>(std::move(plan).value());
    task->backend = backend;
    task->max_sms = max_sms;
    task->holds = {src, dst};
    task->done = [this](const JobOutcome& o) {
      outcome = o;
      promise.set_value();
    };
    return task;
  }
  bool Wait() { return future.wait_for(std::chrono::seconds(60)) == std::future_status::ready; }

  JobOutcome outcome;
  std::promise<void> promise;
  std::future<void> future = promise.get_future();
};

absl::Status SubmitOne(Executor& executor, std::unique_ptr<JobTask> task) {
  std::vector<std::unique_ptr<JobTask>> tasks;
  tasks.push_back(std::move(task));
  return executor.Submit(tasks);
}

void ExpectCurrentDevice(int expected) {
  int current = -1;
  ASSERT_CUDA(cudaGetDevice(&current));
  EXPECT_EQ(current, expected) << "the runtime changed the caller's current device";
}

TEST(CudaRuntimeTest, ListsDevicesWithNvidiaSmiUuids) {
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  int count = 0;
  ASSERT_CUDA(cudaGetDeviceCount(&count));
  ASSERT_EQ(gpu->devices().size(), static_cast<size_t>(count));
  const std::regex uuid("GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  for (int i = 0; i < count; ++i) {
    const GpuDeviceInfo& d = gpu->devices()[i];
    EXPECT_EQ(d.ordinal, i);
    EXPECT_TRUE(std::regex_match(d.uuid, uuid)) << d.uuid;
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.total_memory, 0u);
    EXPECT_GT(d.sm_count, 0);
    ASSERT_OK_AND_ASSIGN(const int ordinal, gpu->OrdinalOf(d.uuid));
    EXPECT_EQ(ordinal, i);
  }
}

TEST(CudaRuntimeTest, WorkerRunsRealPlansDeviceToDeviceByteExact) {
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  ASSERT_FALSE(gpu->devices().empty());
  const TransferSpec spec = Spec();
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> src, gpu->AllocateDevice(0, SideBytes(spec.src)));
  EXPECT_EQ(src->place(), MemoryPlace::kDevice);
  EXPECT_EQ(src->device(), 0);
  const std::vector<uint8_t> src_bytes = RandomBytes(SideBytes(spec.src), 11);
  ASSERT_CUDA(cudaMemcpy(reinterpret_cast<void*>(src->base()), src_bytes.data(), src_bytes.size(),
                         cudaMemcpyHostToDevice));
  std::vector<uint8_t> expected(SideBytes(spec.dst), kPoison);
  Reference(src_bytes, expected);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Executor> worker, gpu->CreateWorker(0, 16));
  EXPECT_EQ(worker->name(), "gpu:" + gpu->devices()[0].uuid);
  ExpectCurrentDevice(0);
  const std::vector<BackendOption> options = {{Backend::kKernel, 0},
                                              {Backend::kKernel, 2},
                                              {Backend::kBatch, 0},
                                              {Backend::kAsync, 0},
                                              {Backend::kAuto, 0}};
  std::vector<std::shared_ptr<Memory>> dsts;
  std::vector<std::unique_ptr<GpuJob>> jobs(options.size());
  std::vector<std::unique_ptr<JobTask>> tasks;
  for (size_t i = 0; i < options.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> dst, gpu->AllocateDevice(0, SideBytes(spec.dst)));
    ASSERT_CUDA(cudaMemset(reinterpret_cast<void*>(dst->base()), kPoison, dst->size()));
    dsts.push_back(dst);
    jobs[i] = std::make_unique<GpuJob>();
    tasks.push_back(jobs[i]->MakeTask(src, dst, options[i].backend, options[i].max_sms));
  }
  ASSERT_CUDA(cudaDeviceSynchronize());
  ASSERT_OK(worker->Submit(tasks));  // one batch: launched back to back, completed in order
  for (size_t i = 0; i < options.size(); ++i) {
    SCOPED_TRACE(BackendOptionName(options[i]));
    ASSERT_TRUE(jobs[i]->Wait());
    ASSERT_OK(jobs[i]->outcome.status);
    EXPECT_NE(jobs[i]->outcome.backend, Backend::kAuto);
    EXPECT_GE(jobs[i]->outcome.run, absl::ZeroDuration());
    EXPECT_TRUE(Download(dsts[i]->base(), dsts[i]->size()) == expected) << "not byte-exact";
  }
  worker->Drain();
  EXPECT_EQ(worker->jobs_done(), options.size());
}

TEST(CudaRuntimeTest, WorkerDropsCancelledAndLateTasksAndBoundsItsQueue) {
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  const TransferSpec spec = Spec();
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> src, gpu->AllocateDevice(0, SideBytes(spec.src)));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> dst, gpu->AllocateDevice(0, SideBytes(spec.dst)));
  ASSERT_CUDA(cudaMemset(reinterpret_cast<void*>(dst->base()), kPoison, dst->size()));
  ASSERT_CUDA(cudaDeviceSynchronize());
  GpuJob cancelled, late, queued, rejected;
  std::promise<void> running, release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Executor> worker, gpu->CreateWorker(0, 2));

  // A task whose done blocks the worker thread, so the next ones stay queued.
  auto blocker = std::make_unique<JobTask>(
      TransferPlan::Build(spec, Table(spec.src, src->base()), Table(spec.dst, dst->base()), {})
          .value());
  blocker->done = [&running, released](const JobOutcome&) {
    running.set_value();
    released.wait();
  };
  ASSERT_OK(SubmitOne(*worker, std::move(blocker)));
  running.get_future().wait();

  std::unique_ptr<JobTask> t1 = cancelled.MakeTask(src, dst, Backend::kKernel, 0);
  t1->cancelled = std::make_shared<CancelToken>(true);
  std::unique_ptr<JobTask> t2 = late.MakeTask(src, dst, Backend::kKernel, 0);
  t2->deadline = absl::Now() - absl::Milliseconds(1);
  std::vector<std::unique_ptr<JobTask>> two;
  two.push_back(std::move(t1));
  two.push_back(std::move(t2));
  ASSERT_OK(worker->Submit(two));
  std::vector<std::unique_ptr<JobTask>> full;
  full.push_back(queued.MakeTask(src, dst, Backend::kKernel, 0));
  const absl::Status exhausted = worker->Submit(full);
  EXPECT_EQ(exhausted.code(), absl::StatusCode::kResourceExhausted) << exhausted;
  EXPECT_NE(std::string(exhausted.message()).find("queue holds 2 of 2 tasks; 1 more"),
            std::string::npos)
      << exhausted;
  ASSERT_EQ(full.size(), 1u) << "a rejected task stays with the caller";

  release.set_value();
  ASSERT_TRUE(cancelled.Wait());
  ASSERT_TRUE(late.Wait());
  EXPECT_EQ(cancelled.outcome.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(late.outcome.status.code(), absl::StatusCode::kDeadlineExceeded);
  worker->Drain();
  EXPECT_EQ(worker->Submit(full).code(), absl::StatusCode::kUnavailable);
  const std::vector<uint8_t> after = Download(dst->base(), dst->size());
  EXPECT_TRUE(after == std::vector<uint8_t>(dst->size(), kPoison)) << "a dropped task copied";
}

TEST(CudaRuntimeTest, OpenIpcRejectsMalformedHandlesAndUnknownUuids) {
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  const std::string uuid = gpu->devices()[0].uuid;
  for (size_t bytes : {size_t{0}, size_t{63}, size_t{65}, size_t{1} << 20}) {
    const auto r = gpu->OpenIpc(std::string(bytes, '\x01'), uuid, 0, 4096);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bytes << ": " << r.status();
  }
  const std::string unknown = "GPU-ffffffff-ffff-ffff-ffff-ffffffffffff";
  EXPECT_EQ(gpu->OpenIpc(std::string(64, '\x01'), unknown, 0, 4096).status().code(),
            absl::StatusCode::kFailedPrecondition);
  for (const std::string& garbage : {std::string(64, '\x5a'), std::string(64, '\0')}) {
    const auto r = gpu->OpenIpc(garbage, uuid, 0, 4096);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(std::string(r.status().message()).find("expandable segments"), std::string::npos);
  }
  // The daemon's own memory cannot come back through legacy IPC.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> own, gpu->AllocateDevice(0, 1 << 20));
  cudaIpcMemHandle_t handle;
  ASSERT_CUDA(cudaIpcGetMemHandle(&handle, reinterpret_cast<void*>(own->base())));
  const auto r = gpu->OpenIpc(std::string(handle.reserved, 64), uuid, 0, 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  ASSERT_CUDA(cudaGetLastError()) << "a failed open must not leave an error behind";
  ExpectCurrentDevice(0);
}

// ---- Cross-process IPC: the exporting child and the importing parent. ----

bool WriteAll(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly n bytes; false on EOF, error or (timeout_ms ≥ 0) a silence that long.
bool ReadExactly(int fd, void* data, size_t n, int timeout_ms) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    const int ready = poll(&pfd, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Runs only inside the child: exports a patterned allocation, sends handle + uuid, then serves
// 'R' (send the whole allocation back) until 'Q' or EOF.
TEST(RuntimeIpcChild, DISABLED_ExportAllocation) {
  const char* fds = std::getenv(kChildEnv);
  if (fds == nullptr) GTEST_SKIP() << "runs only as the child of RuntimeIpcTest";
  int in_fd = -1, out_fd = -1;
  ASSERT_EQ(std::sscanf(fds, "%d,%d", &in_fd, &out_fd), 2);
  ASSERT_CUDA(cudaSetDevice(0));
  void* ptr = nullptr;
  ASSERT_CUDA(cudaMalloc(&ptr, kChildBytes));
  std::vector<uint8_t> bytes(kChildBytes);
  for (uint64_t i = 0; i < kChildBytes; ++i) bytes[i] = ChildPattern(i);
  ASSERT_CUDA(cudaMemcpy(ptr, bytes.data(), kChildBytes, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaDeviceSynchronize());
  cudaIpcMemHandle_t handle;
  ASSERT_CUDA(cudaIpcGetMemHandle(&handle, ptr));
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  ASSERT_FALSE(gpu->devices().empty());
  const std::string message = std::string(handle.reserved, 64) + gpu->devices()[0].uuid;
  ASSERT_EQ(message.size(), 64 + kUuidBytes);
  ASSERT_TRUE(WriteAll(out_fd, message.data(), message.size()));
  char command = 0;
  while (ReadExactly(in_fd, &command, 1, -1) && command == 'R') {
    ASSERT_CUDA(cudaMemcpy(bytes.data(), ptr, kChildBytes, cudaMemcpyDeviceToHost));
    ASSERT_TRUE(WriteAll(out_fd, bytes.data(), kChildBytes));
  }
  ASSERT_CUDA(cudaFree(ptr));
}

uint8_t SecondPattern(uint64_t i) { return static_cast<uint8_t>(i * 7 + 201); }

// Runs only inside the child (DESIGN §4.9): exports allocation A (ChildPattern), then on 'F'
// frees it, allocates B of the same size, which CUDA hands out at A's address, fills it with
// SecondPattern and exports it; 'R' sends B's bytes back. Each export sends the 64 handle
// bytes, the uuid and the 8-byte device address.
TEST(RuntimeIpcChild, DISABLED_ReallocateAtTheSameAddress) {
  const char* fds = std::getenv(kChildEnv);
  if (fds == nullptr) GTEST_SKIP() << "runs only as the child of RuntimeIpcTest";
  int in_fd = -1, out_fd = -1;
  ASSERT_EQ(std::sscanf(fds, "%d,%d", &in_fd, &out_fd), 2);
  ASSERT_CUDA(cudaSetDevice(0));
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  ASSERT_FALSE(gpu->devices().empty());
  auto export_allocation = [&](uint8_t (*pattern)(uint64_t), void*& ptr) {
    ASSERT_CUDA(cudaMalloc(&ptr, kChildBytes));
    std::vector<uint8_t> bytes(kChildBytes);
    for (uint64_t i = 0; i < kChildBytes; ++i) bytes[i] = pattern(i);
    ASSERT_CUDA(cudaMemcpy(ptr, bytes.data(), kChildBytes, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaDeviceSynchronize());
    cudaIpcMemHandle_t handle;
    ASSERT_CUDA(cudaIpcGetMemHandle(&handle, ptr));
    const uint64_t address = reinterpret_cast<uint64_t>(ptr);
    std::string message = std::string(handle.reserved, 64) + gpu->devices()[0].uuid;
    message.append(reinterpret_cast<const char*>(&address), sizeof(address));
    ASSERT_TRUE(WriteAll(out_fd, message.data(), message.size()));
  };
  void* a = nullptr;
  export_allocation(ChildPattern, a);
  ASSERT_FALSE(HasFatalFailure());
  char command = 0;
  ASSERT_TRUE(ReadExactly(in_fd, &command, 1, -1));
  ASSERT_EQ(command, 'F');
  ASSERT_CUDA(cudaFree(a));
  void* b = nullptr;
  export_allocation(SecondPattern, b);
  ASSERT_FALSE(HasFatalFailure());
  std::vector<uint8_t> bytes(kChildBytes);
  while (ReadExactly(in_fd, &command, 1, -1) && command == 'R') {
    ASSERT_CUDA(cudaMemcpy(bytes.data(), b, kChildBytes, cudaMemcpyDeviceToHost));
    ASSERT_TRUE(WriteAll(out_fd, bytes.data(), kChildBytes));
  }
  ASSERT_CUDA(cudaFree(b));
}

// Runs only inside a child (a sticky error would poison every later test of this process): a
// kernel fault makes its job INTERNAL, and every later job fails fast with INTERNAL.
TEST(RuntimeIpcChild, DISABLED_StickyErrorFailsLaterJobs) {
  if (std::getenv(kChildEnv) == nullptr) GTEST_SKIP() << "runs only as a child of RuntimeIpcTest";
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  const TransferSpec spec = Spec();
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> src, gpu->AllocateDevice(0, SideBytes(spec.src)));
  // Not null (the plan accepts it) but unmapped: the kernel faults.
  auto bogus =
      std::make_shared<Memory>(0x1000, SideBytes(spec.dst), MemoryPlace::kDevice, 0, true, nullptr);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Executor> worker, gpu->CreateWorker(0, 8));
  GpuJob faulting;
  ASSERT_OK(SubmitOne(*worker, faulting.MakeTask(src, bogus, Backend::kKernel, 0)));
  ASSERT_TRUE(faulting.Wait());
  EXPECT_EQ(faulting.outcome.status.code(), absl::StatusCode::kInternal) << faulting.outcome.status;
  GpuJob later;
  // A valid plan (src and dst have the same byte size); it must not even be launched.
  ASSERT_OK(SubmitOne(*worker, later.MakeTask(src, src, Backend::kKernel, 0)));
  ASSERT_TRUE(later.Wait());
  EXPECT_EQ(later.outcome.status.code(), absl::StatusCode::kInternal) << later.outcome.status;
  EXPECT_NE(std::string(later.outcome.status.message()).find("every later job"), std::string::npos)
      << later.outcome.status;
  std::printf("sticky outcome: %s\n", later.outcome.status.ToString().c_str());
  worker->Drain();
}

// The child process and its two pipes; the destructor ends and reaps it.
class Child {
 public:
  // Runs the disabled test RuntimeIpcChild.<test> in a fresh process of this binary.
  bool Spawn(const std::string& test) {
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) return false;
    to_ = to_child[1];
    from_ = from_child[0];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 100);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 101);
    std::vector<std::string> env_strings = {std::string(kChildEnv) + "=100,101"};
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "GTEST_", 6) != 0) env_strings.push_back(*e);  // no report files
    }
    std::vector<char*> envp;
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe";
    std::string filter = "--gtest_filter=RuntimeIpcChild." + test;
    std::string disabled = "--gtest_also_run_disabled_tests";
    char* argv[] = {exe.data(), filter.data(), disabled.data(), nullptr};
    const int rc = posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    if (rc != 0) pid_ = -1;
    return rc == 0;
  }
  // Sends 'Q', closes the pipes and returns the child's exit status (-1 if it had to be killed).
  int Finish() {
    if (pid_ < 0) return -1;
    if (to_ >= 0) {
      WriteAll(to_, "Q", 1);
      close(to_);
      to_ = -1;
    }
    int status = 0;
    for (int i = 0; i < 300; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return -1;
  }
  ~Child() {
    Finish();
    if (from_ >= 0) close(from_);
  }
  int to() const { return to_; }
  int from() const { return from_; }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
};

TEST(RuntimeIpcTest, CrossProcessRegionReadsAndWritesTheExportersMemory) {
  Child child;
  ASSERT_TRUE(child.Spawn("DISABLED_ExportAllocation")) << std::strerror(errno);
  std::string message(64 + kUuidBytes, '\0');
  ASSERT_TRUE(ReadExactly(child.from(), message.data(), message.size(), 120000))
      << "the child sent no handle (see its output above)";
  const std::string handle = message.substr(0, 64);
  const std::string uuid = message.substr(64);

  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  // Beyond the real allocation: OUT_OF_RANGE naming both sizes; the mapping is not kept.
  for (uint64_t offset : {uint64_t{0}, kChildBytes}) {
    const auto r = gpu->OpenIpc(handle, uuid, offset, kChildBytes - offset + 1);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange) << r.status();
    EXPECT_NE(std::string(r.status().message()).find(std::to_string(kChildBytes)),
              std::string::npos)
        << r.status();
  }
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> whole, gpu->OpenIpc(handle, uuid, 0, kChildBytes));
  whole.reset();  // closes the mapping; the next open maps it again

  const TransferSpec spec = Spec();
  const uint64_t offset = (uint64_t{1} << 20) + 256;
  const uint64_t region_bytes = SideBytes(spec.dst);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> region,
                       gpu->OpenIpc(handle, uuid, offset, region_bytes));
  EXPECT_EQ(region->size(), region_bytes);
  EXPECT_EQ(region->place(), MemoryPlace::kDevice);
  EXPECT_EQ(region->device(), 0);
  EXPECT_TRUE(region->gpu_visible());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> head, gpu->OpenIpc(handle, uuid, 0, 4096));
  EXPECT_EQ(head->base() + offset, region->base()) << "one mapping per handle, shared";

  std::vector<uint8_t> expected = Download(region->base(), region_bytes);
  for (uint64_t i = 0; i < region_bytes; ++i) {
    ASSERT_EQ(expected[i], ChildPattern(offset + i)) << "reading through the mapping, byte " << i;
  }
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> src, gpu->AllocateDevice(0, SideBytes(spec.src)));
  const std::vector<uint8_t> src_bytes = RandomBytes(SideBytes(spec.src), 23);
  ASSERT_CUDA(cudaMemcpy(reinterpret_cast<void*>(src->base()), src_bytes.data(), src_bytes.size(),
                         cudaMemcpyHostToDevice));
  Reference(src_bytes, expected);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Executor> worker, gpu->CreateWorker(0, 4));
  GpuJob job;
  ASSERT_OK(SubmitOne(*worker, job.MakeTask(src, region, Backend::kKernel, 0)));
  ASSERT_TRUE(job.Wait());
  ASSERT_OK(job.outcome.status);
  worker->Drain();
  region.reset();
  head.reset();  // the last regions go: the mapping is closed

  ASSERT_TRUE(WriteAll(child.to(), "R", 1));
  std::vector<uint8_t> exporter(kChildBytes);
  ASSERT_TRUE(ReadExactly(child.from(), exporter.data(), exporter.size(), 120000));
  for (uint64_t i = 0; i < kChildBytes; ++i) {
    const bool inside = i >= offset && i < offset + region_bytes;
    const uint8_t want = inside ? expected[i - offset] : ChildPattern(i);
    ASSERT_EQ(exporter[i], want) << "exporter byte " << i
                                 << (inside ? " (converted)" : " (outside)");
  }
  EXPECT_EQ(child.Finish(), 0) << "the child's own checks failed (see its output)";
}

// DESIGN §4.9: the exporter frees an allocation the daemon still has mapped and allocates a new
// one at the same address. Its new handle must map the new memory: registering it reads and
// writes the exporter's new bytes, never the stale mapping of the old allocation.
TEST(RuntimeIpcTest, AllocationFreedAndReallocatedAtTheSameAddressIsMappedAfresh) {
  Child child;
  ASSERT_TRUE(child.Spawn("DISABLED_ReallocateAtTheSameAddress")) << std::strerror(errno);
  struct Export {
    std::string handle, uuid;
    uint64_t address = 0;
  };
  auto receive = [&](Export& e) {
    std::string message(64 + kUuidBytes + 8, '\0');
    ASSERT_TRUE(ReadExactly(child.from(), message.data(), message.size(), 120000))
        << "the child sent no handle (see its output above)";
    e.handle = message.substr(0, 64);
    e.uuid = message.substr(64, kUuidBytes);
    std::memcpy(&e.address, message.data() + 64 + kUuidBytes, sizeof(e.address));
  };
  Export first, second;
  receive(first);
  ASSERT_FALSE(HasFatalFailure());
  std::unique_ptr<GpuRuntime> gpu = CreateGpuRuntime();
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> old_region,
                       gpu->OpenIpc(first.handle, first.uuid, 0, kChildBytes));
  const std::vector<uint8_t> before = Download(old_region->base(), 4096);
  for (uint64_t i = 0; i < before.size(); ++i) ASSERT_EQ(before[i], ChildPattern(i)) << i;

  ASSERT_TRUE(WriteAll(child.to(), "F", 1));  // free + re-allocate while we keep the old mapping
  receive(second);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(second.address, first.address)
      << "CUDA did not re-use the freed address, so this run cannot show the case";
  ASSERT_NE(second.handle, first.handle)
      << "CUDA gave the new allocation the old handle: a handle-keyed mapping cache would be stale";

  const TransferSpec spec = Spec();
  const uint64_t offset = uint64_t{1} << 20;
  const uint64_t region_bytes = SideBytes(spec.dst);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> region,
                       gpu->OpenIpc(second.handle, second.uuid, offset, region_bytes));
  EXPECT_NE(region->base(), old_region->base() + offset) << "the old mapping was reused";
  std::vector<uint8_t> expected = Download(region->base(), region_bytes);
  for (uint64_t i = 0; i < region_bytes; ++i) {
    ASSERT_EQ(expected[i], SecondPattern(offset + i)) << "new allocation, byte " << i;
  }
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Memory> src, gpu->AllocateDevice(0, SideBytes(spec.src)));
  const std::vector<uint8_t> src_bytes = RandomBytes(SideBytes(spec.src), 29);
  ASSERT_CUDA(cudaMemcpy(reinterpret_cast<void*>(src->base()), src_bytes.data(), src_bytes.size(),
                         cudaMemcpyHostToDevice));
  Reference(src_bytes, expected);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Executor> worker, gpu->CreateWorker(0, 4));
  GpuJob job;
  ASSERT_OK(SubmitOne(*worker, job.MakeTask(src, region, Backend::kKernel, 0)));
  ASSERT_TRUE(job.Wait());
  ASSERT_OK(job.outcome.status);
  worker->Drain();
  region.reset();
  old_region.reset();

  ASSERT_TRUE(WriteAll(child.to(), "R", 1));
  std::vector<uint8_t> exporter(kChildBytes);
  ASSERT_TRUE(ReadExactly(child.from(), exporter.data(), exporter.size(), 120000));
  for (uint64_t i = 0; i < kChildBytes; ++i) {
    const bool inside = i >= offset && i < offset + region_bytes;
    const uint8_t want = inside ? expected[i - offset] : SecondPattern(i);
    ASSERT_EQ(exporter[i], want) << "exporter byte " << i
                                 << (inside ? " (converted)" : " (outside)");
  }
  EXPECT_EQ(child.Finish(), 0) << "the child's own checks failed (see its output)";
}

TEST(RuntimeIpcTest, StickyErrorInAChildFailsItsLaterJobsFast) {
  Child child;
  ASSERT_TRUE(child.Spawn("DISABLED_StickyErrorFailsLaterJobs")) << std::strerror(errno);
  EXPECT_EQ(child.Finish(), 0) << "the child's checks failed (see its output)";
}

}  // namespace
}  // namespace kvshuttle::gputest
