// Unix-socket housekeeping for the listen address: path parsing, stale-socket replacement and
// permissions.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvshuttle {

// "unix:/run/x.sock", "unix:///run/x.sock" or a bare absolute/relative path → the path.
// Anything else (e.g. "host:port") → empty string (not a unix socket).
std::string UnixSocketPath(absl::string_view listen);

// Prepares `path` for binding: creates the parent directory, removes a stale socket left by a
// crashed daemon (nobody accepts on it). FAILED_PRECONDITION when another process is listening
// there or the path is not a socket.
absl::Status PrepareSocketPath(const std::string& path);

}  // namespace kvshuttle
