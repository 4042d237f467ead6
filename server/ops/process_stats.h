// Figures about this process read from /proc/self at the time of the call (for the
// kvshuttle_process_* gauges), and the machine facts the budgets are derived from.
#pragma once

#include <cstdint>

namespace kvshuttle {

struct ProcessStats {
  int64_t open_fds = -1;        // entries of /proc/self/fd (-1: unreadable)
  int64_t threads = -1;         // "Threads:" of /proc/self/status
  int64_t resident_bytes = -1;  // resident pages of /proc/self/statm × page size
};

ProcessStats ReadProcessStats();

// Facts of the machine the daemon's budgets are derived from (main.cc); -1 when unreadable.
struct MachineFacts {
  int64_t max_map_count = -1;  // /proc/sys/vm/max_map_count
  int64_t ram_bytes = -1;      // MemTotal of /proc/meminfo
};

MachineFacts ReadMachineFacts();

}  // namespace kvshuttle
