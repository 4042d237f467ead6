// Daemon options, grouped, with their defaults beside them. Filled only by main.cc.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace kvshuttle {

// Quotas that keep one client (or a flood) from exhausting the daemon.
struct Limits {
  int max_sessions = 256;
  int max_regions_per_session = 1024;
  int max_block_sets_per_session = 1024;
  int max_pools = 64;
  int max_jobs_per_batch = 4096;
  int max_pairs_per_job = 65536;
  int64_t max_block_set_addresses = int64_t{1} << 22;  // num_blocks × slots of one block set
  int queue_capacity = 8192;                            // tasks per executor
  int max_job_history = 65536;                          // finished jobs kept per session for Wait
  int64_t max_message_bytes = int64_t{64} << 20;
  int max_sessions_per_client = 64;   // sessions one uid (unix) or one host (TCP) may hold
  int max_waits_per_session = 16;     // Wait calls of one session blocked at once
  int max_wait_ids = 65536;           // job ids one Wait may name
  int session_queue_capacity = 2048;  // tasks one session may have queued per executor
  int64_t gpu_slice_bytes = int64_t{256} << 20;  // GPU jobs run in slices of about this (0: never)
};

// Byte and count budgets for what requests make the daemon allocate (docs/security.md). Each
// is checked before allocating. main.cc derives them from the machine unless flags set them;
// the defaults here are for in-process daemons (tests, tools).
struct Budgets {
  // Daemon memory for request-made metadata: block-set address tables, plans of queued and
  // running jobs, pool metadata, Wait id lists. Derived: RAM / 8, at most 8 GiB.
  int64_t metadata_bytes = int64_t{1} << 30;
  int64_t session_metadata_bytes = int64_t{256} << 20;  // derived: metadata_bytes / 4
  // Memory mappings of host regions. Derived: vm.max_map_count / 2 (the rest stays for the
  // daemon's own allocations, threads and libraries).
  int64_t maps = 32765;
  int64_t session_maps = 4096;  // derived: maps / 8, at least 1024 (within maps)
  // Pool memory: device pools of one GPU at most this fraction of its memory, pinned host
  // pools at most this fraction of the machine's RAM.
  double pool_device_fraction = 0.5;
  double pool_host_fraction = 0.25;
  // One session may hold pools (it created, while they exist) of at most this fraction of
  // each pool budget.
  double session_pool_fraction = 0.5;
  int64_t host_ram_bytes = int64_t{16} << 30;  // the machine's RAM (main.cc: MemTotal)
};

// The gRPC edge's own bounds (connection hygiene, issue #13).
struct EdgeLimits {
  int max_connections = 1024;               // unix connections open at once
  int max_connections_per_uid = 128;        // ... of one uid
  absl::Duration connection_idle = absl::Minutes(10);  // a connection with no call is closed
  absl::Duration keepalive_time = absl::Seconds(60);   // HTTP/2 ping of quiet connections
  absl::Duration keepalive_timeout = absl::Seconds(20);
  int64_t grpc_memory_bytes = int64_t{512} << 20;  // gRPC's buffers, all connections together
  int max_rpc_threads = 512;                       // threads serving calls
  // gRPC's sync server: completion queues, and threads polling each at most (gRPC's own
  // defaults are 1 and 2, which serialize a busy node's calls; main derives these from the
  // CPU count).
  int rpc_queues = 1;
  int rpc_pollers = 2;
};

// TLS of the TCP listener (PEM file paths). Without cert_file the TCP port is plaintext, which
// main allows only on a loopback address unless allow_insecure_tcp.
struct TlsOptions {
  std::string cert_file;       // server certificate chain; empty = no TLS
  std::string key_file;        // its private key
  std::string client_ca_file;  // mTLS: require client certificates signed by these CAs
};

struct DaemonOptions {
  std::string listen = "unix:/run/kvshuttle/kvshuttle.sock";  // unix:PATH or a bare path
  std::string tcp_listen;                                     // host:port; empty = none
  TlsOptions tls;                                             // of tcp_listen
  bool allow_insecure_tcp = false;  // plaintext tcp_listen on a non-loopback address
  uint32_t socket_mode = 0660;
  int socket_gid = -1;  // group of the unix socket; -1 = the daemon's own
  absl::Duration lease = absl::Seconds(30);  // session lease without an Attach stream
  int cpu_threads = 2;                       // CPU executor threads
  bool use_gpus = true;                      // false: CPU executor only, even with GPUs
  absl::Duration drain_timeout = absl::Seconds(30);
  std::string metrics_address = "0.0.0.0:9461";  // HTTP /metrics + /healthz; empty = none
  Limits limits;
  Budgets budgets;
  EdgeLimits edge;
  std::string fd_socket;  // the descriptor side channel (unix socket path); empty = none
  // Named shm objects owned by another uid than the caller's are opened only when their group
  // is this gid (-1: never; root callers may open any).
  int shm_trust_gid = -1;
  // TEST ONLY (fault injection, --fault_fail_jobs_of_client): every job of sessions opened with
  // this client name fails INTERNAL at launch, as a failing launch would. Empty = off.
  std::string fault_fail_jobs_of_client;
};

}  // namespace kvshuttle
