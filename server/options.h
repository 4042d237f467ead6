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
  // TEST ONLY (fault injection, --fault_fail_jobs_of_client): every job of sessions opened with
  // this client name fails INTERNAL at launch, as a failing launch would. Empty = off.
  std::string fault_fail_jobs_of_client;
};

}  // namespace kvshuttle
