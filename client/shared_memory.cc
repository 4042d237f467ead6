// POSIX shared memory: shm_open + ftruncate + mmap, undone on every error path.
#include "client/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvshuttle {
namespace {

std::string UniqueName() {
  static std::atomic<uint64_t> counter{0};
  std::random_device random;
  return absl::StrFormat("/kvshuttle-%d-%d-%08x", getpid(), counter.fetch_add(1),
                         static_cast<uint32_t>(random()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedMemory>> SharedMemory::Create(size_t bytes, mode_t mode) {
  if (bytes == 0) return absl::InvalidArgumentError("shared memory size: 0; must be > 0");
  std::string name = UniqueName();
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("shm_open(", name, ")"));
  absl::Status status;
  void* data = MAP_FAILED;
  if (fchmod(fd, mode) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("fchmod(", name, ")"));
  } else if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("ftruncate(", name, ", ", bytes, ")"));
  } else {
    data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("mmap(", name, ", ", bytes, ")"));
    }
  }
  close(fd);
  if (!status.ok()) {
    shm_unlink(name.c_str());
    return status;
  }
  return std::unique_ptr<SharedMemory>(new SharedMemory(std::move(name), data, bytes));
}

SharedMemory::~SharedMemory() {
  munmap(data_, size_);
  shm_unlink(name_.c_str());
}

}  // namespace kvshuttle
