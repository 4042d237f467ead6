// Unix socket path handling, stale sockets, and the socket's mode and group.
#include "server/net/listener.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvshuttle {

std::string UnixSocketPath(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix://")) return std::string(listen.substr(7));
  if (absl::StartsWith(listen, "unix:")) return std::string(listen.substr(5));
  if (absl::StartsWith(listen, "/") || absl::StartsWith(listen, "./")) return std::string(listen);
  return "";
}

namespace {
// ".<pid>": a pid has at most 10 digits.
constexpr size_t kStagingSuffixMax = 11;
}  // namespace

absl::Status PrepareSocketPath(const std::string& path) {
  sockaddr_un addr{};
  const size_t longest = sizeof(addr.sun_path) - 1 - kStagingSuffixMax;
  if (path.empty() || path.size() > longest) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen: socket path \"", path, "\" must be 1 to ", longest,
                     " bytes (the socket is first bound as PATH.<pid>)"));
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("listen: cannot create ", parent.string(), ": ", ec.message()));
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return absl::OkStatus();  // nothing there
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("listen: ", path, " exists and is not a socket; not touching it"));
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket(): ", std::strerror(errno)));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  close(fd);
  if (rc == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("listen: another process is accepting on ", path));
  }
  if (err != ECONNREFUSED && err != ENOENT) {
    return absl::FailedPreconditionError(
        absl::StrCat("listen: cannot probe ", path, ": ", std::strerror(err)));
  }
  if (unlink(path.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("listen: cannot remove stale socket ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ResolveGroup(absl::string_view group) {
  uint32_t gid = 0;
  if (absl::SimpleAtoi(group, &gid) && gid <= 0x7fffffff) return static_cast<int>(gid);
  const std::string name(group);
  std::vector<char> buffer(16384);
  struct group entry {};
  struct group* found = nullptr;
  int rc = 0;
  while ((rc = getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found)) == ERANGE &&
         buffer.size() < (size_t{1} << 24)) {
    buffer.resize(buffer.size() * 2);
  }
  if (rc != 0 || found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket_group: \"", group, "\" is neither a group name nor a numeric gid",
        rc != 0 ? absl::StrCat(" (", std::strerror(rc), ")") : std::string()));
  }
  return static_cast<int>(found->gr_gid);
}

namespace {

absl::Status SetSocketPermissions(const std::string& path, uint32_t mode, int gid) {
  if (gid >= 0 && ::chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(gid)) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "socket_group: cannot give ", path, " group ", gid, ": ", std::strerror(errno)));
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "socket_mode: cannot give ", path, " mode ", absl::StrFormat("%04o", mode), ": ",
        std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PublishSocket(const std::string& bound, const std::string& path, uint32_t mode,
                           int gid) {
  absl::Status status = SetSocketPermissions(bound, mode, gid);
  if (status.ok() && ::link(bound.c_str(), path.c_str()) != 0) {
    const int err = errno;
    status = absl::FailedPreconditionError(
        err == EEXIST
            ? absl::StrCat("listen: ", path,
                           " appeared while starting (another daemon on the same path?)")
            : absl::StrCat("listen: cannot publish ", bound, " as ", path, ": ",
                           std::strerror(err)));
  }
  ::unlink(bound.c_str());
  return status;
}

}  // namespace kvshuttle
