// MemfdMemory and the side channel's client half (wire format: server/memory/fd_channel.h).
#include "client/memfd_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvshuttle {
namespace {

constexpr char kMagic[8] = {'K', 'V', 'S', 'F', 'D', '1', '\0', '\0'};
constexpr size_t kTokenBytes = 16;
constexpr size_t kMessageBytes = 32;

}  // namespace

absl::StatusOr<std::unique_ptr<MemfdMemory>> MemfdMemory::Create(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("memfd size: 0; must be > 0");
  const int fd = memfd_create("kvshuttle", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return absl::ErrnoToStatus(errno, "memfd_create");
  absl::Status status;
  void* data = MAP_FAILED;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("ftruncate(memfd, ", bytes, ")"));
  } else if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    status = absl::ErrnoToStatus(errno, "fcntl(memfd, F_ADD_SEALS)");
  } else {
    data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) status = absl::ErrnoToStatus(errno, "mmap(memfd)");
  }
  if (!status.ok()) {
    close(fd);
    return status;
  }
  return std::unique_ptr<MemfdMemory>(new MemfdMemory(fd, data, bytes));
}

MemfdMemory::~MemfdMemory() {
  if (data_ != nullptr) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
}

absl::Status SendDescriptors(const std::string& socket_path, absl::string_view token,
                             absl::Span<const int> fds) {
  if (token.size() != kTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("token: ", token.size(), " bytes; a descriptor token is ", kTokenBytes));
  }
  if (fds.empty()) return absl::InvalidArgumentError("fds: none given");
  sockaddr_un addr{};
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("side channel socket path \"", socket_path, "\" is empty or too long"));
  }
  const int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return absl::ErrnoToStatus(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    close(s);
    return absl::UnavailableError(absl::StrCat("side channel ", socket_path, ": connect: ",
                                               std::strerror(err)));
  }
  char message[kMessageBytes] = {};
  std::memcpy(message, kMagic, sizeof(kMagic));
  std::memcpy(message + 8, token.data(), kTokenBytes);
  const uint32_t count = static_cast<uint32_t>(fds.size());
  std::memcpy(message + 24, &count, sizeof(count));
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  iovec iov{message, sizeof(message)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  absl::Status status;
  if (sendmsg(s, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(message))) {
    status = absl::UnavailableError(
        absl::StrCat("side channel ", socket_path, ": sendmsg: ", std::strerror(errno)));
  } else {
    char reply[256];
    const ssize_t n = recv(s, reply, sizeof(reply), 0);
    if (n < 4) {
      status = absl::UnavailableError(
          absl::StrCat("side channel ", socket_path, ": no answer from the daemon"));
    } else {
      uint32_t code = 0;
      std::memcpy(&code, reply, sizeof(code));
      if (code != 0) {
        status = absl::Status(static_cast<absl::StatusCode>(code),
                              absl::StrCat("side channel: ", std::string(reply + 4, n - 4)));
      }
    }
  }
  close(s);
  return status;
}

}  // namespace kvshuttle
