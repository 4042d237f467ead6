// Host regions: named shm objects and memfds mapped into the daemon and registered with the GPU
// runtime, undoing everything on any failure.
#include "server/memory/host_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace kvshuttle {
namespace {

// Longest accepted name, leading '/' included (NAME_MAX).
constexpr size_t kMaxNameBytes = 255;
// Client-supplied names are quoted at most this long in messages.
constexpr size_t kMaxQuotedBytes = 64;

std::string Quoted(absl::string_view name) {
  const absl::string_view shown = name.substr(0, kMaxQuotedBytes);
  return absl::StrCat("\"", absl::CHexEscape(shown), name.size() > shown.size() ? "...\"" : "\"");
}

absl::Status ValidateName(absl::string_view name) {
  const char* problem = nullptr;
  if (name.empty()) {
    problem = "is empty";
  } else if (name.size() > kMaxNameBytes) {
    problem = "is longer than 255 bytes";
  } else if (name[0] != '/') {
    problem = "does not start with '/'";
  } else if (name == "/" || name == "/." || name == "/..") {
    problem = "names no object";
  } else if (name.find('/', 1) != absl::string_view::npos) {
    problem = "contains a '/' after the first byte";
  } else if (name.find('\0') != absl::string_view::npos) {
    problem = "contains a NUL byte";
  }
  if (problem == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("shm.name: ", Quoted(name), " (", name.size(), " bytes) ", problem,
                   "; a POSIX shm name is '/' followed by 1 to 254 bytes without '/'"));
}

absl::Status ErrnoStatus(int error, absl::string_view context) {
  const std::string message = absl::StrCat(context, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EINVAL:
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(message);
    case ELOOP:  // shm_open refuses to follow a symbolic link (O_NOFOLLOW)
      return absl::InvalidArgumentError(
          absl::StrCat(message, " (a symbolic link; lend the object itself)"));
    case ENXIO:  // a socket file
    case ENODEV:
    case EISDIR:
      return absl::InvalidArgumentError(absl::StrCat(message, " (not a shared-memory object)"));
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

}  // namespace

absl::Status ValidateShmRequest(absl::string_view name, uint64_t offset, uint64_t size) {
  RETURN_IF_ERROR(ValidateName(name));
  if (size == 0) return absl::InvalidArgumentError("shm.size: 0; must be > 0");
  if (offset > UINT64_MAX - size) {
    return absl::OutOfRangeError(
        absl::StrCat("shm: offset ", offset, " + size ", size, " overflows 64 bits"));
  }
  return absl::OkStatus();
}

namespace {

// Maps [offset, offset + size) of the regular file `fd` (`what` names it in messages) and
// registers the mapping with `gpu`.
absl::StatusOr<std::shared_ptr<Memory>> MapHostFd(int fd, const struct stat& st,
                                                  absl::string_view what, uint64_t offset,
                                                  uint64_t size, GpuRuntime& gpu) {
  const uint64_t object_bytes = st.st_size < 0 ? 0 : static_cast<uint64_t>(st.st_size);
  if (offset + size > object_bytes) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " + size ", size, " = ",
                                              offset + size, " bytes exceeds the size of ", what,
                                              " (", object_bytes, " bytes)"));
  }
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t map_offset = offset / page * page;
  const size_t map_bytes = static_cast<size_t>(offset + size - map_offset);
  void* mapped = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                        static_cast<off_t>(map_offset));
  if (mapped == MAP_FAILED) {
    return ErrnoStatus(errno, absl::StrCat("mmap of ", map_bytes, " bytes of ", what,
                                           " at offset ", map_offset));
  }
  void* const base = static_cast<char*>(mapped) + (offset - map_offset);
  absl::StatusOr<std::shared_ptr<void>> registration = gpu.RegisterHost(base, size);
  if (!registration.ok()) {
    ::munmap(mapped, map_bytes);
    return registration.status();
  }
  std::shared_ptr<void> guard = std::move(registration).value();
  const bool gpu_visible = guard != nullptr;
  return std::make_shared<Memory>(reinterpret_cast<uint64_t>(base), size, MemoryPlace::kHost, -1,
                                  gpu_visible,
                                  [guard = std::move(guard), mapped, map_bytes]() mutable {
                                    guard.reset();  // unregister before unmapping
                                    ::munmap(mapped, map_bytes);
                                  });
}

}  // namespace

absl::StatusOr<std::shared_ptr<Memory>> MapSharedMemory(absl::string_view name, uint64_t offset,
                                                        uint64_t size, const ShmAccess& access,
                                                        GpuRuntime& gpu) {
  RETURN_IF_ERROR(ValidateShmRequest(name, offset, size));
  const std::string path(name);  // NUL-terminated (no NUL inside: checked above)
  // O_NONBLOCK: a FIFO planted in /dev/shm must not block the daemon.
  const int fd = ::shm_open(path.c_str(), O_RDWR | O_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("shm.name: shm_open(", Quoted(name), ")"));
  FdCloser closer(fd);  // the mapping outlives the descriptor
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("shm: fstat(", Quoted(name), ")"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm.name: ", Quoted(name), " is not a shared-memory object"));
  }
  // Checked on the opened object (fstat), so it cannot change between check and mapping.
  const bool trusted_group =
      access.trust_gid >= 0 && st.st_gid == static_cast<gid_t>(access.trust_gid);
  if (st.st_uid != access.uid && !trusted_group) {
    return absl::PermissionDeniedError(absl::StrCat(
        "shm.name: ", Quoted(name), " belongs to uid ", st.st_uid, " (group ", st.st_gid,
        "), not to the caller (uid ", access.uid,
        "); lend your own objects, or memfd memory over the descriptor side channel"));
  }
  absl::StatusOr<std::shared_ptr<Memory>> memory =
      MapHostFd(fd, st, absl::StrCat("shm object ", Quoted(name)), offset, size, gpu);
  if (!memory.ok()) {
    return absl::Status(memory.status().code(), absl::StrCat("shm: ", memory.status().message()));
  }
  return memory;
}

absl::StatusOr<std::shared_ptr<Memory>> MapMemfd(int fd, uint64_t offset, uint64_t size,
                                                 GpuRuntime& gpu) {
  if (size == 0) return absl::InvalidArgumentError("memfd.size: 0; must be > 0");
  if (offset > UINT64_MAX - size) {
    return absl::OutOfRangeError(
        absl::StrCat("memfd: offset ", offset, " + size ", size, " overflows 64 bits"));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "memfd: fstat");
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (!S_ISREG(st.st_mode) || seals < 0) {
    const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a pipe"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                       : S_ISREG(st.st_mode)  ? "a regular file"
                                              : "not a file";
    return absl::InvalidArgumentError(absl::StrCat(
        "memfd: the descriptor is ", kind,
        ", not a memfd; create host memory with memfd_create(MFD_ALLOW_SEALING)"));
  }
  if ((seals & F_SEAL_SHRINK) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "memfd: not sealed against shrinking (seals 0x", absl::Hex(seals),
        "); add F_SEAL_SHRINK (fcntl F_ADD_SEALS) before lending it",
        (seals & F_SEAL_SEAL) != 0 ? " — this one cannot be sealed any more (F_SEAL_SEAL, or a "
                                     "named shm object)"
                                   : ""));
  }
  absl::StatusOr<std::shared_ptr<Memory>> memory = MapHostFd(fd, st, "the memfd", offset, size, gpu);
  if (!memory.ok()) {
    return absl::Status(memory.status().code(), absl::StrCat("memfd: ", memory.status().message()));
  }
  return memory;
}

}  // namespace kvshuttle
