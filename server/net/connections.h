// Who is calling: the daemon accepts unix-socket connections itself, reads each peer's
// credentials from the kernel (SO_PEERCRED) and hands the socket to gRPC
// (AddInsecureChannelFromFd), so every call on the unix socket carries the uid, gid and pid of
// the process at the other end — never a field a client fills in. Connections are bounded per
// uid and in total; more are closed right after accept.
//
// gRPC names a connection handed over this way "fd:N" (ServerContext::peer()). A call keeps its
// transport, and so the descriptor N, open until the call ends, so N cannot be reused by
// another connection while a handler runs; the socket's inode is checked on every lookup as
// well (defence in depth).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvshuttle {

// The process at the other end of a call.
struct PeerIdentity {
  bool local = false;      // a unix-socket peer: uid/gid/pid come from the kernel
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  uint64_t connection = 0;  // daemon-unique id of the connection (local peers)
  std::string address;      // "uid 1000 pid 4242" or gRPC's peer string ("ipv4:1.2.3.4:5")

  // Key for per-client limits: "uid:<n>" for local peers, the address's host for others.
  std::string ClientKey() const;
};

// Limits of the unix acceptor.
struct ConnectionLimits {
  int max_connections = 1024;         // open unix connections in total
  int max_connections_per_uid = 128;  // open unix connections of one uid
};

// The table of accepted unix connections, keyed by descriptor.
class ConnectionTable {
 public:
  // Records connection `fd` (just accepted) with its peer credentials.
  void Add(int fd, const PeerIdentity& peer, ino_t inode);
  // The identity behind gRPC's peer string: "fd:N" → the recorded peer of descriptor N when it
  // still is the recorded socket; any other string (TCP) → a non-local identity named by it.
  // UNAVAILABLE when "fd:N" is not (any longer) a connection of ours.
  absl::StatusOr<PeerIdentity> Resolve(absl::string_view grpc_peer) const;
  // Forgets connections whose descriptor no longer is their socket (gRPC closed them); returns
  // the open connections of `uid` and in total after the sweep.
  void Sweep(uid_t uid, int* of_uid, int* total);
  int size() const;

 private:
  struct Entry {
    PeerIdentity peer;
    ino_t inode = 0;
  };
  mutable std::mutex mu_;
  std::map<int, Entry> entries_;
};

// Accepts connections on a bound, listening unix socket and hands each to `hand_over` (which
// gives it to gRPC) after recording its credentials in `table`. Connections over `limits` are
// closed at once. Stop() (or destruction) stops the thread; the listening socket is the
// caller's.
class UnixAcceptor {
 public:
  UnixAcceptor(int listen_fd, ConnectionLimits limits, ConnectionTable& table,
               std::function<void(int fd)> hand_over);
  ~UnixAcceptor();
  UnixAcceptor(const UnixAcceptor&) = delete;
  UnixAcceptor& operator=(const UnixAcceptor&) = delete;

  void Stop();
  // Connections refused for being over a limit so far.
  uint64_t refused() const { return refused_.load(); }

 private:
  void Loop();

  const int listen_fd_;
  const int wake_fd_;
  const ConnectionLimits limits_;
  ConnectionTable& table_;
  const std::function<void(int)> hand_over_;
  std::atomic<uint64_t> next_connection_{1};
  std::atomic<uint64_t> refused_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Creates a unix stream socket bound to `path` (which must not exist) and listening.
// The caller publishes it (PublishSocket) and owns the descriptor.
absl::StatusOr<int> BindUnixSocket(const std::string& path, int backlog = 1024);

}  // namespace kvshuttle
