// Unix-socket housekeeping for the listen address: path parsing, stale-socket replacement and
// permissions.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kvshuttle {

// "unix:/run/x.sock", "unix:///run/x.sock" or a bare absolute/relative path → the path.
// Anything else (e.g. "host:port") → empty string (not a unix socket).
std::string UnixSocketPath(absl::string_view listen);

// The daemon binds its socket under a private name next to `path` (`path`.<pid>), gives it its
// mode and group, and only then publishes it at `path` (PublishSocket): no client can connect
// through `path` before the permissions are final, nor see health SERVING early.
// Inline: the integration-test harness removes a killed daemon's staging socket by this name.
inline std::string StagingSocketPath(const std::string& path, int pid) {
  return absl::StrCat(path, ".", pid);
}

// Prepares `path` for binding: checks that it and its staging name fit a socket address, creates
// the parent directory, removes a stale socket left by a crashed daemon (nobody accepts on it).
// FAILED_PRECONDITION when another process is listening there or the path is not a socket.
absl::Status PrepareSocketPath(const std::string& path);

// The group id of `group`: a group name (looked up in the group database) or a decimal gid.
// INVALID_ARGUMENT naming it when it is neither.
absl::StatusOr<int> ResolveGroup(absl::string_view group);

// Gives the socket at `bound` mode `mode` and, when gid ≥ 0, group `gid` (chown; the daemon may
// set only a group it belongs to unless it has CAP_CHOWN), then makes `path` name the same
// socket (link: it fails rather than replace a socket another daemon published there since
// PrepareSocketPath) and removes `bound`. On error — FAILED_PRECONDITION naming the path, the
// mode or group and the system's error — `bound` is removed and `path` left as it was.
absl::Status PublishSocket(const std::string& bound, const std::string& path, uint32_t mode,
                           int gid);

}  // namespace kvshuttle
