// MapSharedMemory and MapMemfd against real objects. Named shm: the mapped bytes are the object's bytes at
// the requested offset (both ways), every malformed request fails with its exact code, the
// GPU registration covers the exact range, and nothing stays mapped after release or failure.
#include "server/memory/host_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

uint64_t PageSize() { return static_cast<uint64_t>(sysconf(_SC_PAGESIZE)); }

// The caller as the owner of the objects this test creates.
ShmAccess Mine() { return ShmAccess{geteuid(), -1}; }

// True when every page of [ptr, ptr + bytes) is mapped in this process.
bool IsMapped(const void* ptr, uint64_t bytes) {
  const uint64_t page = PageSize();
  const uint64_t start = reinterpret_cast<uint64_t>(ptr) / page * page;
  const uint64_t end = reinterpret_cast<uint64_t>(ptr) + bytes;
  std::vector<unsigned char> residency((end - start + page - 1) / page);
  return mincore(reinterpret_cast<void*>(start), end - start, residency.data()) == 0;
}

// A GpuRuntime whose RegisterHost records its arguments and returns a chosen result; whether
// the memory was still mapped when the guard ran is recorded too.
class FakeGpuRuntime : public GpuRuntime {
 public:
  const std::vector<GpuDeviceInfo>& devices() const override { return devices_; }
  absl::StatusOr<std::shared_ptr<Memory>> OpenIpc(absl::string_view, absl::string_view, uint64_t,
                                                  uint64_t) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::shared_ptr<void>> RegisterHost(void* ptr, uint64_t bytes) override {
    registered_ptr = ptr;
    registered_bytes = bytes;
    if (!fail_with.ok()) return fail_with;
    if (!give_guard) return std::shared_ptr<void>();
    return std::shared_ptr<void>(ptr, [this, bytes](void* p) {
      ++unregistered;
      mapped_at_unregister = IsMapped(p, bytes);
    });
  }
  absl::StatusOr<std::shared_ptr<Memory>> AllocateDevice(int, uint64_t) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::shared_ptr<Memory>> AllocateHost(uint64_t) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::unique_ptr<Executor>> CreateWorker(int, QueueLimits) override {
    return absl::UnimplementedError("fake");
  }

  absl::Status fail_with;
  bool give_guard = false;
  void* registered_ptr = nullptr;
  uint64_t registered_bytes = 0;
  int unregistered = 0;
  bool mapped_at_unregister = false;

 private:
  std::vector<GpuDeviceInfo> devices_;
};

class MapSharedMemoryTest : public ::testing::Test {
 protected:
  // An object of 3 pages + 100 bytes whose byte i is Pattern(i).
  void SetUp() override {
    name_ = absl::StrCat("/kvs_rt_test_", getpid(), "_", counter_++);
    object_bytes_ = 3 * PageSize() + 100;
    const int fd = shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0) << "shm_open(" << name_ << "): " << std::strerror(errno);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(object_bytes_)), 0) << std::strerror(errno);
    std::vector<uint8_t> bytes(object_bytes_);
    for (uint64_t i = 0; i < object_bytes_; ++i) bytes[i] = Pattern(i);
    ASSERT_EQ(pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    fd_ = fd;
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
    shm_unlink(name_.c_str());
  }

  static uint8_t Pattern(uint64_t i) { return static_cast<uint8_t>(i * 7 + 3); }

  static int counter_;
  std::string name_;
  uint64_t object_bytes_ = 0;
  int fd_ = -1;
  FakeGpuRuntime gpu_;
};
int MapSharedMemoryTest::counter_ = 0;

TEST_F(MapSharedMemoryTest, MapsTheRequestedBytesBothWays) {
  const uint64_t offset = PageSize() + 17;  // not page-aligned: the mapping starts before it
  const uint64_t size = PageSize() + 50;
  absl::StatusOr<std::shared_ptr<Memory>> memory = MapSharedMemory(name_, offset, size, Mine(), gpu_);
  ASSERT_TRUE(memory.ok()) << memory.status();
  const Memory& m = **memory;
  EXPECT_EQ(m.size(), size);
  EXPECT_EQ(m.place(), MemoryPlace::kHost);
  EXPECT_EQ(m.device(), -1);
  EXPECT_FALSE(m.gpu_visible()) << "no registration guard means kernels cannot use it";
  EXPECT_EQ(m.base() % PageSize(), offset % PageSize());
  EXPECT_EQ(reinterpret_cast<uint64_t>(gpu_.registered_ptr), m.base());
  EXPECT_EQ(gpu_.registered_bytes, size) << "registration must cover exactly the region";

  auto* bytes = reinterpret_cast<uint8_t*>(m.base());
  for (uint64_t i = 0; i < size; ++i) {
    ASSERT_EQ(bytes[i], Pattern(offset + i)) << "byte " << i;
  }
  bytes[0] = 0xAB;
  bytes[size - 1] = 0xCD;
  uint8_t back[2] = {};
  ASSERT_EQ(pread(fd_, &back[0], 1, static_cast<off_t>(offset)), 1);
  ASSERT_EQ(pread(fd_, &back[1], 1, static_cast<off_t>(offset + size - 1)), 1);
  EXPECT_EQ(back[0], 0xAB) << "writes must reach the shared object (MAP_SHARED)";
  EXPECT_EQ(back[1], 0xCD);

  const void* base = bytes;
  ASSERT_TRUE(IsMapped(base, size));
  memory->reset();
  EXPECT_FALSE(IsMapped(base, size)) << "releasing the Memory must unmap it";
}

TEST_F(MapSharedMemoryTest, WholeObjectAndLastByteAreInRange) {
  absl::StatusOr<std::shared_ptr<Memory>> whole = MapSharedMemory(name_, 0, object_bytes_, Mine(), gpu_);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(reinterpret_cast<uint8_t*>((*whole)->base())[object_bytes_ - 1],
            Pattern(object_bytes_ - 1));
  absl::StatusOr<std::shared_ptr<Memory>> last = MapSharedMemory(name_, object_bytes_ - 1, 1, Mine(), gpu_);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*reinterpret_cast<uint8_t*>((*last)->base()), Pattern(object_bytes_ - 1));
}

TEST_F(MapSharedMemoryTest, RegistrationGuardMakesItGpuVisibleAndRunsBeforeUnmap) {
  gpu_.give_guard = true;
  absl::StatusOr<std::shared_ptr<Memory>> memory = MapSharedMemory(name_, 10, 20, Mine(), gpu_);
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_TRUE((*memory)->gpu_visible());
  const void* base = reinterpret_cast<void*>((*memory)->base());
  memory->reset();
  EXPECT_EQ(gpu_.unregistered, 1);
  EXPECT_TRUE(gpu_.mapped_at_unregister) << "unregister must happen before munmap";
  EXPECT_FALSE(IsMapped(base, 20));
}

TEST_F(MapSharedMemoryTest, FailedRegistrationIsReturnedAndUnmaps) {
  gpu_.fail_with = absl::FailedPreconditionError("fake registration failure");
  absl::StatusOr<std::shared_ptr<Memory>> memory = MapSharedMemory(name_, 5, 100, Mine(), gpu_);
  EXPECT_TRUE(HasStatus(memory, absl::StatusCode::kFailedPrecondition, {"fake registration"}));
  ASSERT_NE(gpu_.registered_ptr, nullptr);
  EXPECT_FALSE(IsMapped(gpu_.registered_ptr, 100)) << "the mapping leaked";
}

TEST_F(MapSharedMemoryTest, BadNamesAreInvalidArgument) {
  const std::string too_long = "/" + std::string(255, 'a');  // 256 bytes
  const std::string with_nul("/ab\0cd", 6);
  for (const std::string& bad :
       {std::string(), std::string("noslash"), std::string("/"), std::string("/a/b"),
        std::string("//x"), std::string("/."), std::string("/.."), too_long, with_nul}) {
    EXPECT_TRUE(HasStatus(MapSharedMemory(bad, 0, 1, Mine(), gpu_), absl::StatusCode::kInvalidArgument,
                          {"shm.name"}))
        << "name of " << bad.size() << " bytes";
  }
  EXPECT_EQ(gpu_.registered_ptr, nullptr) << "nothing may be registered for a bad name";
}

TEST_F(MapSharedMemoryTest, MissingObjectIsNotFound) {
  const std::string missing = name_ + "_missing";
  EXPECT_TRUE(
      HasStatus(MapSharedMemory(missing, 0, 1, Mine(), gpu_), absl::StatusCode::kNotFound, {missing}));
  const std::string longest = "/" + std::string(254, 'z');  // 255 bytes: valid, absent
  EXPECT_TRUE(HasStatus(MapSharedMemory(longest, 0, 1, Mine(), gpu_), absl::StatusCode::kNotFound, {}));
}

TEST_F(MapSharedMemoryTest, SizeZeroIsInvalidArgument) {
  EXPECT_TRUE(HasStatus(MapSharedMemory(name_, 0, 0, Mine(), gpu_), absl::StatusCode::kInvalidArgument,
                        {"shm.size"}));
}

TEST_F(MapSharedMemoryTest, RangesBeyondTheObjectAreOutOfRange) {
  const std::string object = std::to_string(object_bytes_);
  struct Range {
    uint64_t offset;
    uint64_t size;
  };
  for (const Range& r :
       {Range{0, object_bytes_ + 1}, Range{object_bytes_ - 1, 2}, Range{object_bytes_, 1},
        Range{uint64_t{1} << 62, 16}, Range{10, uint64_t{1} << 40}}) {
    EXPECT_TRUE(HasStatus(MapSharedMemory(name_, r.offset, r.size, Mine(), gpu_),
                          absl::StatusCode::kOutOfRange,
                          {std::to_string(r.offset), std::to_string(r.size), object}))
        << "offset " << r.offset << " size " << r.size;
  }
  EXPECT_EQ(gpu_.registered_ptr, nullptr);
}

TEST_F(MapSharedMemoryTest, OffsetPlusSizeOverflowIsOutOfRange) {
  struct Range {
    uint64_t offset;
    uint64_t size;
  };
  for (const Range& r : {Range{UINT64_MAX, 1}, Range{UINT64_MAX - 10, 100}, Range{1, UINT64_MAX},
                         Range{UINT64_MAX / 2 + 1, UINT64_MAX / 2 + 1}}) {
    EXPECT_TRUE(HasStatus(MapSharedMemory(name_, r.offset, r.size, Mine(), gpu_),
                          absl::StatusCode::kOutOfRange, {"overflows"}))
        << "offset " << r.offset << " size " << r.size;
  }
  // Largest sum that does not wrap: still far beyond the object.
  EXPECT_TRUE(HasStatus(MapSharedMemory(name_, UINT64_MAX - 1, 1, Mine(), gpu_),
                        absl::StatusCode::kOutOfRange, {"exceeds"}));
}

TEST_F(MapSharedMemoryTest, AnObjectOfAnotherUidIsPermissionDeniedUnlessItsGroupIsTrusted) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the object another owner";
  ASSERT_EQ(fchown(fd_, 65534, 65534), 0) << std::strerror(errno);
  EXPECT_TRUE(HasStatus(MapSharedMemory(name_, 0, 16, ShmAccess{0, -1}, gpu_),
                        absl::StatusCode::kPermissionDenied, {"belongs to uid 65534", "uid 0"}));
  EXPECT_EQ(gpu_.registered_ptr, nullptr) << "nothing is mapped for a refused object";
  EXPECT_TRUE(MapSharedMemory(name_, 0, 16, ShmAccess{0, 65534}, gpu_).ok())
      << "a trusted group lends it";
  EXPECT_TRUE(MapSharedMemory(name_, 0, 16, ShmAccess{65534, -1}, gpu_).ok())
      << "its owner lends it";
}

TEST_F(MapSharedMemoryTest, SymlinksSocketsAndFifosAreInvalidArgument) {
  const std::string link = absl::StrCat(name_, "_link");
  ASSERT_EQ(symlink(("/dev/shm" + name_).c_str(), ("/dev/shm" + link).c_str()), 0);
  EXPECT_TRUE(HasStatus(MapSharedMemory(link, 0, 16, Mine(), gpu_),
                        absl::StatusCode::kInvalidArgument, {"symbolic link"}));
  unlink(("/dev/shm" + link).c_str());

  const std::string fifo = absl::StrCat(name_, "_fifo");
  ASSERT_EQ(mkfifo(("/dev/shm" + fifo).c_str(), 0600), 0);
  EXPECT_TRUE(HasStatus(MapSharedMemory(fifo, 0, 16, Mine(), gpu_),
                        absl::StatusCode::kInvalidArgument, {"not a shared-memory object"}));
  unlink(("/dev/shm" + fifo).c_str());

  const std::string sock = absl::StrCat(name_, "_sock");
  const int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = "/dev/shm" + sock;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  EXPECT_TRUE(HasStatus(MapSharedMemory(sock, 0, 16, Mine(), gpu_),
                        absl::StatusCode::kInvalidArgument, {"not a shared-memory object"}));
  close(s);
  unlink(path.c_str());
  EXPECT_EQ(gpu_.registered_ptr, nullptr);
}

// memfd: the daemon maps what it was given, and only when it cannot shrink.
class MapMemfdTest : public ::testing::Test {
 protected:
  // A memfd of `bytes` bytes, sealed with `seals` (0: none), byte i = i % 251.
  static int MakeMemfd(size_t bytes, int seals) {
    const int fd = memfd_create("kvs-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i % 251);
    EXPECT_EQ(pwrite(fd, data.data(), bytes, 0), static_cast<ssize_t>(bytes));
    if (seals != 0) EXPECT_EQ(fcntl(fd, F_ADD_SEALS, seals), 0) << std::strerror(errno);
    return fd;
  }
  FakeGpuRuntime gpu_;
};

TEST_F(MapMemfdTest, ASealedMemfdIsMappedAndOutlivesItsDescriptor) {
  const int fd = MakeMemfd(3 * PageSize(), F_SEAL_SHRINK);
  absl::StatusOr<std::shared_ptr<Memory>> memory = MapMemfd(fd, 100, PageSize(), gpu_);
  ASSERT_TRUE(memory.ok()) << memory.status();
  close(fd);
  const uint8_t* p = reinterpret_cast<const uint8_t*>((*memory)->base());
  for (uint64_t i = 0; i < PageSize(); ++i) ASSERT_EQ(p[i], static_cast<uint8_t>((100 + i) % 251));
  EXPECT_EQ((*memory)->place(), MemoryPlace::kHost);
  EXPECT_EQ((*memory)->size(), PageSize());
}

TEST_F(MapMemfdTest, AnUnsealedMemfdIsFailedPreconditionAndMapsNothing) {
  const int fd = MakeMemfd(PageSize(), 0);
  EXPECT_TRUE(HasStatus(MapMemfd(fd, 0, 16, gpu_), absl::StatusCode::kFailedPrecondition,
                        {"F_SEAL_SHRINK"}));
  ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL), 0);
  EXPECT_TRUE(HasStatus(MapMemfd(fd, 0, 16, gpu_), absl::StatusCode::kFailedPrecondition,
                        {"cannot be sealed any more"}));
  EXPECT_EQ(gpu_.registered_ptr, nullptr);
  close(fd);
}

TEST_F(MapMemfdTest, DescriptorsThatAreNotMemfdsAreInvalidArgument) {
  struct Case {
    const char* kind;
    int fd;
  };
  char file_template[] = "/tmp/kvs-memfd-test-XXXXXX";
  const int file = mkstemp(file_template);
  ASSERT_GE(file, 0);
  ASSERT_EQ(ftruncate(file, 4096), 0);
  unlink(file_template);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  const int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
  const int shm = shm_open(absl::StrCat("/kvs-memfd-test-", getpid()).c_str(),
                           O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(shm, 0);
  shm_unlink(absl::StrCat("/kvs-memfd-test-", getpid()).c_str());
  ASSERT_EQ(ftruncate(shm, 4096), 0);
  for (const Case& c : {Case{"a regular file", file}, Case{"a pipe", pipe_fds[0]},
                        Case{"a socket", sock}, Case{"a directory", dir}}) {
    EXPECT_TRUE(HasStatus(MapMemfd(c.fd, 0, 16, gpu_), absl::StatusCode::kInvalidArgument,
                          {c.kind, "not a memfd"}))
        << c.kind;
  }
  // A named shm object has seals (F_SEAL_SEAL) but can never be sealed against shrinking.
  EXPECT_TRUE(HasStatus(MapMemfd(shm, 0, 16, gpu_), absl::StatusCode::kFailedPrecondition,
                        {"F_SEAL_SHRINK"}));
  for (int fd : {file, pipe_fds[0], pipe_fds[1], sock, dir, shm}) close(fd);
  EXPECT_EQ(gpu_.registered_ptr, nullptr);
}

TEST_F(MapMemfdTest, RangesAreCheckedAgainstItsSize) {
  const int fd = MakeMemfd(PageSize(), F_SEAL_SHRINK | F_SEAL_GROW);
  EXPECT_TRUE(HasStatus(MapMemfd(fd, 0, PageSize() + 1, gpu_), absl::StatusCode::kOutOfRange,
                        {"exceeds the size of the memfd"}));
  EXPECT_TRUE(HasStatus(MapMemfd(fd, UINT64_MAX, 2, gpu_), absl::StatusCode::kOutOfRange,
                        {"overflows"}));
  EXPECT_TRUE(HasStatus(MapMemfd(fd, 0, 0, gpu_), absl::StatusCode::kInvalidArgument,
                        {"memfd.size"}));
  close(fd);
}

}  // namespace
}  // namespace kvshuttle
