// What the edge knows about a call besides its request: its deadline, whether it was cancelled,
// and who made it (peer credentials from the kernel for unix-socket callers).
#pragma once

#include <unistd.h>

#include <functional>

#include "absl/time/time.h"
#include "server/net/connections.h"

namespace kvshuttle {

// The identity of this process: what in-process callers (tests, benchmarks) present.
inline PeerIdentity InProcessPeer() {
  PeerIdentity self;
  self.local = true;
  self.uid = ::geteuid();
  self.gid = ::getegid();
  self.pid = ::getpid();
  self.address = "in-process";
  return self;
}

struct CallContext {
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled = [] { return false; };
  PeerIdentity peer = InProcessPeer();
};

}  // namespace kvshuttle
